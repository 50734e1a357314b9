"""This worker's share of the data: load, partition, hold out an evaluation split, cap.

Every step is seeded so that a worker restarted with the same arguments trains on exactly the
same examples, and so that workers sharing ``--seed`` get disjoint partitions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedcore.data import DATASETS, DatasetInfo, load_dataset, to_tensors
from fedcore.partition import partition


@dataclass(frozen=True)
class LocalData:
    info: DatasetInfo
    train_indices: np.ndarray  # indices into the dataset's training set
    eval_indices: np.ndarray
    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor

    @property
    def num_train(self) -> int:
        return int(self.train_indices.size)

    @property
    def num_eval(self) -> int:
        return int(self.eval_indices.size)


def split_indices(
    indices: np.ndarray,
    *,
    eval_fraction: float,
    seed: int,
    partition_index: int,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a partition's indices into disjoint (train, eval) index arrays.

    The shuffle is seeded by ``(seed, partition_index)``: deterministic for one worker, different
    between workers. ``limit`` caps the training examples; the held-out split is capped in
    proportion so that a quick demo does not spend most of its time evaluating.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    rng = np.random.default_rng([seed, partition_index])
    shuffled = rng.permutation(np.asarray(indices, dtype=np.int64))
    n = shuffled.size
    n_eval = min(int(round(eval_fraction * n)), max(n - 1, 0))  # always keep one to train on
    eval_part, train_part = shuffled[:n_eval], shuffled[n_eval:]
    if limit is not None:
        train_part = train_part[:limit]
        if eval_fraction > 0:
            eval_cap = max(1, int(round(limit * eval_fraction / (1.0 - eval_fraction))))
            eval_part = eval_part[:eval_cap]
    # Sorted: the order carries no information (training shuffles) and sorted gathers are faster.
    return np.sort(train_part), np.sort(eval_part)


def prepare_data(
    dataset: str,
    *,
    root: Path | None = None,
    download: bool = False,
    scheme: str = "iid",
    alpha: float = 0.5,
    shards_per_partition: int = 2,
    num_partitions: int = 1,
    partition_index: int = 0,
    seed: int = 0,
    limit: int | None = None,
    eval_fraction: float = 0.1,
) -> LocalData:
    """Load ``dataset``'s training set and cut out this worker's train and eval tensors.

    Raises ``fedcore.data.DatasetNotFound`` when the files are not there (and not downloaded).
    """
    info = DATASETS[dataset]
    x, y = load_dataset(dataset, root=root, train=True, download=download)
    # The partition must use the same seed on every worker, or partitions would overlap.
    parts = partition(
        y, num_partitions=num_partitions, scheme=scheme, seed=seed,
        alpha=alpha, shards_per_partition=shards_per_partition,
    )
    train_idx, eval_idx = split_indices(
        parts[partition_index], eval_fraction=eval_fraction, seed=seed,
        partition_index=partition_index, limit=limit,
    )
    if train_idx.size == 0:
        raise ValueError(
            f"partition {partition_index} of {num_partitions} ({scheme}) has no training examples"
        )
    train_x, train_y = to_tensors(x[train_idx], y[train_idx], info)
    eval_x, eval_y = to_tensors(x[eval_idx], y[eval_idx], info)
    return LocalData(info, train_idx, eval_idx, train_x, train_y, eval_x, eval_y)
