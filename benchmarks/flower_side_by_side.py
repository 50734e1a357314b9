"""Flower side by side: Flower's tiny-CNN loopback workload through Flower and through fedplatform.

The same workload runs back to back on both systems, in real processes on loopback: 2 devices x
1,000 CIFAR-10 training images each (the worker's own IID partitions of the offline subset, so
both sides train on exactly the same images), the project's small CNN from the same seeded
initial weights, 1 local epoch of SGD with the same batch size, learning rate and momentum, and
the same per-round training seeds. Every device first evaluates the model it received on its
held-out split (as fedplatform's workers do), then trains. Each system's global model is
evaluated on the same test images (the server's seeded test sample, ``FEDPLATFORM_EVAL_LIMIT``).

- fedplatform: a server (uvicorn), an engine worker and 2 ``python -m worker`` processes on a
  fresh SQLite database; the run is created through the REST API with the product's defaults
  for the wire (int4 uploads with error feedback, downloads int8 deltas of the broadcast replica).
- Flower, installed by this script from PyPI into its own virtual environment
  (``benchmarks/.flower-venv``, reused when present; never a project dependency), in two ways:
  ``deployment``: a SuperLink and 2 SuperNodes running a ServerApp/ClientApp with Flower's
  FedAvg (``flwr run``), Flower's supported way of running real devices; ``legacy``: the
  deprecated ``start_server``/``start_client`` API (gRPC streams to long-lived clients).
  The Flower environment sees the project's torch through a ``.pth`` file, so torch is not
  installed twice; its own packages come first.

Per round it records the wall time (from one global model to the next: each system's whole
round, client work and every overhead included), the bytes of model payload down and up (the
codec bodies on fedplatform, the serialised arrays of Flower's messages; protocol framing is not
counted on either side), the clients' own evaluation + training seconds, and the test accuracy.

    python benchmarks/flower_side_by_side.py                          # 5 rounds, both Flower APIs
    python benchmarks/flower_side_by_side.py --rounds 2 --flower deployment --name trial
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from report import REPO, RESULTS, mb, table, write

FLOWER_VERSION = "1.42.0"
FLOWER_VENV = REPO / "benchmarks" / ".flower-venv"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-subset.npz"
FLOWER_MODES = ("deployment", "legacy")
TARGET_TIME_RATIO = 0.25  # the target: fedplatform's median round at most a quarter of Flower's
APP_PACKAGE = "fedsbs_flower"


@dataclasses.dataclass(frozen=True)
class Workload:
    """Everything both systems must agree on; travels to the Flower processes as JSON."""

    rounds: int
    clients: int
    samples: int
    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    weight_decay: float
    seed: int
    data: str
    test_samples: int
    threads: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_mapping(cls, values: Any) -> "Workload":
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        cast = {"int": int, "float": float, "str": str}
        return cls(**{name: cast[types[name]](values[name]) for name in types})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--samples", type=int, default=1000, help="training images per device")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0, help="initial weights and partitions")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 .npz (default: the shared subset)")
    p.add_argument("--test-samples", type=int, default=2000, help="test images the global model is evaluated on")
    p.add_argument("--threads", type=int, default=1, help="torch threads per device (2 devices share the cores)")
    p.add_argument("--flower", default=",".join(FLOWER_MODES), help="Flower APIs to run, comma-separated")
    p.add_argument("--max-seconds", type=float, default=300, help="bound on each system's run")
    p.add_argument("--name", default="flower_side_by_side", help="results file name")
    args = p.parse_args(argv)
    modes = [m for m in args.flower.split(",") if m]
    if not modes or set(modes) - set(FLOWER_MODES):
        p.error(f"--flower takes a comma-separated subset of {FLOWER_MODES}")
    args.flower = modes
    return args


# ------------------------------------------------------------------------- shared helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, *, timeout: float, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a process exited before port {port} opened")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


def spawn(argv: list[str], *, log: Path, env: dict[str, str]) -> subprocess.Popen:
    # A session of its own: stopping it also stops the processes it starts (Flower's SuperExec
    # and its ServerApp/ClientApp processes).
    return subprocess.Popen(
        [str(a) for a in argv], cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_all(procs: list[subprocess.Popen], sig: int = signal.SIGTERM) -> None:
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        try:  # whatever it started and left behind in its session
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_marked(marker: str) -> None:
    """Kill what is left of a Flower run: SuperExec starts the ServerApp and ClientApps in
    sessions of their own, so they are found by the run's own folder in their environment."""
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            marked = f"FLWR_HOME={marker}".encode() in (proc_dir / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marked and int(proc_dir.name) != os.getpid():
            try:
                os.kill(int(proc_dir.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def round_rows(system: str, ends: list[float], first_start: float, records: list[dict]) -> list[dict]:
    """Per-round rows; a round's wall time runs from the previous global model to this one."""
    rows, previous = [], first_start
    for end, rec in zip(ends, records):
        rows.append({"system": system, **rec, "wall_seconds": round(end - previous, 3)})
        previous = end
    return rows


# ------------------------------------------------------------- the devices' work (both sides)


@functools.lru_cache(maxsize=None)
def _local_data(work: Workload, partition: int):
    from fedcore.tasks import DataRequest, load_task

    # The fedplatform worker's own data path (the built-in task, IID, --seed, --limit): the same images.
    task = load_task("fedcore.tasks.vision:image_classification")
    request = DataRequest(root=Path(work.data), num_partitions=work.clients, partition_index=partition,
                          seed=work.seed, limit=work.samples)
    return task.load_data(task.validate_config({"arch": "cnn", "dataset": "cifar10"}), request)


def new_model(work: Workload | None = None):
    from fedcore.data import DATASETS
    from fedcore.nets import build_model

    info = DATASETS["cifar10"]
    seed = None if work is None else work.seed  # fedplatform's initial version is built with the run's seed
    return build_model("cnn", in_channels=info.in_channels, num_classes=info.num_classes,
                       image_size=info.image_size, seed=seed)


def device_fit(work: Workload, partition: int, base: dict, server_round: int) -> tuple[dict, dict]:
    """One device's round, computed exactly as ``python -m worker`` computes it: evaluate the
    received model on the held-out split, train from it, and return the trained weights."""
    import torch

    from fedcore.state import add
    from worker.task import Hyperparameters
    from worker.trainer import local_round

    torch.set_num_threads(work.threads)
    hp = Hyperparameters(work.epochs, work.batch_size, work.learning_rate, work.momentum, work.weight_decay)
    data = _local_data(work, partition)
    # The worker seeds round r's batches with r + its partition index (the task's seed is r).
    from fedcore.tasks import load_task

    task = load_task("fedcore.tasks.vision:image_classification")
    result = local_round(task, new_model(), base, data, hp, seed=server_round + partition, device=torch.device("cpu"))
    m = result.metrics
    metrics = {
        "num-examples": result.num_examples,
        "client-seconds": float(m.get("eval_seconds", 0.0) + m["train_seconds"]),
        "train-loss": float(m["train_loss"]),
    }
    return add(base, result.delta), metrics


@functools.lru_cache(maxsize=None)
def _test_split(data: str, limit: int):
    import numpy as np

    from fedcore.data import DATASETS, load_dataset, to_tensors

    x, y = load_dataset("cifar10", root=data, train=False)
    if limit:  # the server's own seeded sample (rounds/evaluation.py)
        keep = np.sort(np.random.default_rng(0).permutation(len(y))[:limit])
        x, y = x[keep], y[keep]
    return to_tensors(x, y, DATASETS["cifar10"])


def test_metrics(work: Workload, arrays: dict) -> dict:
    import torch

    from fedcore.state import load_arrays
    from fedcore.training import evaluate

    started = time.perf_counter()
    model = new_model()
    load_arrays(model, arrays)
    result = evaluate(model, *_test_split(work.data, work.test_samples), device=torch.device("cpu"))
    return {
        "test_accuracy": round(result["accuracy"], 4), "test_loss": round(result["loss"], 4),
        "test_examples": result["examples"], "evaluation_seconds": round(time.perf_counter() - started, 3),
    }


def initial_arrays(work: Workload) -> dict:
    from fedcore.state import state_to_arrays

    return state_to_arrays(new_model(work))


# ------------------------------------------------------------------------------ fedplatform


def run_fedplatform(work: Workload, *, max_seconds: float) -> list[dict]:
    import requests
    from load import OPERATOR, Platform  # the load benchmark's server + engine on a temporary database

    platform = Platform(SimpleNamespace(database="sqlite", redis=False, servers=1, engines=1, server="uvicorn",
                                        logs=None))
    platform.env.update(FEDPLATFORM_DATA_DIR=work.data, FEDPLATFORM_EVAL_LIMIT=str(work.test_samples))
    workers: list[subprocess.Popen] = []
    try:
        platform.start()
        url = platform.servers[0][0]
        # Reads go through a session: a password check per request would cost the server CPU.
        reads = requests.Session()
        reads.headers["Cookie"] = f"sessionid={platform.operator_session()}"
        config = dict(
            name="flower side by side", arch="cnn", dataset="cifar10", rounds=work.rounds,
            min_clients=work.clients, clients_per_round=work.clients, min_updates=work.clients,
            local_epochs=work.epochs, batch_size=work.batch_size, learning_rate=work.learning_rate,
            momentum=work.momentum, weight_decay=work.weight_decay, seed=work.seed,
        )
        response = requests.post(f"{url}/api/v1/runs/", json=config, auth=OPERATOR, timeout=60)
        response.raise_for_status()
        run = response.json()
        requests.post(f"{url}/api/v1/runs/{run['id']}/start/", auth=OPERATOR, timeout=60).raise_for_status()
        for i in range(work.clients):
            log = platform.workdir / f"worker-{i}.log"
            workers.append(spawn(
                [sys.executable, "-m", "worker", "--server", url, "--run", run["id"], "--name", f"device-{i}",
                 "--dataset", "cifar10", "--data", work.data, "--num-partitions", work.clients, "--partition-index", i,
                 "--seed", work.seed, "--limit", work.samples, "--threads", work.threads, "--device", "cpu", "--quiet"],
                log=log, env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(work.threads)},
            ))
        rounds, cpu = _wait_for_run(reads, url, run["id"], work, workers, platform, max_seconds)
    finally:
        stop_all(workers, signal.SIGINT)  # SIGINT: a worker says goodbye
        platform.stop()
    rows = _fedplatform_rows(rounds)
    end = _timestamp(rounds[0]["opened_at"])
    for row in rows:
        start, end = end, end + row["wall_seconds"]
        row["cpu_seconds"] = _cpu_during(cpu, start, end)
        row["download_encoding"] = run["download_encoding"]
    return rows


def _process_cpu(pid: int, last: dict[int, float]) -> float:
    """A process's CPU seconds so far; once it has exited, what it had used by then."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        last[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass
    return last.get(pid, 0.0)


def _cpu_at(samples: list[tuple[float, dict]], t: float) -> dict:
    """Each process's cumulative CPU seconds at time ``t``, interpolated between samples."""
    for (t0, a), (t1, b) in zip(samples, samples[1:]):
        if t0 <= t <= t1:
            w = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            return {k: a[k] + w * (b[k] - a[k]) for k in a}
    return samples[0][1] if t < samples[0][0] else samples[-1][1]


def _cpu_during(samples: list[tuple[float, dict]], start: float, end: float) -> dict:
    before, after = _cpu_at(samples, start), _cpu_at(samples, end)
    return {k: round(after[k] - before[k], 2) for k in before}


def _wait_for_run(reads, url: str, run_id: int, work: Workload, workers: list, platform, max_seconds: float):
    workdir = platform.workdir
    samples: list[tuple[float, dict]] = []  # (time, CPU seconds of each process): where the cores go
    last: dict[int, float] = {}
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        for _ in range(4):  # the run's state every 2 s: the benchmark's own requests cost the server CPU
            time.sleep(0.5)
            cpu = platform.cpu_seconds()
            cpu["workers"] = sum(_process_cpu(p.pid, last) for p in workers)
            samples.append((time.time(), cpu))
        state = reads.get(f"{url}/api/v1/runs/{run_id}/", timeout=30).json()
        if state["status"] in ("stopped", "failed"):
            raise RuntimeError(f"fedplatform run {state['status']}")
        if state["status"] == "finished":
            rounds = reads.get(f"{url}/api/v1/runs/{run_id}/rounds/", timeout=30).json()
            closed = [r for r in rounds if r["status"] == "closed"]
            # Evaluation runs after each round closes, off the critical path: wait for the last one.
            if len(closed) >= work.rounds and all(r["metrics"].get("test_accuracy") is not None for r in closed):
                return closed, samples
        for i, proc in enumerate(workers):
            if proc.poll() not in (None, 0):
                raise RuntimeError(f"worker {i} exited with {proc.returncode}:\n{tail(workdir / f'worker-{i}.log')}")
    logs = "\n".join(tail(workdir / f"worker-{i}.log", 1000) for i in range(len(workers)))
    raise RuntimeError(
        f"fedplatform did not finish {work.rounds} rounds (and their evaluations) in {max_seconds:.0f} s:\n{logs}"
    )


def _fedplatform_rows(rounds: list[dict]) -> list[dict]:
    rounds = sorted(rounds, key=lambda r: r["number"])
    records = []
    for r in rounds:
        m = r["metrics"]
        updates = r["updates"]
        records.append({
            "round": r["number"],
            "bytes_down": int(m["bytes_down"]),
            "bytes_up": int(m["bytes_up"]),
            "client_seconds": round(
                max(u["metrics"].get("eval_seconds", 0) + u["metrics"]["train_seconds"] for u in updates), 3),
            "download_seconds": round(max(u["metrics"].get("download_seconds", 0) for u in updates), 3),
            # From the round's last accepted upload to the new version's commit: the engine's share.
            "close_seconds": round(_timestamp(r["closed_at"]) - max(_timestamp(u["received_at"]) for u in updates), 3),
            "aggregation_seconds": m.get("aggregation_seconds"),
            "evaluation_seconds": m.get("evaluation_seconds"),
            "test_accuracy": m["test_accuracy"],
            "test_examples": m.get("test_examples"),
            "test_loss": m["test_loss"],
            "upload_encoding": r["upload_encoding"],
        })
    ends = [_timestamp(r["closed_at"]) for r in rounds]
    return round_rows("fedplatform", ends, _timestamp(rounds[0]["opened_at"]), records)


# ----------------------------------------------------------------------- Flower's environment


def flower_python(version: str = FLOWER_VERSION) -> Path:
    """The Flower venv's interpreter, created and installed from PyPI on first use."""
    python = FLOWER_VENV / "bin" / "python"
    stamp = FLOWER_VENV / f".flwr-{version}"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(FLOWER_VENV)], check=True)
    if not stamp.exists():
        print(f"installing flwr=={version} into {os.path.relpath(FLOWER_VENV, REPO)}", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"flwr=={version}"], check=True)
        stamp.touch()
    # Rewritten every time, since the repository may have moved: the project's packages (torch)
    # after Flower's own, then the repository (fedcore, worker) and this folder (this module).
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    lines = [sysconfig.get_paths()["purelib"], str(REPO), str(REPO / "benchmarks")]
    (Path(purelib) / "fedplatform-benchmarks.pth").write_text("\n".join(lines) + "\n")
    return python


