"""How a round's client deltas combine into one: pure functions on numpy arrays.

A rule sees ``(delta, weight)`` pairs and returns one combined delta with the same names, shapes
and dtypes. The example-weighted mean folds each delta in as it arrives (streaming: memory does
not grow with the number of updates). The robust rules need every delta of the round at once
(``streaming = False``): they hold N updates in memory, and they ignore the example counts
devices claim, so a device cannot buy influence by over-stating its data.

Integer tensors (BatchNorm's ``num_batches_tracked``) always take the exact integer weighted mean:
a median of counters means nothing and they carry no learning signal.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np

from fedcore.aggregation import Arrays, WeightedMeanAccumulator


def is_float(array: np.ndarray) -> bool:
    return bool(np.issubdtype(array.dtype, np.floating))


def update_norm(delta: Arrays, exempt: frozenset[str] = frozenset()) -> float:
    """L2 norm of a delta's float tensors, leaving out ``exempt`` ones (BatchNorm statistics)."""
    total = 0.0
    for name in delta:
        if name in exempt:
            continue
        array = delta[name]
        if is_float(array):
            flat = np.asarray(array, dtype=np.float64).ravel()
            total += float(flat @ flat)
    return math.sqrt(total)


def clip_factor(norm: float, max_norm: float) -> float:
    """The scale that brings ``norm`` down to ``max_norm`` (1 when it is within it or clipping is off)."""
    if max_norm <= 0 or norm <= max_norm:
        return 1.0
    return max_norm / norm


class Scaled(Mapping):
    """A delta whose float tensors (but ``exempt`` ones) are multiplied by ``factor`` as they are read:
    clipping that keeps a lazily decoded update lazy."""

    def __init__(self, delta: Arrays, factor: float, exempt: frozenset[str]) -> None:
        self._delta, self._factor, self._exempt = delta, factor, exempt

    def __getitem__(self, name: str) -> np.ndarray:
        array = self._delta[name]
        if self._factor == 1.0 or name in self._exempt or not is_float(array):
            return array
        return (array.astype(np.float64) * self._factor).astype(array.dtype)

    def __iter__(self) -> Iterator[str]:
        return iter(self._delta)

    def __len__(self) -> int:
        return len(self._delta)


