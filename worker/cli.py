"""Command line: ``python -m worker --server URL [options]``."""
from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from fedcore.partition import SCHEMES
from worker.config import WorkerConfig
from worker.exitcodes import DESCRIPTIONS

DATASET_CHOICES = ("fashion-mnist", "cifar10")
PARTITION_CHOICES = SCHEMES


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _epilog() -> str:
    lines = ["exit codes:"]
    lines += [f"  {int(code)}  {text}" for code, text in DESCRIPTIONS.items()]
    lines += [
        "",
        "example: python -m worker --server http://localhost:8000 --num-partitions 4 "
        "--partition-index 0",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="A fedplatform device: registers with the server, then each round trains\n"
        "on its local data partition and uploads the weight delta.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--server", required=True, metavar="URL", help="server base URL, e.g. http://localhost:8000")
    add("--name", default=None, help="client name shown on the dashboard (default: hostname-pid)")
    add("--run", type=int, default=None, metavar="ID",
        help="run to join (default: the server picks the active run)")
    add("--enrollment-key", default=None, metavar="KEY", help="enrollment key, if the server needs one")

    task = parser.add_argument_group("task")
    task.add_argument("--task", default=None, metavar="PACKAGE.MODULE:ATTR",
                      help="train with this local task instead of the run's (it must build the run's "
                      "model; default: the task the run names, imported here)")
    task.add_argument("--task-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                      dest="task_options", help="an option for the task's data loading (repeatable)")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASET_CHOICES, default=None,
                      help="built-in image task: refuse to join a run on another dataset "
                      "(default: train on the run's)")
    data.add_argument("--data", type=Path, default=None, metavar="PATH",
                      help="data file or directory (default: the task's search path)")
    data.add_argument("--download", action="store_true",
                      help="download the dataset with torchvision if it is not found (needs internet)")
    data.add_argument("--partition", choices=PARTITION_CHOICES, default="iid",
                      help="how the dataset is split between workers (default: iid)")
    data.add_argument("--alpha", type=_positive_float, default=0.5,
                      help="Dirichlet concentration for --partition dirichlet (label skew) and quantity "
                           "(size skew); smaller is more skewed (default: 0.5)")
    data.add_argument("--shards-per-client", type=_positive_int, default=2, metavar="N",
                      help="label shards per worker for --partition shards (default: 2)")
    data.add_argument("--num-partitions", type=_positive_int, default=1, metavar="N",
                      help="number of workers sharing the dataset (default: 1)")
    data.add_argument("--partition-index", type=_non_negative_int, default=0, metavar="I",
                      help="this worker's partition, 0..N-1 (default: 0)")
    data.add_argument("--seed", type=_non_negative_int, default=0,
                      help="seed for partitioning and splitting; use the same on every worker "
                      "so partitions are disjoint (default: 0)")
    data.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                      help="cap on this worker's training examples after partitioning "
                      "(the held-out split shrinks in proportion); for quick demos")
    data.add_argument("--eval-fraction", type=_fraction, default=0.1, metavar="F",
                      help="held-out part of this worker's partition for federated evaluation "
                      "(default: 0.1)")

    compute = parser.add_argument_group("compute and output")
    compute.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                         help="torch device (default: auto)")
    compute.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                         help="torch CPU threads (default: torch's choice)")
    compute.add_argument("--quiet", action="store_true", help="no progress bars")
    compute.add_argument("--max-retry-seconds", type=_positive_float, default=300.0, metavar="S",
                         help="give up after the server has been unreachable this long "
                         "(default: 300)")
    compute.add_argument("--poll-wait", type=_non_negative_float, default=25.0, metavar="S",
                         help="while idle, let the server hold each task request up to S seconds "
                         "and answer the moment a round opens (default: 25; 0: poll every "
                         "Retry-After seconds)")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> WorkerConfig:
    """Parse the command line into a :class:`WorkerConfig` (exits 2 on bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.partition_index >= args.num_partitions:
        parser.error(f"--partition-index {args.partition_index} must be below "
                     f"--num-partitions {args.num_partitions}")
    return WorkerConfig(
        server=args.server,
        name=args.name or default_name(),
        run=args.run,
        dataset=args.dataset,
        task=args.task,
        task_options=tuple(args.task_options),
        data=args.data,
        download=args.download,
        partition=args.partition,
        alpha=args.alpha,
        shards_per_client=args.shards_per_client,
        num_partitions=args.num_partitions,
        partition_index=args.partition_index,
        seed=args.seed,
        limit=args.limit,
        eval_fraction=args.eval_fraction,
        device=args.device,
        threads=args.threads,
        enrollment_key=args.enrollment_key,
        quiet=args.quiet,
        max_retry_seconds=args.max_retry_seconds,
        poll_wait=args.poll_wait,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    # Imported here so that --help and argument errors answer without loading torch.
    from worker.agent import Agent

    try:
        return int(Agent(config).run())
    except KeyboardInterrupt:  # a second Ctrl-C while leaving: stop at once
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