def flower_env(python: Path, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        # SuperExec starts `flwr-serverapp` and `flwr-clientapp` by name.
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(home),  # Flower's config, apps and state stay in the run's folder
        "FLWR_TELEMETRY_ENABLED": "0",  # no internet here, and none of Flower's business
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",  # as the devices' torch threads; the fedplatform workers get the same
    }


# ---------------------------------------------------- Flower: SuperLink, SuperNodes, flwr run


def flower_server_app():
    """The ServerApp: Flower's FedAvg, timed and weighed per round, with the global model tested
    on the server (Flower's ``evaluate_fn``)."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    class TimedFedAvg(FedAvg):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.rows: dict[int, dict] = {}

        def configure_train(self, server_round: int, arrays, config, grid):
            messages = list(super().configure_train(server_round, arrays, config, grid))
            # Taken after super(), which waits until the SuperNodes are connected.
            self.rows[server_round] = {
                "round": server_round, "started": time.time(),
                "bytes_down": sum(m.content["arrays"].count_bytes() for m in messages),
            }
            return messages

        def aggregate_train(self, server_round: int, replies):
            replies = list(replies)
            ok = [m for m in replies if not m.has_error()]
            row = self.rows[server_round]
            row["bytes_up"] = sum(m.content["arrays"].count_bytes() for m in ok)
            row["client_seconds"] = round(max(float(m.content["metrics"]["client-seconds"]) for m in ok), 3)
            row["process_start_seconds"] = round(
                max(float(m.content["metrics"]["process-start-seconds"]) for m in ok), 3)
            result = super().aggregate_train(server_round, replies)
            row["ended"] = time.time()
            return result

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        work = Workload.from_mapping(context.run_config)
        strategy = TimedFedAvg(
            fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=work.clients, min_available_nodes=work.clients,
        )

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            from fedcore.state import state_to_arrays

            found = test_metrics(work, state_to_arrays(arrays.to_torch_state_dict()))
            if server_round:
                strategy.rows[server_round].update(found)
            return MetricRecord({"accuracy": found["test_accuracy"], "loss": found["test_loss"]})

        from fedcore.state import arrays_to_state

        strategy.start(
            grid=grid, initial_arrays=ArrayRecord(arrays_to_state(initial_arrays(work))), num_rounds=work.rounds,
            train_config=ConfigRecord({}), evaluate_fn=evaluate,
        )
        out = Path(str(context.run_config["out"]))
        out.write_text("".join(json.dumps(row) + "\n" for _, row in sorted(strategy.rows.items())))

    return app


def _process_age() -> float:
    """Seconds since this process started."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - (boot + ticks / os.sysconf("SC_CLK_TCK"))


