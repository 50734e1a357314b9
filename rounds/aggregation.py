"""Aggregation rules: pure functions over ``[(arrays, num_examples), ...]``.

Float tensors are averaged in float32 (accumulated in float64 so the order of clients does not
change the result); integer buffers such as BatchNorm's ``num_batches_tracked`` are averaged in
exact integer arithmetic and rounded half up, so they never drift through a float cast.
"""
from collections.abc import Mapping, Sequence

import numpy as np

Arrays = Mapping[str, np.ndarray]


def _check_same_layout(contributions: Sequence[tuple[Arrays, int]]) -> list[str]:
    if not contributions:
        raise ValueError("nothing to aggregate")
    names = list(contributions[0][0])
    for arrays, weight in contributions:
        if list(arrays) != names:
            raise ValueError("contributions disagree on tensor names")
        if weight <= 0:
            raise ValueError("every contribution needs a positive weight")
        for name in names:
            if arrays[name].shape != contributions[0][0][name].shape:
                raise ValueError(f"contributions disagree on the shape of {name}")
    return names


def weighted_mean(contributions: Sequence[tuple[Arrays, int]]) -> dict[str, np.ndarray]:
    """Per-tensor mean of the arrays, weighted by each contribution's example count."""
    names = _check_same_layout(contributions)
    total = sum(weight for _, weight in contributions)
    result: dict[str, np.ndarray] = {}
    for name in names:
        first = contributions[0][0][name]
        if np.issubdtype(first.dtype, np.integer) or first.dtype == np.bool_:
            # Python integers (object arrays) cannot overflow; integer buffers are tiny, so it is cheap.
            weighted = sum(int(weight) * arrays[name].astype(object) for arrays, weight in contributions)
            # floor((2*s + total) / (2*total)) rounds half up without leaving integer arithmetic.
            result[name] = np.asarray((2 * weighted + total) // (2 * total), dtype=object).astype(first.dtype)
        else:
            acc = np.zeros(first.shape, dtype=np.float64)
            for arrays, weight in contributions:
                acc += arrays[name].astype(np.float64) * (weight / total)
            result[name] = acc.astype(np.float32)
    return result


def apply_delta(base: Arrays, delta: Arrays) -> dict[str, np.ndarray]:
    """``base + delta`` per tensor, keeping each base tensor's dtype."""
    if list(base) != list(delta):
        raise ValueError("delta and base disagree on tensor names")
    return {name: (base[name] + delta[name]).astype(base[name].dtype) for name in base}


def fedavg(base: Arrays, deltas: Sequence[tuple[Arrays, int]]) -> dict[str, np.ndarray]:
    """FedAvg on deltas: the new global model is ``base`` plus the example-weighted mean delta."""
    return apply_delta(base, weighted_mean(deltas))


def weighted_metric(values: Sequence[tuple[float, int]]) -> float | None:
    """Example-weighted mean of a metric, or None when nobody reported it."""
    pairs = [(float(v), int(n)) for v, n in values if v is not None and n > 0]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None