class Rule:
    """Combine a round's deltas. ``add`` each one, then ``result``; ``info`` says what it did."""

    streaming = True

    def add(self, delta: Arrays, weight: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def result(self) -> dict[str, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def info(self) -> dict[str, float | int]:
        return {}


class WeightedMean(Rule):
    """FedAvg's combination: the example-weighted mean, folded in one delta at a time."""

    streaming = True

    def __init__(self, total_weight: int | None = None) -> None:
        self._mean = WeightedMeanAccumulator(total_weight)

    def add(self, delta: Arrays, weight: int) -> None:
        self._mean.add(delta, weight)

    def result(self) -> dict[str, np.ndarray]:
        return self._mean.result()


class _Collecting(Rule):
    """Holds every delta of the round: what the robust rules need."""

    streaming = False

    def __init__(self) -> None:
        self.deltas: list[dict[str, np.ndarray]] = []
        self.weights: list[int] = []

    def add(self, delta: Arrays, weight: int) -> None:
        materialised = {name: np.asarray(delta[name]) for name in delta}
        if self.deltas:
            _check_same_layout(self.deltas[0], materialised)
        self.deltas.append(materialised)
        self.weights.append(int(weight))

    def result(self) -> dict[str, np.ndarray]:
        if not self.deltas:
            raise ValueError("nothing to aggregate")
        chosen = self._combine_floats()
        out: dict[str, np.ndarray] = {}
        for name, first in self.deltas[0].items():
            if is_float(first):
                out[name] = chosen[name].astype(first.dtype)
            else:
                integer = WeightedMeanAccumulator(sum(self.weights))
                for delta, weight in zip(self.deltas, self.weights):
                    integer.add({name: delta[name]}, weight)
                out[name] = integer.result()[name]
        return out

    def _stack(self, name: str) -> np.ndarray:
        return np.stack([np.asarray(d[name], dtype=np.float64) for d in self.deltas])

    def _float_names(self) -> list[str]:
        return [name for name, array in self.deltas[0].items() if is_float(array)]

    def _combine_floats(self) -> dict[str, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError


def _check_same_layout(first: Arrays, other: Arrays) -> None:
    if list(first) != list(other):
        raise ValueError("contributions disagree on tensor names")
    for name in first:
        if first[name].shape != other[name].shape:
            raise ValueError(f"contributions disagree on the shape of {name}")


class CoordinateMedian(_Collecting):
    """Coordinate-wise median of the deltas (Yin et al., 2018); unweighted."""

    def _combine_floats(self) -> dict[str, np.ndarray]:
        return {name: np.median(self._stack(name), axis=0) for name in self._float_names()}


class TrimmedMean(_Collecting):
    """Coordinate-wise mean after dropping the ``k`` largest and ``k`` smallest values, with
    ``k = floor(trim_fraction * n)``, lowered when fewer than one value would remain; unweighted."""

    def __init__(self, trim_fraction: float) -> None:
        super().__init__()
        self.trim_fraction = trim_fraction
        self.trimmed = 0

    def _combine_floats(self) -> dict[str, np.ndarray]:
        n = len(self.deltas)
        k = min(int(math.floor(self.trim_fraction * n)), (n - 1) // 2)
        self.trimmed = k
        out = {}
        for name in self._float_names():
            ordered = np.sort(self._stack(name), axis=0)
            out[name] = ordered[k : n - k].mean(axis=0)
        return out

    def info(self) -> dict[str, float | int]:
        return {"trimmed_each_side": self.trimmed}


class MultiKrum(_Collecting):
    """Multi-Krum (Blanchard et al., 2017): score each delta by the summed squared distances to its
    ``n - f - 2`` nearest others, keep the ``m`` best-scored (``m = 0``: ``n - f``) and average them
    unweighted.

    Krum's guarantee needs ``n > 2f + 2``; with fewer updates ``f`` is lowered to the largest that
    satisfies it (and ``info`` says so) rather than refusing the round, so a small round still closes.
    """

    def __init__(self, byzantine: int, keep: int) -> None:
        super().__init__()
        self.byzantine, self.keep = byzantine, keep
        self.selected: list[int] = []
        self.f_used = byzantine

    def _combine_floats(self) -> dict[str, np.ndarray]:
        n = len(self.deltas)
        names = self._float_names()
        self.selected = krum_select(self._distances(names), self.byzantine, self.keep)
        self.f_used = min(self.byzantine, max(0, (n - 3) // 2))
        return {name: np.mean([np.asarray(self.deltas[i][name], np.float64) for i in self.selected], axis=0)
                for name in names}

    def _distances(self, names: list[str]) -> np.ndarray:
        n = len(self.deltas)
        distances = np.zeros((n, n))
        for name in names:  # one tensor at a time: no (n x model size) matrix
            flat = self._stack(name).reshape(n, -1)
            squared = np.einsum("ij,ij->i", flat, flat)
            distances += squared[:, None] + squared[None, :] - 2.0 * (flat @ flat.T)
        return np.maximum(distances, 0.0)

    def info(self) -> dict[str, float | int]:
        return {"krum_selected": len(self.selected), "krum_f": self.f_used}


def krum_select(distances: np.ndarray, byzantine: int, keep: int) -> list[int]:
    """Indices of the ``keep`` deltas (0: ``n - f``) with the lowest Krum scores, given their
    pairwise squared distances; ties go to the earlier index."""
    n = len(distances)
    f = min(byzantine, max(0, (n - 3) // 2))
    neighbours = max(1, n - f - 2)
    scores = []
    for i in range(n):
        others = np.delete(distances[i], i)
        scores.append(float(np.sort(others)[: min(neighbours, len(others))].sum()) if len(others) else 0.0)
    count = keep if keep > 0 else n - f
    count = max(1, min(count, n))
    return sorted(sorted(range(n), key=lambda i: (scores[i], i))[:count])