def flower_client_app():
    """The ClientApp: the fedplatform worker's computation on this SuperNode's partition."""
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from fedcore.state import arrays_to_state, state_to_arrays

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        # SuperNodes start a ClientApp process per message: what that costs before any work.
        started_for = _process_age()
        work = Workload.from_mapping(context.run_config)
        partition = int(context.node_config["partition-id"])
        base = state_to_arrays(msg.content["arrays"].to_torch_state_dict())
        trained, metrics = device_fit(work, partition, base, int(msg.content["config"]["server-round"]))
        metrics["process-start-seconds"] = round(started_for, 3)
        content = RecordDict({"arrays": ArrayRecord(arrays_to_state(trained)), "metrics": MetricRecord(metrics)})
        return Message(content=content, reply_to=msg)

    return app


def _toml_value(value: Any) -> str:
    return json.dumps(value)  # str, int, float: JSON's spelling is TOML's


def write_flower_app(folder: Path, work: Workload, out: Path) -> Path:
    """A Flower App whose components are the two functions above (``flwr run`` ships it as a FAB)."""
    app = folder / "app"
    (app / APP_PACKAGE).mkdir(parents=True)
    (app / APP_PACKAGE / "__init__.py").write_text("")
    (app / APP_PACKAGE / "apps.py").write_text(
        "from flower_side_by_side import flower_client_app, flower_server_app\n\n"
        "server = flower_server_app()\nclient = flower_client_app()\n"
    )
    config = {**dataclasses.asdict(work), "out": str(out)}
    (app / "pyproject.toml").write_text(
        "[build-system]\nrequires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n\n"
        f"[project]\nname = \"{APP_PACKAGE.replace('_', '-')}\"\nversion = \"1.0.0\"\ndependencies = []\n\n"
        "[tool.hatch.build.targets.wheel]\npackages = [\".\"]\n\n"
        "[tool.flwr.app]\npublisher = \"fedplatform-benchmarks\"\n\n"
        f"[tool.flwr.app.components]\nserverapp = \"{APP_PACKAGE}.apps:server\"\n"
        f"clientapp = \"{APP_PACKAGE}.apps:client\"\n\n"
        "[tool.flwr.app.config]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in config.items())
    )
    return app


