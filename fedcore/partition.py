"""Deterministic splits of a labelled dataset into per-client partitions.

Every scheme returns sorted, disjoint int64 index arrays whose union is every index,
and the same arguments always give the same split (numpy default_rng(seed)).

- "iid": a seeded shuffle cut into near-equal parts.
- "dirichlet": for each class, proportions ~ Dirichlet(alpha); small alpha = strong skew.
  No partition may be empty: the draw is repeated (same generator, so still
  deterministic) up to _DIRICHLET_RETRIES times, and if a part is still empty it takes
  one index from the currently largest part.
- "quantity": quantity skew only: partition sizes ~ Dirichlet(alpha) over the partitions, the
  labels of each drawn at random (every partition looks like the whole dataset, in different
  amounts). Empty partitions are handled as for "dirichlet".
- "shards": McMahan et al.'s pathological split: indices sorted by label, cut into
  num_partitions * shards_per_partition near-equal shards (the remainder spread one
  index at a time), each partition receiving shards_per_partition random shards.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

SCHEMES = ("iid", "quantity", "dirichlet", "shards")
_DIRICHLET_RETRIES = 100


def _iid(n: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    return np.array_split(rng.permutation(n), k)


def _dirichlet_draw(labels: np.ndarray, k: int, alpha: float, rng: np.random.Generator) -> list[list[np.ndarray]]:
    parts: list[list[np.ndarray]] = [[] for _ in range(k)]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        proportions = rng.dirichlet(np.full(k, alpha))
        cuts = (np.cumsum(proportions)[:-1] * len(idx)).astype(np.int64)
        for part, chunk in zip(parts, np.split(idx, cuts)):
            part.append(chunk)
    return parts


def _quantity_draw(n: int, k: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    cuts = (np.cumsum(rng.dirichlet(np.full(k, alpha)))[:-1] * n).astype(np.int64)
    return np.split(rng.permutation(n), cuts)


def _dirichlet(labels: np.ndarray, k: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    return _non_empty(lambda: [np.concatenate(p) for p in _dirichlet_draw(labels, k, alpha, rng)], k)


def _quantity(n: int, k: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    return _non_empty(lambda: _quantity_draw(n, k, alpha, rng), k)


def _non_empty(draw, k: int) -> list[np.ndarray]:
    for _ in range(_DIRICHLET_RETRIES):
        parts = draw()
        if all(len(p) for p in parts):
            return parts
    # Very small alpha with many partitions: fall back to topping up empty parts.
    for i in range(k):
        if not len(parts[i]):
            donor = max(range(k), key=lambda j: len(parts[j]))
            parts[i], parts[donor] = parts[donor][-1:], parts[donor][:-1]
    return parts


def _shards(labels: np.ndarray, k: int, per_part: int, rng: np.random.Generator) -> list[np.ndarray]:
    num_shards = k * per_part
    if num_shards > len(labels):
        raise ValueError(f"{num_shards} shards requested but only {len(labels)} examples")
    # Shuffle first so the order within each class is random, then stable-sort by label.
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_shards)
    order = rng.permutation(num_shards)
    return [np.concatenate([shards[s] for s in order[i * per_part : (i + 1) * per_part]]) for i in range(k)]


def partition(
    labels: np.ndarray,
    *,
    num_partitions: int,
    scheme: str = "iid",
    seed: int = 0,
    alpha: float = 0.5,
    shards_per_partition: int = 2,
) -> list[np.ndarray]:
    """Split indices 0..len(labels)-1 into num_partitions sorted int64 arrays."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be a 1-D integer array")
    if not isinstance(num_partitions, (int, np.integer)) or not 1 <= num_partitions <= len(labels):
        raise ValueError(f"num_partitions must be between 1 and {len(labels)}, got {num_partitions!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose from {SCHEMES}")
    if not (isinstance(alpha, Real) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    if not isinstance(shards_per_partition, (int, np.integer)) or shards_per_partition < 1:
        raise ValueError(f"shards_per_partition must be >= 1, got {shards_per_partition!r}")

    rng = np.random.default_rng(seed)
    k = int(num_partitions)
    if scheme == "iid":
        parts = _iid(len(labels), k, rng)
    elif scheme == "dirichlet":
        parts = _dirichlet(labels, k, float(alpha), rng)
    elif scheme == "quantity":
        parts = _quantity(len(labels), k, float(alpha), rng)
    else:
        parts = _shards(labels, k, int(shards_per_partition), rng)
    return [np.sort(p).astype(np.int64) for p in parts]


def label_skew(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between each partition's label mix and the global one.

    0 means every partition looks like the whole dataset; values near 1 mean partitions
    hold classes the rest of the data barely has.
    """
    labels = np.asarray(labels)
    classes, global_counts = np.unique(labels, return_counts=True)
    global_dist = global_counts / global_counts.sum()
    distances = []
    for p in parts:
        if len(p) == 0:
            raise ValueError("label_skew needs non-empty partitions")
        counts = np.array([np.count_nonzero(labels[p] == c) for c in classes])
        distances.append(0.5 * np.abs(counts / counts.sum() - global_dist).sum())
    return float(np.mean(distances))


def split_indices(
    indices: np.ndarray,
    *,
    eval_fraction: float,
    seed: int,
    partition_index: int,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a partition's indices into disjoint (train, eval) index arrays.

    The shuffle is seeded by ``(seed, partition_index)``: deterministic for one device, different
    between devices. ``limit`` caps the training examples; the held-out split is capped in
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
