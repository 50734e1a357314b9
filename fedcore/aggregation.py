"""Aggregation arithmetic: the example-weighted mean, streaming and batch, and metric means.

Float tensors are averaged in float32, accumulated in float64 (so the order of clients changes
the result by less than a float32 rounding); integer buffers such as BatchNorm's
``num_batches_tracked`` are averaged in exact integer arithmetic and rounded half up, so they
never drift through a float cast.

The strategies (``fedcore.strategies``) build on these: the one aggregation path that the
server's engine, its audit and the benchmarks share. The weighted mean folds each contribution
into an accumulator and forgets it, so memory does not grow with the number of updates.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Arrays = Mapping[str, np.ndarray]


def _is_integer(array: np.ndarray) -> bool:
    return bool(np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_)


class WeightedMeanAccumulator:
    """Example-weighted mean of arrays seen one at a time.

    Each contribution is folded in as ``acc += x * w`` and the sum divided by the total weight at
    the end, so the total need not be known while contributions arrive: the engine folds updates
    in as devices send them (``rounds.prefold``) and the close only adds the last ones. The same
    operations in the same order give the same bits, so the streaming mean, the batch mean and
    ``audit_run``'s recomputation agree exactly. ``total_weight``, when given, is checked at the end.
    """

    def __init__(self, total_weight: int | None = None) -> None:
        if total_weight is not None and total_weight <= 0:
            raise ValueError("every contribution needs a positive weight")
        self.total = None if total_weight is None else int(total_weight)
        self.seen = 0
        self._names: list[str] | None = None
        self._shapes: dict[str, tuple] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self._acc: dict[str, np.ndarray] = {}

    def add(self, arrays: Arrays, weight: int) -> None:
        if weight <= 0:
            raise ValueError("every contribution needs a positive weight")
        if self._names is None:
            self._names = list(arrays)
            for name, array in arrays.items():
                self._shapes[name] = array.shape
                self._dtypes[name] = array.dtype
                if _is_integer(array):
                    self._acc[name] = np.zeros(array.shape, dtype=object)
                else:
                    self._acc[name] = np.zeros(array.shape, dtype=np.float64)
        if list(arrays) != self._names:
            raise ValueError("contributions disagree on tensor names")
        for name in self._names:
            array = arrays[name]
            if array.shape != self._shapes[name]:
                raise ValueError(f"contributions disagree on the shape of {name}")
            acc = self._acc[name]
            if acc.dtype == object:
                # Python integers (object arrays) cannot overflow; integer buffers are tiny.
                acc += int(weight) * array.astype(object)
            else:
                scaled = array.astype(np.float64)
                scaled *= float(weight)  # in place: one float64 temporary per tensor, not two
                acc += scaled
        self.seen += int(weight)

    def result(self) -> dict[str, np.ndarray]:
        if self._names is None:
            raise ValueError("nothing to aggregate")
        if self.total is not None and self.seen != self.total:
            raise ValueError(f"weights seen ({self.seen}) differ from the total announced ({self.total})")
        total = self.seen
        out: dict[str, np.ndarray] = {}
        for name in self._names:
            acc = self._acc.pop(name)  # frees each float64 accumulator as soon as it is converted
            if acc.dtype == object:
                # floor((2*s + total) / (2*total)) rounds half up without leaving integer arithmetic.
                rounded = np.asarray((2 * acc + total) // (2 * total), dtype=object)
                out[name] = rounded.astype(self._dtypes[name])
            else:
                acc /= float(total)
                out[name] = acc.astype(np.float32)
        return out


def weighted_mean(contributions: Sequence[tuple[Arrays, int]]) -> dict[str, np.ndarray]:
    """Per-tensor mean of the arrays, weighted by each contribution's example count."""
    if not contributions:
        raise ValueError("nothing to aggregate")
    mean = WeightedMeanAccumulator(sum(weight for _, weight in contributions) or 1)
    for arrays, weight in contributions:
        mean.add(arrays, weight)
    return mean.result()


def apply_delta(base: Arrays, delta: Arrays) -> dict[str, np.ndarray]:
    """``base + delta`` per tensor, keeping each base tensor's dtype."""
    if list(base) != list(delta):
        raise ValueError("delta and base disagree on tensor names")
    return {name: (base[name] + delta[name]).astype(base[name].dtype) for name in base}


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past float range
        return None
    return number if math.isfinite(number) else None


def weighted_metric(values: Sequence[tuple[object, object]]) -> float | None:
    """Example-weighted mean of a metric, or None when nobody reported it.

    Reports come from devices: a value or weight that is not a finite number is skipped, and a
    mean that would overflow is None, so a round's metrics are always finite JSON and computing
    them never raises (the server bounds reports too; this holds whatever reached the database).
    """
    pairs = []
    for value, weight in values:
        v, n = _finite(value), _finite(weight)
        if v is not None and n is not None and n > 0:
            pairs.append((v, n))
    if not pairs:
        return None
    try:  # fsum raises where sum() would give inf or nan: an overflowing partial sum, inf - inf
        mean = math.fsum(v * n for v, n in pairs) / math.fsum(n for _, n in pairs)
    except (OverflowError, ValueError, ZeroDivisionError):
        return None
    return mean if math.isfinite(mean) else None