def run_flower_deployment(python: Path, work: Workload, *, max_seconds: float) -> list[dict]:
    folder = Path(tempfile.mkdtemp(prefix="flower-sbs-"))
    home, out = folder / "flwr-home", folder / "rounds.jsonl"
    home.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env, bin_dir = flower_env(python, home), python.parent
    procs: list[subprocess.Popen] = []
    try:
        procs.append(spawn(
            [bin_dir / "flower-superlink", "--insecure", "--disable-runtime-dependency-installation", "--port", port],
            log=folder / "superlink.log", env=env,
        ))
        wait_for_port(port, timeout=60, procs=procs)
        for i in range(work.clients):
            procs.append(spawn(
                [bin_dir / "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}", "--port", free_port(),
                 "--node-config", f"partition-id={i} num-partitions={work.clients}"],
                log=folder / f"supernode-{i}.log", env=env,
            ))
        app = write_flower_app(folder, work, out)
        log = folder / "flwr-run.log"
        try:
            with log.open("ab") as sink:
                subprocess.run([bin_dir / "flwr", "run", app, "bench", "--stream"], cwd=folder, env=env, stdout=sink,
                               stderr=subprocess.STDOUT, timeout=max_seconds, check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"flwr run failed ({exc}):\n{tail(log)}\n{tail(folder / 'supernode-0.log')}") from exc
        if not out.exists():
            raise RuntimeError(f"the ServerApp wrote no results:\n{tail(log)}")
        return _flower_rows("Flower (deployment)", out)
    finally:
        stop_all(procs)
        kill_marked(env["FLWR_HOME"])
        shutil.rmtree(folder, ignore_errors=True)


