"""Load: N simulated devices against real server and engine processes on loopback, no training.

Each device registers, long-polls for its task (``?wait=25``), and when selected downloads the
base model, "trains" for a random few seconds (sending heartbeats), and uploads a synthetic int4
update of the run's model. Everything is bounded: ``--rounds`` rounds, ``--max-seconds`` in all.

It reports latency percentiles per endpoint (a held poll counts by its answer time minus the time
it was parked, as the server's ``X-Poll-Held`` says), errors, server CPU, database connections
(PostgreSQL), how long a new round's task takes to reach every selected waiting device, and the
round overhead: from the round's last acknowledged update to the next round's tasks in the hands
of the waiting devices (evaluation enabled).

    python benchmarks/load.py --devices 1000                              # SQLite, 1 server
    python benchmarks/load.py --devices 5000 --database postgres --redis --servers 2
    python benchmarks/load.py --devices 10 --arch resnet18 --dataset cifar10 --train-seconds 1,2
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from report import REPO, stop_processes, table, write

PG_ADMIN = os.environ.get("FEDPLATFORM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("FEDPLATFORM_TEST_REDIS", "redis://127.0.0.1:6379/0")
OPERATOR = ("loadop", "loadop-pass-123")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--servers", type=int, default=1, help="server processes (devices are spread over them)")
    p.add_argument("--engines", type=int, default=1, help="engine worker processes")
    p.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn", help="the ASGI server")
    p.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--redis", action="store_true", help="queue and events on Redis (needed for --servers > 1)")
    p.add_argument("--arch", default="cnn")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients-per-round", type=int, default=50, help="0: every device")
    p.add_argument("--train-seconds", default="5,20", help="each selected device 'trains' uniformly this long")
    p.add_argument("--wait", type=int, default=25, help="long-poll seconds")
    p.add_argument("--join-rate", type=float, default=100, help="devices joining per second (they join over time)")
    p.add_argument("--max-seconds", type=float, default=900)
    p.add_argument("--name", default=None, help="results file name (default: from the options)")
    p.add_argument("--logs", default=None, help="copy the server and engine logs to this folder")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- the platform


def server_command(server: str, port: int) -> list[str]:
    """One server process on 127.0.0.1:port, as the README's production section runs it."""
    bindir = Path(sys.executable).parent
    if server == "daphne":
        return [str(bindir / "daphne"), "-e", f"tcp:{port}:interface=127.0.0.1:backlog=4096",
                "fedplatform.asgi:application"]
    return [str(bindir / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--backlog", "4096",
            "--timeout-keep-alive", "30", "--no-proxy-headers", "--no-access-log", "--log-level", "warning",
            "fedplatform.asgi:application"]


def _cpu_of_processes_named(name: str) -> float:
    """Clock ticks of CPU used by every process with this command name (including exited
    children that were waited for: a PostgreSQL backend's time lands in the postmaster's)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1:text.rindex(")")], text.rsplit(")", 1)[1].split()
        if comm == name:
            total += int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    return total


def machine_seconds() -> dict[str, float]:
    """The machine's CPU time so far, all cores (``/proc/stat``): busy, idle, and stolen by the
    hypervisor for other guests. Steal makes the same run slower: reports must show it."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    ticks = os.sysconf("SC_CLK_TCK")
    return {"busy": (user + nice + system + irq + softirq) / ticks, "idle": (idle + iowait) / ticks,
            "stolen by the host": steal / ticks}


class Platform:
    """Server and engine processes on one database, started and stopped by the benchmark."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="fedload-"))
        self.pg_name: str | None = None
        if args.database == "postgres":
            import psycopg

            self.pg_name = f"fedload_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {self.pg_name}")
            database_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{self.pg_name}"
        else:
            database_url = f"sqlite:///{self.workdir / 'db.sqlite3'}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "FEDPLATFORM_MEDIA_ROOT": str(self.workdir / "media"),
            "FEDPLATFORM_QUEUE_FILE": str(self.workdir / "queue.sqlite3"),
            "FEDPLATFORM_QUEUE_NAME": f"fedload-{uuid.uuid4().hex[:8]}",
            "SECRET_KEY": "load-secret",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SUPERUSER_USERNAME": OPERATOR[0],
            "DJANGO_SUPERUSER_PASSWORD": OPERATOR[1],
            "DJANGO_SUPERUSER_EMAIL": "op@example.com",
            "REDIS_URL": REDIS if args.redis else "",
            "LOG_LEVEL": "WARNING",
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.procs: list[subprocess.Popen] = []
        self.servers: list[tuple[str, subprocess.Popen]] = []

    def manage(self, *argv: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *argv], cwd=REPO, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def operator_session(self) -> str:
        """A logged-in operator's session key: the benchmark's own reads must not cost a password
        hash each (PBKDF2 takes most of a core-second) and skew the server's CPU."""
        code = (
            "from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY\n"
            "from django.contrib.sessions.backends.db import SessionStore\n"
            f"u = get_user_model().objects.get(username={OPERATOR[0]!r})\n"
            "s = SessionStore(); s[SESSION_KEY] = str(u.pk)\n"
            "s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
            "s[HASH_SESSION_KEY] = u.get_session_auth_hash(); s.create(); print(s.session_key)\n"
        )
        return self.manage("shell", "-c", code).strip().splitlines()[-1]

    def start(self) -> None:
        self.manage("migrate", "--verbosity", "0")
        self.manage("createsuperuser", "--noinput")
        import socket

        for i in range(self.args.servers):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            log = (self.workdir / f"server-{i}.log").open("ab")
            argv = server_command(self.args.server, port)
            proc = subprocess.Popen(
                argv,
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
            self.procs.append(proc)
            self.servers.append((f"http://127.0.0.1:{port}", proc))
        for i in range(self.args.engines):
            log = (self.workdir / f"engine-{i}.log").open("ab")
            self.procs.append(subprocess.Popen([sys.executable, "manage.py", "engine"], cwd=REPO, env=self.env,
                                               stdout=log, stderr=subprocess.STDOUT))
        import requests

        for url, _ in self.servers:
            for _ in range(120):
                try:
                    requests.get(f"{url}/api/schema/", timeout=2)
                    break
                except requests.ConnectionError:
                    time.sleep(0.5)

    def cpu_seconds(self) -> dict[str, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        out = {}
        for label, proc in [(f"server {i}", p) for i, (_, p) in enumerate(self.servers)] + [
            (f"engine {i}", p) for i, p in enumerate(self.procs[len(self.servers):])
        ]:
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[label] = (int(fields[11]) + int(fields[12])) / ticks
            except OSError:
                out[label] = float("nan")
        # The services share the machine's cores: their CPU is part of what a request costs here.
        for label, name in (("PostgreSQL (all backends)", "postgres"), ("Redis", "redis-server")):
            if (label.startswith("PostgreSQL") and self.pg_name) or (label == "Redis" and self.args.redis):
                out[label] = _cpu_of_processes_named(name) / ticks
        return out

    def db_connections(self) -> int | None:
        if not self.pg_name:
            return None
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            return admin.execute(query, (self.pg_name,)).fetchone()[0]

    def stop(self) -> None:
        stop_processes(self.procs, timeout=15)
        if self.args.logs:  # the processes' logs outlive the run's temporary folder
            Path(self.args.logs).mkdir(parents=True, exist_ok=True)
            for log in self.workdir.glob("*.log"):
                shutil.copy(log, Path(self.args.logs) / log.name)
        if self.pg_name:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")
        shutil.rmtree(self.workdir, ignore_errors=True)


# -------------------------------------------------------------------------------- devices


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.bytes_down: list[int] = []
        self.errors: dict[str, int] = defaultdict(int)
        self.error_examples: list[str] = []
        self.delivery: dict[int, list[float]] = defaultdict(list)  # round number -> task receipt times
        self.opened_at: dict[int, float] = {}
        self.last_ack: dict[int, float] = {}

    def error(self, what: str, detail: str) -> None:
        self.errors[what] += 1
        if len(self.error_examples) < 10:
            self.error_examples.append(f"{what}: {detail[:200]}")


def codec_type() -> str:
    from fedcore.codec import CONTENT_TYPE

    return CONTENT_TYPE


def model_arrays(run: dict) -> dict:
    """The run's model as its devices build it (the built-in task), for the updates' shapes."""
    from fedcore.state import state_to_arrays
    from fedcore.tasks.registry import load_task

    task = load_task(run["task"])
    return state_to_arrays(task.build_model(task.validate_config(run["task_config"])).state_dict())


def chain_type() -> str:
    from fedcore.broadcast import CHAIN_CONTENT_TYPE

    return CHAIN_CONTENT_TYPE


def _synthetic_body(base_version: int, cache: dict) -> bytes:
    """An int4 update of the run's model against ``base_version``: random, as trained updates are
    (a constant one would compress to nothing and flatter the bytes and the server's work)."""
    if base_version not in cache:
        import numpy as np

        from fedcore import codec

        rng = np.random.default_rng(base_version)
        delta = {k: (rng.normal(0, 1e-3, a.shape).astype(a.dtype) if a.dtype.kind == "f" else np.zeros_like(a))
                 for k, a in cache["model"].items()}
        cache[base_version] = codec.encode(delta, encoding="int4", kind="delta", base_version=base_version)
    return cache[base_version]


async def device_loop(
    http, url: str, run: dict, index: int, args, stats: Stats, done: asyncio.Event, bodies: dict,
) -> None:
    import aiohttp

    from worker.registration import ACCEPTS

    low, high = (float(x) for x in args.train_seconds.split(","))
    await asyncio.sleep(index / args.join_rate)  # devices join over time, not all in one instant
    t0 = time.monotonic()
    # Declares what it decodes as the worker does: a device declaring nothing is sent float32
    # snapshots of the replica instead of the broadcast deltas.
    registration = {"name": f"sim-{index}", "run": run["id"], "num_examples": 100, "accepts": ACCEPTS}
    async with http.post(f"{url}/api/v1/clients/", json=registration) as r:
        stats.latency["register"].append(time.monotonic() - t0)
        if r.status != 201:
            stats.error("register", f"{r.status} {await r.text()}")
            return
        reg = await r.json()
    auth = {"Authorization": f"Token {reg['token']}"}
    base = f"{url}/api/v1/clients/{reg['id']}"
    holds: int | None = None  # the version this device holds, as the worker says with ?base=
    while not done.is_set():
        t0 = time.monotonic()
        try:
            async with http.get(f"{base}/task/?wait={args.wait}", headers=auth,
                                timeout=aiohttp.ClientTimeout(total=args.wait + 60)) as r:
                body = await r.read()
                now = time.monotonic()
                held = float(r.headers.get("X-Poll-Held", "0") or 0)
                status = r.status
                # The run's end answers every parked poll at once, and this one process reads
                # thousands of answers in the same instant (3,000 read between 1.0 and 1.2 s
                # after they were sent off): counted apart from a running federation's polls.
                endpoint = "task (poll), the run ended: 410" if status == 410 else "task (poll)"
                stats.latency[endpoint].append(now - t0 - held)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            stats.error("task (poll)", repr(exc))
            await asyncio.sleep(1)
            continue
        if status == 410:
            return
        if status == 204:
            if held < 0.5:
                await asyncio.sleep(1.0)
            continue
        if status != 200:
            stats.error("task (poll)", f"{status} {body[:200]!r}")
            await asyncio.sleep(1)
            continue
        task = json.loads(body)
        stats.delivery[task["round_number"]].append(time.time())
        opened = datetime.fromisoformat(task["deadline"].replace("Z", "+00:00")).timestamp() - run["round_timeout"]
        stats.opened_at.setdefault(task["round_number"], opened)
        t0 = time.monotonic()
        model_url = url + task["model_url"] + (f"&base={holds}" if holds is not None else "")
        async with http.get(model_url, headers={**auth, "Accept": f"{codec_type()}, {chain_type()}"}) as r:
            if r.status != 200:
                stats.error("model download", f"{r.status} {(await r.read())[:200]!r}")
                await asyncio.sleep(1)
                continue
            # Counted as it arrives, not kept: the devices never decode it, and joining thousands of
            # megabytes here would take this process's loop (and every device's timing) with it.
            received = 0
            async for chunk in r.content.iter_any():
                received += len(chunk)
            stats.latency["model download"].append(time.monotonic() - t0)
            stats.bytes_down.append(received)
        holds = task["base_version"]
        upload = await asyncio.get_running_loop().run_in_executor(None, _synthetic_body, task["base_version"], bodies)
        train_until = time.monotonic() + random.uniform(low, high)
        while time.monotonic() < train_until:
            await asyncio.sleep(min(5.0, max(0.0, train_until - time.monotonic())))
            t0 = time.monotonic()
            beat = {"progress": 0.5, "round": task["round"]}
            async with http.post(f"{base}/heartbeat/", headers=auth, json=beat) as r:
                stats.latency["heartbeat"].append(time.monotonic() - t0)
                if r.status != 200:
                    stats.error("heartbeat", f"{r.status}")
        t0 = time.monotonic()
        headers = {**auth, "Content-Type": codec_type(), "X-Num-Examples": "100"}
        async with http.put(url + task["upload_url"], data=upload, headers=headers) as r:
            stats.latency["update upload"].append(time.monotonic() - t0)
            if r.status not in (200, 201):
                if r.status != 409:  # a round that closed at its deadline: not an error of the server
                    stats.error("update upload", f"{r.status} {await r.text()}")
            else:
                stats.last_ack[task["round_number"]] = max(stats.last_ack.get(task["round_number"], 0), time.time())


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def drive(args, platform: Platform) -> tuple[Stats, dict]:
    import aiohttp

    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    stats = Stats()
    per_round = min(args.clients_per_round, args.devices) if args.clients_per_round else args.devices
    basic = {"Authorization": aiohttp.encode_basic_auth(*OPERATOR)} if hasattr(aiohttp, "encode_basic_auth") else {}
    auth = None if basic else aiohttp.BasicAuth(*OPERATOR)
    session = {"Cookie": f"sessionid={platform.operator_session()}"}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
        first = platform.servers[0][0]
        config = dict(
            name="load", arch=args.arch, dataset=args.dataset, rounds=args.rounds, min_clients=args.devices,
            clients_per_round=per_round, min_updates=per_round, round_timeout=600, offline_after=180,
        )
        async with http.post(f"{first}/api/v1/runs/", json=config, auth=auth, headers=basic) as r:
            run = await r.json()
            assert r.status == 201, run
        async with http.post(f"{first}/api/v1/runs/{run['id']}/start/", auth=auth, headers=basic) as r:
            assert r.status == 200
        done = asyncio.Event()
        bodies: dict = {"model": model_arrays(run)}

        async def one(i: int) -> None:
            url = platform.servers[i % len(platform.servers)][0]
            try:
                await device_loop(http, url, run, i, args, stats, done, bodies)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a device that dies is a finding of the run, not silence
                stats.error("device", repr(exc))

        cpu_before, started = platform.cpu_seconds(), time.monotonic()
        cpu_before["load driver (this process)"] = time.process_time()
        machine_before = machine_seconds()
        max_conn = 0
        tasks = [asyncio.create_task(one(i)) for i in range(args.devices)]
        finished = False
        while time.monotonic() - started < args.max_seconds:
            await asyncio.sleep(2)
            conns = await asyncio.get_running_loop().run_in_executor(None, platform.db_connections)
            max_conn = max(max_conn, conns or 0)
            async with http.get(f"{first}/api/v1/runs/{run['id']}/", headers=session) as r:
                state = await r.json()
            if int(time.monotonic() - started) % 10 < 2:
                print(f"[{time.monotonic() - started:5.0f} s] run {state['status']}, "
                      f"{state['completed_rounds']} round(s) done, {len(stats.latency['register'])} registered, "
                      f"{sum(stats.errors.values())} errors", file=sys.stderr)
            if state["status"] in ("finished", "stopped", "failed"):
                finished = True
                break
        wall = time.monotonic() - started
        cpu_after = platform.cpu_seconds()
        cpu_after["load driver (this process)"] = time.process_time()
        machine_after = machine_seconds()
        done.set()
        await asyncio.sleep(1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        async with http.get(f"{first}/api/v1/runs/{run['id']}/rounds/", headers=session) as r:
            rounds = await r.json()
    summary = {
        "finished": finished, "wall": wall, "rounds": rounds, "max_db_connections": max_conn,
        "cpu": {k: (cpu_after[k] - cpu_before[k]) for k in cpu_before}, "per_round": per_round,
        "machine": {k: machine_after[k] - machine_before[k] for k in machine_before},
    }
    return stats, summary


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # A `timeout` or Ctrl-C must still stop the servers and engines this started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    platform = Platform(args)
    try:
        platform.start()
        stats, summary = asyncio.run(drive(args, platform))
    finally:
        platform.stop()
    rows = []
    for endpoint, values in sorted(stats.latency.items()):
        rows.append([endpoint, len(values), f"{_pct(values, 50) * 1000:.0f}", f"{_pct(values, 95) * 1000:.0f}",
                     f"{_pct(values, 99) * 1000:.0f}", stats.errors.get(endpoint, 0)])
    delivery_rows, overhead_rows = [], []
    closed = {r["number"]: r for r in summary["rounds"] if r["status"] == "closed"}
    for number, times in sorted(stats.delivery.items()):
        opened = stats.opened_at[number]
        lags = [t - opened for t in times]
        delivery_rows.append([number, len(times), f"{_pct(lags, 50):.3f}", f"{_pct(lags, 99):.3f}", f"{max(lags):.3f}"])
        previous_ack = stats.last_ack.get(number - 1)
        if previous_ack and number - 1 in closed:
            overhead_rows.append([
                f"{number - 1} -> {number}", f"{min(times) - previous_ack:.3f}",
                f"{_pct(times, 99) - previous_ack:.3f}",
                closed[number - 1]["metrics"].get("aggregation_seconds"),
                closed[number - 1]["metrics"].get("broadcast_seconds"),
            ])
    backend = f"{args.database}{' + Redis' if args.redis else ''}"
    cpu = ", ".join(f"{k}: {v:.0f} s ({100 * v / summary['wall']:.0f} %)" for k, v in summary["cpu"].items())
    machine = ", ".join(f"{k} {v:.0f} s" for k, v in summary["machine"].items())
    body = (
        f"{args.devices} devices, {args.servers} server process(es) ({args.server}), {args.engines} engine worker(s), "
        f"{backend}; {args.arch} on {args.dataset}, {summary['per_round']} clients per round, "
        f"{args.rounds} rounds, long-poll wait {args.wait} s, simulated training {args.train_seconds} s. "
        f"Run {'finished' if summary['finished'] else 'DID NOT FINISH'} in {summary['wall']:.0f} s.\n\n"
        f"Model downloads: {len(stats.bytes_down)}, median "
        f"{_pct(stats.bytes_down, 50) / 1e6 if stats.bytes_down else 0:.2f} MB "
        "(a device sends the version it holds, as the worker does: the first download is the snapshot, later ones "
        "the broadcast delta).\n\n"
        f"Server CPU over the run: {cpu}. Peak database connections: "
        f"{summary['max_db_connections'] if args.database == 'postgres' else 'n/a (SQLite)'}.\n\n"
        f"The machine over the run ({os.cpu_count()} cores): {machine}.\n\n"
        "Latency per request (ms; a held poll counts its answer time minus the time it was parked):\n\n"
        + table(["endpoint", "requests", "p50", "p95", "p99", "errors"], rows)
        + "\n\nA new round's task reaching the selected waiting devices (seconds after the round opened):\n\n"
        + table(["round", "devices", "p50", "p99", "max"], delivery_rows)
        + "\n\nRound overhead (seconds from the round's last acknowledged update to the next round's tasks "
        "in the devices' hands; evaluation enabled):\n\n"
        + table(["rounds", "first device", "p99 of devices", "aggregation (s, server)", "broadcast (s, server)"],
                overhead_rows)
    )
    if stats.error_examples:
        body += "\n\nErrors seen:\n\n" + "\n".join(f"- {e}" for e in stats.error_examples)
    redis = "_redis" if args.redis else ""
    name = args.name or f"load_{args.arch}_{args.devices}dev_{args.servers}srv_{args.database}{redis}"
    write(name, f"Load: {args.devices} devices, {args.servers} server(s), {backend}", body)


if __name__ == "__main__":
    main()
