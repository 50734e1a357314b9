"""Start the platform with a demo run: server, dashboard and local workers, on this machine."""
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from rounds.lifecycle import run_control, run_create
from rounds.models import Run


class Command(BaseCommand):
    help = "Run the server, an engine worker and N local workers training a small CNN on Fashion-MNIST."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=3)
        parser.add_argument("--rounds", type=int, default=10)
        parser.add_argument("--examples", type=int, default=4000, help="training examples per worker")
        parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")

    def handle(self, *args, port: int, workers: int, rounds: int, examples: int, threads: int, **options):
        call_command("migrate", verbosity=0)
        password = os.environ.get("FEDPLATFORM_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        run = run_create(
            name=f"demo {Run.objects.count() + 1}",
            arch="cnn",
            dataset="fashion-mnist",
            rounds=rounds,
            min_clients=workers,
            clients_per_round=workers,
            min_updates=max(1, workers - 1),
            round_timeout=600,
            learning_rate=0.05,
            batch_size=32,
        )
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
                         "--partition-index", str(index), "--limit", str(examples), "--threads", str(threads), "--quiet"],
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