def _flower_rows(system: str, out: Path) -> list[dict]:
    recorded = [json.loads(line) for line in out.read_text().splitlines()]
    ends = [r.pop("ended") for r in recorded]
    first = recorded[0]["started"]
    for r in recorded:
        del r["started"]
    return round_rows(system, ends, first, recorded)


# ------------------------------------------------------------- Flower: start_server/start_client


def legacy_server(work: Workload, port: int, out: Path) -> None:
    from flwr.common import ndarrays_to_parameters
    from flwr.server import ServerConfig, start_server
    from flwr.server.strategy import FedAvg

    names = list(initial_arrays(work))
    rows: dict[int, dict] = {}

    class TimedFedAvg(FedAvg):
        def configure_fit(self, server_round, parameters, client_manager):
            instructions = super().configure_fit(server_round, parameters, client_manager)
            rows[server_round] = {
                "round": server_round, "started": time.time(),
                "bytes_down": sum(sum(len(t) for t in ins.parameters.tensors) for _, ins in instructions),
            }
            return instructions

        def aggregate_fit(self, server_round, results, failures):
            row = rows[server_round]
            row["bytes_up"] = sum(sum(len(t) for t in res.parameters.tensors) for _, res in results)
            row["client_seconds"] = round(max(float(res.metrics["client-seconds"]) for _, res in results), 3)
            aggregated = super().aggregate_fit(server_round, results, failures)
            row["ended"] = time.time()
            return aggregated

    def evaluate(server_round: int, ndarrays, config):
        found = test_metrics(work, dict(zip(names, ndarrays)))
        if server_round:
            rows[server_round].update(found)
        return found["test_loss"], {"accuracy": found["test_accuracy"]}

    strategy = TimedFedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=work.clients, min_available_clients=work.clients,
        initial_parameters=ndarrays_to_parameters(list(initial_arrays(work).values())), evaluate_fn=evaluate,
        on_fit_config_fn=lambda server_round: {"server-round": server_round},
    )
    start_server(server_address=f"127.0.0.1:{port}", config=ServerConfig(num_rounds=work.rounds), strategy=strategy)
    out.write_text("".join(json.dumps(row) + "\n" for _, row in sorted(rows.items())))


