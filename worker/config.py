"""The worker's settings, as parsed from the command line (see :mod:`worker.cli`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkerConfig:
    server: str
    name: str
    run: int | None = None
    dataset: str | None = None  # built-in task only: refuse a run on another dataset
    task: str | None = None  # a local task to use instead of the run's (its model must match)
    task_options: tuple[tuple[str, str], ...] = ()  # --task-option KEY=VALUE, passed to the task
    data: Path | None = None
    download: bool = False
    partition: str = "iid"
    alpha: float = 0.5
    shards_per_client: int = 2
    num_partitions: int = 1
    partition_index: int = 0
    seed: int = 0
    limit: int | None = None
    eval_fraction: float = 0.1
    device: str = "auto"
    threads: int | None = None
    enrollment_key: str | None = None
    quiet: bool = False
    max_retry_seconds: float = 300.0
    # Seconds the server may hold an idle task request (a long-poll); 0 polls instead.
    poll_wait: float = 25.0
