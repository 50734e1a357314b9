"""A device's share of a labelled dataset that every device holds a copy of (simulations, demos)."""
from __future__ import annotations

import numpy as np

from fedcore.partition import partition, split_indices
from fedcore.tasks.base import DataRequest, TaskDataError


def device_indices(labels: np.ndarray, request: DataRequest) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of this device's partition, as the worker's flags ask.

    Every device must pass the same ``seed`` and ``num_partitions`` so the partitions are disjoint.
    """
    try:
        parts = partition(
            labels, num_partitions=request.num_partitions, scheme=request.partition, seed=request.seed,
            alpha=request.alpha, shards_per_partition=request.shards_per_partition,
        )
        train, held_out = split_indices(
            parts[request.partition_index], eval_fraction=request.eval_fraction, seed=request.seed,
            partition_index=request.partition_index, limit=request.limit,
        )
    except (ValueError, IndexError) as err:
        raise TaskDataError(f"cannot partition the data: {err}") from err
    if train.size == 0:
        raise TaskDataError(
            f"partition {request.partition_index} of {request.num_partitions} ({request.partition}) "
            "has no training examples"
        )
    return train, held_out


def training_subset(total: int, size: int, seed: int) -> np.ndarray:
    """The sorted indices of a seeded ``size``-example subset of ``total`` (all when it is larger)."""
    if size >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng([seed, 0x5EED]).choice(total, size=size, replace=False))


def describe(request: DataRequest, what: str, data_train: int, data_eval: int) -> str:
    return (f"{what} partition {request.partition_index}/{request.num_partitions} ({request.partition}), "
            f"{data_train} train + {data_eval} eval examples")