def legacy_client(work: Workload, port: int, partition: int) -> None:
    from flwr.client import NumPyClient
    from flwr.compat.client.app import start_client

    names = list(initial_arrays(work))

    class Device(NumPyClient):
        def fit(self, parameters, config):
            trained, metrics = device_fit(work, partition, dict(zip(names, parameters)), int(config["server-round"]))
            return list(trained.values()), int(metrics.pop("num-examples")), metrics

    start_client(server_address=f"127.0.0.1:{port}", client=Device().to_client(), insecure=True)


def run_flower_legacy(python: Path, work: Workload, *, max_seconds: float) -> list[dict]:
    folder = Path(tempfile.mkdtemp(prefix="flower-sbs-"))
    out, port = folder / "rounds.jsonl", free_port()
    env = flower_env(python, folder / "flwr-home")
    me = Path(__file__).resolve()
    procs: list[subprocess.Popen] = []
    try:
        server = spawn([python, me, "_legacy-server", work.to_json(), port, out], log=folder / "server.log", env=env)
        procs.append(server)
        wait_for_port(port, timeout=120, procs=procs)
        for i in range(work.clients):
            procs.append(spawn([python, me, "_legacy-client", work.to_json(), port, i], log=folder / f"client-{i}.log",
                               env=env))
        try:
            code = server.wait(timeout=max_seconds)
        except subprocess.TimeoutExpired as exc:
            log = tail(folder / "server.log")
            raise RuntimeError(f"Flower's legacy server did not finish in {max_seconds:.0f} s:\n{log}") from exc
        if code != 0 or not out.exists():
            raise RuntimeError(f"Flower's legacy server exited with {code}:\n{tail(folder / 'server.log')}\n"
                               f"{tail(folder / 'client-0.log')}")
        return _flower_rows("Flower (legacy API)", out)
    finally:
        stop_all(procs)
        kill_marked(env["FLWR_HOME"])
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------- report


