"""Start the platform with a demo run: server, dashboard and local workers, on this machine."""
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from fedcore.partition import SCHEMES
from fedcore.tasks.registry import BUILTIN_TASK
from fedplatform.errors import FedError
from rounds.lifecycle import run_control, run_create
from rounds.models import Run


class Command(BaseCommand):
    help = ("Run the server, an engine worker and N local workers; by default they train a small CNN "
            "on Fashion-MNIST, or any offered task (--task).")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=3)
        parser.add_argument("--rounds", type=int, default=10)
        parser.add_argument("--examples", type=int, default=4000, help="training examples per worker")
        parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
        parser.add_argument("--task", default=BUILTIN_TASK, help="the task to federate, package.module:attribute")
        parser.add_argument("--task-config", type=json.loads, default=None, metavar="JSON",
                            help="the task's configuration "
                                 '(default for the built-in: {"arch": "cnn", "dataset": "fashion-mnist"})')
        parser.add_argument("--partition", choices=SCHEMES, default="iid", help="how the workers split the data")
        parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew for --partition dirichlet")
        parser.add_argument("--strategy", default="fedavg", help="how updates are aggregated (GET /api/v1/strategies/)")
        parser.add_argument("--strategy-config", type=json.loads, default=None, metavar="JSON",
                            help="the strategy's parameters, e.g. '{\"server_lr\": 0.01}'")
        parser.add_argument("--learning-rate", type=float, default=0.05)
        parser.add_argument("--batch-size", type=int, default=32)

    def handle(self, *args, port: int, workers: int, rounds: int, examples: int, threads: int, task: str,
               task_config: dict | None, partition: str, alpha: float, learning_rate: float, batch_size: int,
               strategy: str, strategy_config: dict | None, **options):
        call_command("migrate", verbosity=0)
        password = os.environ.get("FEDPLATFORM_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username="admin",
                                                         defaults={"is_staff": True, "is_superuser": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        try:
            run = run_create(
                name=f"demo {Run.objects.count() + 1}",
                task=task,
                task_config=task_config if task_config is not None else (
                    {"arch": "cnn", "dataset": "fashion-mnist"} if task == BUILTIN_TASK else {}),
                rounds=rounds,
                min_clients=workers,
                clients_per_round=workers,
                min_updates=max(1, workers - 1),
                round_timeout=600,
                learning_rate=learning_rate,
                batch_size=batch_size,
                strategy=strategy,
                strategy_config=strategy_config or {},
            )
        except FedError as err:  # an unknown task or a bad configuration: say what is valid
            raise CommandError(err.detail) from err
        run_control(run=run, action="start")
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs = [
            subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], env=env),
            # The engine: aggregation, evaluation, opening rounds, sweeps (the embedded queue).
            subprocess.Popen([sys.executable, "manage.py", "engine"], env=env),
        ]
        try:
            self._wait_for(url)
            for index in range(workers):
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "worker", "--server", url, "--run", str(run.pk),
                         "--name", f"demo-worker-{index + 1}", "--num-partitions", str(workers),
                         "--partition-index", str(index), "--partition", partition, "--alpha", str(alpha),
                         "--limit", str(examples), "--threads", str(threads), "--quiet"],
                        env=env,
                    )
                )
            self.stdout.write(self.style.SUCCESS(
                f"\n  Dashboard: {url}/   (login: admin / {password})\n"
                f"  API:       {url}/api/docs/\n  Admin:     {url}/admin/\n"
                f"  {workers} workers are training run #{run.pk} for {rounds} rounds. Ctrl-C stops everything.\n"
            ))
            while procs[0].poll() is None and procs[1].poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _wait_for(self, url: str) -> None:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/schema/", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"the server did not come up at {url}")
