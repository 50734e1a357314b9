"""Churn: start local workers and make them join, leave, crash and come back at random.

    python -m worker.churn --server http://127.0.0.1:8000 --workers 10 --duration 300

Each action is printed as it happens, so anyone can watch the platform cope. Workers' own output
goes to one log file each under --log-dir. A crashed worker (SIGKILL: no goodbye, the server
finds out through silence) comes back after --return-after seconds as a new registration on the
same data partition; a worker that leaves (SIGINT: it says goodbye) is gone for good, and a new
one joins in its place at the join rate.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


LEAVE_GRACE = 60.0  # seconds a leaving worker gets to say goodbye before it is killed
STRAGGLER_GRACE = 15.0  # seconds after the run ended before the remaining workers are sent home


@dataclass
class Member:
    name: str
    partition: int
    proc: subprocess.Popen


@dataclass
class Fleet:
    args: argparse.Namespace
    log_dir: Path
    started: float = field(default_factory=time.monotonic)
    live: list[Member] = field(default_factory=list)
    returning: list[tuple[float, str, int]] = field(default_factory=list)  # (when, name, partition)
    leaving: list[tuple[float, Member]] = field(default_factory=list)  # (SIGKILL after, member)
    counts: Counter = field(default_factory=Counter)
    next_id: int = 0
    over_since: float = 0.0

    def say(self, text: str) -> None:
        print(f"[churn t={time.monotonic() - self.started:6.1f}s live={len(self.live):2d}] {text}", flush=True)

    def free_partition(self) -> int:
        taken = {m.partition for m in self.live} | {p for _, _, p in self.returning}
        free = [p for p in range(self.args.num_partitions) if p not in taken]
        return free[0] if free else self.next_id % self.args.num_partitions

    def spawn(self, name: str | None = None, partition: int | None = None) -> Member:
        if name is None:
            self.next_id += 1
            name = f"churn-{self.next_id}"
        partition = self.free_partition() if partition is None else partition
        command = [
            sys.executable, "-m", "worker", "--server", self.args.server, "--name", name, "--quiet",
            "--num-partitions", str(self.args.num_partitions), "--partition-index", str(partition),
            "--threads", str(self.args.threads), "--device", "cpu",
        ]
        if self.args.run:
            command += ["--run", str(self.args.run)]
        if self.args.limit:
            command += ["--limit", str(self.args.limit)]
        if self.args.data:
            command += ["--data", self.args.data]
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        member = Member(name, partition, proc)
        self.live.append(member)
        return member

    @property
    def run_over(self) -> bool:
        # Workers exit 0 by themselves only when the server says the run is over.
        return self.counts["finished"] > 0

    def reap(self) -> None:
        for due in list(self.leaving):
            deadline, member = due
            if member.proc.poll() is not None:
                self.leaving.remove(due)
                self.say(f"left  {member.name} (exit {member.proc.returncode})")
            elif time.monotonic() > deadline:
                member.proc.kill()
                member.proc.wait()
                self.leaving.remove(due)
                self.say(f"{member.name} did not leave within {LEAVE_GRACE:.0f}s; killed")
        for member in list(self.live):
            code = member.proc.poll()
            if code is not None:
                self.live.remove(member)
                self.counts["finished" if code == 0 else "failed"] += 1
                self.say(f"{member.name} exited by itself with code {code}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker.churn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--run", type=int, help="run to join (default: the server's active run)")
    parser.add_argument("--workers", type=int, default=10, help="workers at the start")
    parser.add_argument("--max-workers", type=int, help="never more than this many at once (default: --workers + 2)")
    parser.add_argument("--duration", type=float, default=300, help="seconds of churn; 0 = until every worker exited")
    parser.add_argument("--join-every", type=float, default=20, help="mean seconds between new workers joining")
    parser.add_argument("--leave-every", type=float, default=30, help="mean seconds between clean leaves")
    parser.add_argument("--crash-every", type=float, default=20, help="mean seconds between crashes (SIGKILL)")
    parser.add_argument("--return-after", type=float, default=15, help="seconds before a crashed worker restarts")
    parser.add_argument("--num-partitions", type=int, help="data partitions (default: --max-workers)")
    parser.add_argument("--limit", type=int, default=1000, help="training examples per worker")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", help="where workers' logs go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    args.max_workers = args.max_workers or args.workers + 2
    args.num_partitions = args.num_partitions or args.max_workers
    return args


def _happens(rng: random.Random, mean_seconds: float, tick: float) -> bool:
    # A Poisson process sampled every tick: the chance of an event in `tick` seconds.
    return mean_seconds > 0 and rng.random() < tick / mean_seconds


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    rng = random.Random(args.seed)
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="fedplatform-churn-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(args, log_dir)
    fleet.say(f"starting {args.workers} workers against {args.server}; worker logs in {log_dir}")
    for _ in range(args.workers):
        member = fleet.spawn()
        fleet.counts["started"] += 1
        fleet.say(f"join  {member.name} (partition {member.partition}, pid {member.proc.pid})")
    tick = 0.5
    try:
        while True:
            time.sleep(tick)
            fleet.reap()
            now = time.monotonic()
            elapsed = now - fleet.started
            if args.duration and elapsed >= args.duration:
                break
            if fleet.run_over:
                fleet.returning.clear()  # nothing to come back to
                fleet.over_since = fleet.over_since or now
                if now - fleet.over_since < STRAGGLER_GRACE:
                    continue  # the others are told by the server and exit by themselves
                for member in list(fleet.live):  # e.g. still waiting to register: send them home
                    member.proc.send_signal(signal.SIGINT)
                    fleet.live.remove(member)
                    fleet.leaving.append((now + LEAVE_GRACE, member))
                    fleet.say(f"stop  {member.name}: the run is over")
                if not fleet.live and not fleet.leaving:
                    fleet.say("the run is over and every worker has exited")
                    break
                continue
            if not fleet.live and not fleet.returning and not fleet.leaving:
                fleet.say("no worker is left")
                break
            for due in [r for r in fleet.returning if r[0] <= now]:
                fleet.returning.remove(due)
                member = fleet.spawn(due[1], due[2])
                fleet.counts["returned"] += 1
                fleet.say(f"back  {member.name} (partition {member.partition}, pid {member.proc.pid}) after its crash")
            if fleet.live and _happens(rng, args.crash_every, tick):
                victim = rng.choice(fleet.live)
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
                fleet.live.remove(victim)
                fleet.returning.append((now + args.return_after, victim.name, victim.partition))
                fleet.counts["crashed"] += 1
                fleet.say(f"crash {victim.name} (SIGKILL); back in {args.return_after:.0f}s")
            if fleet.live and _happens(rng, args.leave_every, tick):
                leaver = rng.choice(fleet.live)
                leaver.proc.send_signal(signal.SIGINT)
                fleet.live.remove(leaver)
                fleet.leaving.append((now + LEAVE_GRACE, leaver))
                fleet.counts["left"] += 1
                fleet.say(f"leave {leaver.name} (SIGINT: it says goodbye)")
            if len(fleet.live) + len(fleet.returning) < args.max_workers and _happens(rng, args.join_every, tick):
                member = fleet.spawn()
                fleet.counts["joined"] += 1
                fleet.say(f"join  {member.name} (partition {member.partition}, pid {member.proc.pid})")
    except KeyboardInterrupt:
        fleet.say("interrupted")
    finally:
        remaining = fleet.live + [member for _, member in fleet.leaving]
        for member in remaining:
            if member.proc.poll() is None:
                member.proc.send_signal(signal.SIGINT)
        for member in remaining:
            try:
                member.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                member.proc.kill()
    summary = ", ".join(f"{k} {v}" for k, v in sorted(fleet.counts.items()))
    fleet.say(f"done: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