def summarise(rows: list[dict]) -> dict:
    last = rows[-1]
    down = statistics.median(r["bytes_down"] for r in rows)
    up = statistics.median(r["bytes_up"] for r in rows)
    return {
        "rounds": len(rows),
        "wall": statistics.median(r["wall_seconds"] for r in rows),
        "client": statistics.median(r["client_seconds"] for r in rows),
        "overhead": statistics.median(r["wall_seconds"] - r["client_seconds"] for r in rows),
        "down": down, "up": up, "total": down + up,
        "accuracy": last["test_accuracy"],
    }


def _test_images(results: dict[str, list[dict]]) -> str:
    counts = {system: rows[-1].get("test_examples") for system, rows in results.items()}
    if len(set(counts.values())) == 1:
        return f"the same {next(iter(counts.values()))} test images"
    return "test images: " + ", ".join(f"{system} {n}" for system, n in counts.items())


def _fedplatform_breakdown(rows: list[dict]) -> str:
    cpu_keys = list(rows[0]["cpu_seconds"])
    return table(
        ["round", "wall (s)", "slowest device's eval + train (s)", "slowest model download (s)",
         "last upload to new version (s)", "aggregation (s)", "evaluation (s, engine)",
         *[f"CPU s: {k}" for k in cpu_keys]],
        [[r["round"], f"{r['wall_seconds']:.2f}", f"{r['client_seconds']:.2f}", f"{r['download_seconds']:.2f}",
          f"{r['close_seconds']:.2f}", r["aggregation_seconds"], r["evaluation_seconds"],
          *[f"{r['cpu_seconds'][k]:.1f}" for k in cpu_keys]] for r in rows],
    )


