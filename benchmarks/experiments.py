"""The experiment runner: a grid of configurations x seeds, every round recorded.

Two backends run the same federation:

- ``sim``: one process per (configuration, seed) runs every device in turn with the platform's
  own code: the task interface loads each device's data and trains it (``worker.trainer.
  local_round``, as the worker does, FedProx's term included), updates go through error feedback
  and the codec (``fedcore.feedback``), and the run's strategy aggregates the decoded updates
  (``fedcore.strategies``, the engine's path). For large sweeps.
- ``real``: a server, an engine and one worker process per client on loopback, the run created
  through the API, the test accuracy read back from the rounds the engine evaluated. Each grid
  names one configuration to cross-check this way.

Rows land in ``benchmarks/results/experiments/<grid>.jsonl``, one per (configuration, seed, round),
with the command, commit and machine; a rerun replaces the rows of what it reran.
``benchmarks/results_report.py`` turns them into ``benchmarks/RESULTS.md`` and its plots.

    python benchmarks/experiments.py list
    python benchmarks/experiments.py run prototype-fmnist --jobs 2
    python benchmarks/experiments.py run prototype-fmnist --backend real --cross-check
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grids import GRIDS, Grid, expand, label
from report import REPO, RESULTS, commit, command, machine, stop_processes

EXPERIMENTS = RESULTS / "experiments"
CIFAR_SUBSET = REPO.parent / "shared" / "data" / "cifar10-subset.npz"


def data_root(dataset: str) -> Path | None:
    """Where the dataset lies offline (None: the loader's usual places)."""
    if dataset == "cifar10":
        return Path(os.environ.get("FEDPLATFORM_CIFAR10", CIFAR_SUBSET))
    return None


# --------------------------------------------------------------------------------- simulation


def simulate(config: dict, seed: int, emit) -> None:
    """One federation in this process; ``emit(row)`` is called after every round.

    With ``config["attack"]`` set, clients 0 to ``attackers - 1`` poison their data or their upload
    in every round (``benchmarks/attacks.py``); without it the run is the honest federation.
    """
    import numpy as np
    import torch

    import attacks
    from fedcore import codec
    from fedcore.feedback import ErrorFeedback
    from fedcore.state import buffer_names, load_arrays, state_to_arrays
    from fedcore.strategies import build_strategy
    from fedcore.tasks import DataRequest
    from fedcore.tasks.registry import BUILTIN_TASK, load_task, seeded_model
    from worker.task import Hyperparameters
    from worker.trainer import local_round

    device = torch.device("cpu")
    task = load_task(BUILTIN_TASK)
    task_config = task.validate_config(
        {"arch": config["arch"], "dataset": config["dataset"], "train_examples": config["train_examples"]})
    root = data_root(config["dataset"])
    clients = config["clients"]
    shares = [
        task.load_data(task_config, DataRequest(
            root=root, partition=config["partition"], alpha=config["alpha"] or 0.5, num_partitions=clients,
            partition_index=index, seed=seed))
        for index in range(clients)
    ]
    # Poisoning (the ``poisoning`` grid): the first ``attackers`` clients run ``attack`` every round.
    attack = config.get("attack")
    attackers = config.get("attackers", 0) if attack else 0
    shares = [attacks.poison_data(attack, data) if index < attackers else data for index, data in enumerate(shares)]
    test = _test_split(task.test_data(task_config, root=root), config["test_examples"], seed)
    model = seeded_model(task, task_config, seed)
    exempt = buffer_names(model)
    strategy = build_strategy(config["strategy"], config["strategy_config"], exempt=exempt)
    hp = Hyperparameters(local_epochs=config["local_epochs"], batch_size=config["batch_size"],
                         learning_rate=config["lr"], momentum=config["momentum"],
                         **strategy.client_instructions())
    global_model, state = state_to_arrays(model), {}
    feedback = [ErrorFeedback() for _ in shares]
    started = time.perf_counter()
    for number in range(1, config["rounds"] + 1):
        contributions, reports, bytes_up, diverged = [], [], 0, 0
        for index, data in enumerate(shares):
            # The worker's seeding: the round's seed (its number) plus the partition index.
            try:
                result = local_round(task, model, global_model, data, hp, seed=number + index, device=device)
            except FloatingPointError:
                diverged += 1  # as the worker does: a diverged update is not sent
                continue
            delta, weight = result.delta, result.num_examples
            if index < attackers:
                delta, weight = attacks.poison_update(attack, delta, weight,
                                                      rng=np.random.default_rng([seed, number, index]))
            pending = feedback[index].encode(delta, encoding=config["upload_encoding"],
                                             base_version=number - 1, exact=exempt)
            feedback[index].commit(pending)
            bytes_up += len(pending.body)
            decoded = codec.decode(pending.body, kind="delta", manifest=codec.manifest_of(result.delta))
            # Weighted by the count the update claims, as the engine weighs an upload's X-Num-Examples.
            contributions.append((decoded.arrays, weight))
            reports.append((result.metrics, weight))
        metrics: dict = {}
        if contributions:
            aggregated = strategy.aggregate(global_model, contributions, state)
            global_model, state, metrics = aggregated.model, aggregated.state, aggregated.metrics
        # else every client diverged: the platform would abandon the round; the model stays.
        load_arrays(model, global_model)
        evaluated = task.evaluate(model, test, device=device)
        emit({
            "round": number, "test_accuracy": evaluated["accuracy"], "test_loss": evaluated["loss"],
            "train_loss": _weighted([(m.get("train_loss"), n) for m, n in reports]),
            "federated_accuracy": _weighted([(m.get("eval_accuracy"), m.get("eval_examples", 0)) for m, _ in reports]),
            "bytes_up": bytes_up, "seconds": round(time.perf_counter() - started, 2),
            "contributions": len(contributions), "diverged_clients": diverged, **metrics,
        })


def _test_split(split, limit: int, seed: int):
    """The whole test split, or a seeded ``limit``-example sample of it."""
    if not limit or limit >= len(split):
        return split
    import numpy as np

    from fedcore.tasks import TensorSplit

    keep = np.sort(np.random.default_rng([seed, 7]).choice(len(split), size=limit, replace=False))
    return TensorSplit(split.x[keep], split.y[keep])


def _weighted(pairs: list[tuple[object, object]]) -> float | None:
    from fedcore.aggregation import weighted_metric

    return weighted_metric(pairs)


# ------------------------------------------------------------------------------ real processes


class Platform:
    """A server, an engine and worker processes on loopback, in a scratch directory (embedded SQLite)."""

    OPERATOR = ("experiments", "experiments-pass-123")

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url, self.workdir, self.procs = f"http://127.0.0.1:{self.port}", workdir, []
        self.env = {
            **os.environ, "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "FEDPLATFORM_MEDIA_ROOT": str(workdir / "media"), "FEDPLATFORM_QUEUE_FILE": str(workdir / "queue.sqlite3"),
            "SECRET_KEY": "experiments", "PYTHONUNBUFFERED": "1",
            "DJANGO_SUPERUSER_USERNAME": self.OPERATOR[0], "DJANGO_SUPERUSER_PASSWORD": self.OPERATOR[1],
            "DJANGO_SUPERUSER_EMAIL": "experiments@example.com", **env,
        }

    def __enter__(self) -> "Platform":
        import requests

        for args in (["migrate", "--verbosity", "0"], ["createsuperuser", "--noinput"]):
            subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, check=True,
                           capture_output=True)
        self.spawn("server", [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"])
        self.spawn("engine", [sys.executable, "manage.py", "engine"])
        self.api = requests.Session()
        self.api.auth = self.OPERATOR
        for _ in range(120):
            try:
                self.api.get(f"{self.url}/api/schema/", timeout=2)
                return self
            except requests.ConnectionError:
                time.sleep(0.5)
        raise RuntimeError(f"the server did not start; see {self.workdir}")

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=(self.workdir / f"{name}.log").open("ab"),
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def call(self, method: str, path: str, body: dict | None = None):
        response = self.api.request(method, f"{self.url}/api/v1/{path}", json=body, timeout=60)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def __exit__(self, *exc) -> None:
        stop_processes(self.procs)


def run_real(config: dict, seed: int, emit, workdir: Path) -> None:
    """The same federation through a server, an engine and one worker process per client."""
    if config.get("attack"):  # the worker is honest: an attack here would be an unattacked run under its name
        raise ValueError("attacks run in the simulation only (--backend sim)")
    clients = config["clients"]
    env = {"FEDPLATFORM_EVAL_LIMIT": str(config["test_examples"] or 1_000_000)}
    if data_root(config["dataset"]):
        env["FEDPLATFORM_DATA_DIR"] = str(data_root(config["dataset"]))
    with Platform(workdir, env) as platform:
        run = platform.call("POST", "runs/", {
            "name": label(config), "task_config": {"arch": config["arch"], "dataset": config["dataset"],
                                                   "train_examples": config["train_examples"]},
            "rounds": config["rounds"], "min_clients": clients, "clients_per_round": clients,
            "min_updates": clients, "local_epochs": config["local_epochs"], "batch_size": config["batch_size"],
            "learning_rate": config["lr"], "momentum": config["momentum"], "strategy": config["strategy"],
            "strategy_config": config["strategy_config"], "upload_encoding": config["upload_encoding"],
            "download_encoding": "float32", "seed": seed, "round_timeout": 3600, "offline_after": 600,
        })
        platform.call("POST", f"runs/{run['id']}/start/")
        data = ["--data", str(data_root(config["dataset"]))] if data_root(config["dataset"]) else []
        workers = [
            platform.spawn(f"client-{index}", [
                sys.executable, "-m", "worker", "--server", platform.url, "--run", str(run["id"]),
                "--name", f"client-{index}", "--num-partitions", str(clients), "--partition-index", str(index),
                "--partition", config["partition"], "--alpha", str(config["alpha"] or 0.5), "--seed", str(seed),
                "--threads", "1", "--device", "cpu", "--quiet", *data])
            for index in range(clients)
        ]
        started, seen = time.perf_counter(), 0
        while seen < config["rounds"]:
            closed = sorted((r for r in platform.call("GET", f"runs/{run['id']}/rounds/") if r["status"] == "closed"),
                            key=lambda r: r["number"])
            # Rounds in order, each once the engine has evaluated its version.
            while seen < len(closed) and closed[seen]["metrics"].get("test_accuracy") is not None:
                metrics = closed[seen]["metrics"]
                emit({"round": closed[seen]["number"], "test_accuracy": metrics["test_accuracy"],
                      "test_loss": metrics.get("test_loss"), "train_loss": metrics.get("train_loss"),
                      "federated_accuracy": metrics.get("federated_base_accuracy"),
                      "bytes_up": metrics.get("bytes_up"), "seconds": round(time.perf_counter() - started, 2)})
                seen += 1
            if any(w.poll() not in (None, 0) for w in workers):
                raise RuntimeError(f"a worker failed; see {workdir}")
            time.sleep(2)


# ---------------------------------------------------------------------------------- orchestration


def child(args: argparse.Namespace) -> int:
    job = json.loads(args.child)
    sink = Path(job["sink"])
    meta = {"experiment": job["grid"], "config": label(job["config"]), "params": job["config"],
            "seed": job["seed"], "backend": job["backend"], "command": job["command"],
            "commit": job["commit"], "machine": job["machine"]}
    import torch

    torch.set_num_threads(args.threads)
    with sink.open("w") as out:
        def emit(row: dict) -> None:
            out.write(json.dumps({**meta, **row}) + "\n")
            out.flush()
            print(f"[{meta['config']} seed {meta['seed']} {meta['backend']}] round {row['round']}: "
                  f"test accuracy {row['test_accuracy']:.4f} ({row['seconds']:.0f}s)", flush=True)

        if job["backend"] == "sim":
            simulate(job["config"], job["seed"], emit)
        else:
            run_real(job["config"], job["seed"], emit, Path(tempfile.mkdtemp(prefix="experiment-real-")))
    return 0


def jobs_for(grid: Grid, args: argparse.Namespace) -> list[dict]:
    jobs = []
    for config, seeds in expand(grid):
        config = {**config, **dict(args.set or [])}
        if args.cross_check and any(config.get(k) != v for k, v in grid.cross_check.items()):
            continue
        if args.only and not any(set(part.split()) <= set(label(config).split()) for part in args.only):
            continue
        for seed in (args.seeds if args.seeds is not None else seeds):
            jobs.append({"grid": grid.name, "config": config, "seed": seed, "backend": args.backend})
    return jobs


def merge(path: Path, rows: list[dict]) -> None:
    """Replace the rows of the same (configuration, seed, backend) with ``rows``; keep the rest."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs of one grid may finish at once
        _merge_locked(path, rows)


def _merge_locked(path: Path, rows: list[dict]) -> None:
    keys = {(r["config"], r["seed"], r["backend"]) for r in rows}
    kept = []
    if path.exists():
        kept = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        kept = [r for r in kept if (r["config"], r["seed"], r["backend"]) not in keys]
    everything = sorted(kept + rows, key=lambda r: (r["config"], r["backend"], r["seed"], r["round"]))
    path.write_text("".join(json.dumps(r) + "\n" for r in everything))


def run_grid(args: argparse.Namespace, argv: list[str]) -> int:
    grid = GRIDS[args.grid]
    jobs = jobs_for(grid, args)
    if not jobs:
        print("nothing matches", file=sys.stderr)
        return 2
    stamp = {"command": command(), "commit": commit(), "machine": machine()}
    parts = Path(tempfile.mkdtemp(prefix=f"experiments-{grid.name}-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONUNBUFFERED": "1"}
    target = args.out or EXPERIMENTS / f"{grid.name}.jsonl"
    queue, running, failed = list(enumerate(jobs)), [], 0
    print(f"{grid.name}: {len(jobs)} job(s), {args.jobs} at a time; rows go to {target}", flush=True)
    while queue or running:
        while queue and len(running) < args.jobs:
            index, job = queue.pop(0)
            job = {**job, **stamp, "sink": str(parts / f"{index}.jsonl")}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(args.threads),
                   "--child", json.dumps(job)]
            running.append((job, subprocess.Popen(cmd, env=env, cwd=REPO)))
        time.sleep(1)
        for job, proc in list(running):
            if proc.poll() is None:
                continue
            running.remove((job, proc))
            sink = Path(job["sink"])
            rows = [json.loads(line) for line in sink.read_text().splitlines() if line.strip()] if sink.exists() else []
            if proc.returncode or len(rows) < job["config"]["rounds"]:
                failed += 1
                print(f"[{label(job['config'])} seed {job['seed']}] failed (exit {proc.returncode}, "
                      f"{len(rows)} of {job['config']['rounds']} rounds); nothing recorded", flush=True)
                continue
            merge(target, rows)
    print(f"{grid.name}: {len(jobs) - failed} of {len(jobs)} job(s) recorded in {target}", flush=True)
    return 1 if failed else 0


def _setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help="torch threads per job (default 1)")
    sub = p.add_subparsers(dest="verb")
    sub.add_parser("list", help="the grids and their configurations")
    r = sub.add_parser("run", help="run a grid (or part of it) and record every round")
    r.add_argument("grid", choices=sorted(GRIDS))
    r.add_argument("--backend", choices=("sim", "real"), default="sim")
    r.add_argument("--cross-check", action="store_true", help="only the grid's cross-check configuration")
    r.add_argument("--only", nargs="+",
                   help="only configurations whose label has every word of one of these (e.g. 'K=5 iid')")
    r.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], help="override the seeds: 0,1,2")
    r.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)), help="jobs at once")
    r.add_argument("--set", nargs="+", type=_setting, metavar="KEY=JSON",
                   help="override configuration values, e.g. rounds=2 (for a quick try; --out elsewhere)")
    r.add_argument("--out", type=Path, help="JSONL to merge the rows into (default results/experiments/<grid>.jsonl)")
    r.add_argument("--threads", type=int, default=1, help="torch threads per job (default 1)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.verb == "list":
        for grid in GRIDS.values():
            print(f"{grid.name}: {grid.title}")
            for config, seeds in expand(grid):
                print(f"  {label(config):40s} seeds {','.join(map(str, seeds))}")
        return 0
    if args.verb == "run":
        return run_grid(args, argv)
    parse_args(["--help"])
    return 2


if __name__ == "__main__":
    sys.exit(main())