def render(work: Workload, results: dict[str, list[dict]], flower_version: str) -> str:
    sums = {system: summarise(rows) for system, rows in results.items()}
    main_rows = [
        [system, s["rounds"], f"{s['wall']:.2f}", f"{s['client']:.2f}", f"{s['overhead']:.2f}",
         mb(s["down"]), mb(s["up"]), mb(s["total"]), f"{s['accuracy']:.4f}"]
        for system, s in sums.items()
    ]
    ours = sums["fedplatform"]
    ratio_lines = []
    for system, s in sums.items():
        if system == "fedplatform":
            continue
        time_ratio = ours["wall"] / s["wall"]
        verdict = "met" if time_ratio <= TARGET_TIME_RATIO else "NOT met"
        ratio_lines.append(
            f"- fedplatform / {system}: median round time **{time_ratio:.3f}** "
            f"(target <= {TARGET_TIME_RATIO}: {verdict}); "
            f"bytes per round **{ours['total'] / s['total']:.3f}** (down {ours['down'] / s['down']:.3f}, "
            f"up {ours['up'] / s['up']:.3f}); final accuracy {ours['accuracy'] - s['accuracy']:+.4f}."
        )
    for system, rows in results.items():
        if system != "fedplatform":
            tested = statistics.median(r["evaluation_seconds"] for r in rows)
            ratio_lines.append(f"- {system}: testing the global model takes a median {tested:.2f} s of each round.")
        if "process_start_seconds" in rows[0]:
            started = statistics.median(r["process_start_seconds"] for r in rows)
            ratio_lines.append(
                f"- {system}: every round each SuperNode starts a fresh ClientApp process; median {started:.2f} s "
                "(slowest device) from that process's start to Flower calling its train function."
            )
    per_round = [
        [system, r["round"], f"{r['wall_seconds']:.2f}", f"{r['client_seconds']:.2f}", mb(r["bytes_down"]),
         mb(r["bytes_up"]), f"{r['test_accuracy']:.4f}"]
        for system, rows in results.items() for r in rows
    ]
    fed = results["fedplatform"]
    return (
        f"Workload: {work.clients} devices x {work.samples} CIFAR-10 training images (the worker's IID partitions of "
        f"the subset: the same images on both sides), the small CNN from the same seeded weights (seed {work.seed}), "
        f"{work.rounds} rounds of {work.epochs} local epoch, batch {work.batch_size}, SGD lr {work.learning_rate} "
        f"momentum {work.momentum}, {work.threads} torch thread per device; every process on this one machine, on "
        f"loopback. Accuracy: each system's final global model on {_test_images(results)}. Flower {flower_version}: "
        "FedAvg, the global model tested in the round loop (`evaluate_fn`), as Flower runs it; `deployment` is a "
        "SuperLink and SuperNodes (`flwr run`), `legacy API` is `start_server`/`start_client`. fedplatform with the "
        f"product's wire defaults (uploads {fed[-1]['upload_encoding']} with error feedback, downloads "
        f"{fed[-1].get('download_encoding', 'float32')} deltas of the broadcast replica from the version a device "
        "holds, the first one a lossless snapshot); its engine tests each version beside the next round.\n\n"
        "Round wall time runs from one global model to the next, everything included; device work is the slowest "
        "device's evaluation + training as it reported them; overhead is the difference. Bytes are model payload per "
        "round, all devices together (codec bodies / serialised arrays; protocol framing not counted).\n\n"
        + table(["system", "rounds", "median round (s)", "median device work (s)", "median overhead (s)",
                 "down / round", "up / round", "total / round", "final test accuracy"], main_rows)
        + "\n\n" + "\n".join(ratio_lines)
        + "\n\nPer round:\n\n"
        + table(["system", "round", "wall (s)", "device work (s)", "down", "up", "test accuracy"], per_round)
        + "\n\nWhere fedplatform's rounds go (the rounds' timestamps, the devices' reports, and each process's CPU "
        "seconds within the round, sampled every 0.5 s):\n\n" + _fedplatform_breakdown(fed)
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("_legacy-"):  # this file as one of Flower's legacy processes
        role, work = argv[0], Workload.from_mapping(json.loads(argv[1]))
        if role == "_legacy-server":
            legacy_server(work, int(argv[2]), Path(argv[3]))
        else:
            legacy_client(work, int(argv[2]), int(argv[3]))
        return
    args = parse_args(argv)
    # A `timeout` or Ctrl-C must still stop every process this started (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Workload(
        rounds=args.rounds, clients=args.clients, samples=args.samples, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, momentum=args.momentum, weight_decay=0.0, seed=args.seed, data=str(args.data.resolve()),
        test_samples=args.test_samples, threads=args.threads,
    )
    python = flower_python()  # installed before anything is timed
    results: dict[str, list[dict]] = {}
    started = time.monotonic()
    results["fedplatform"] = run_fedplatform(work, max_seconds=args.max_seconds)
    print(f"fedplatform done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    runners = {"deployment": run_flower_deployment, "legacy": run_flower_legacy}
    for mode in args.flower:
        rows = runners[mode](python, work, max_seconds=args.max_seconds)
        results[rows[0]["system"]] = rows
        print(f"Flower ({mode}) done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for rows in results.values() for row in rows)
    )
    write(args.name, "Flower side by side: Flower's tiny-CNN loopback workload", render(work, results, FLOWER_VERSION))


if __name__ == "__main__":
    main()
