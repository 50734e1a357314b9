"""Error feedback: what a lossy encoding drops from one update is added to the next.

A sender keeps one residual per float tensor::

    to_send  = delta + residual
    residual = to_send - decode(encode(to_send))

so nothing is lost for good, only delayed: the sum of what the server has received tracks the
sum of the true updates to within one residual. This is what lets int4 and top-k converge like
float32 (without it, top-k would drop the same small coordinates round after round).

The residual lives in memory only. A restarted worker starts from zero, which loses at most one
residual's worth of progress; persisting it would tie a worker's disk to a run for no real gain.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from fedcore import codec


@dataclass(frozen=True)
class PendingUpdate:
    """An encoded update and the residual to keep once the server has accepted it."""

    body: bytes
    residual: dict[str, np.ndarray]
    residual_norm: float


class ErrorFeedback:
    """Per-tensor residual memory for one sender (a worker, or one client in a simulation)."""

    def __init__(self) -> None:
        self._residual: dict[str, np.ndarray] = {}

    @property
    def residual(self) -> Mapping[str, np.ndarray]:
        return self._residual

    def reset(self) -> None:
        self._residual = {}

    def encode(
        self,
        delta: Mapping[str, np.ndarray],
        *,
        encoding: str,
        base_version: int,
        meta: dict | None = None,
        exact: Collection[str] = (),
    ) -> PendingUpdate:
        """Encode ``delta`` plus the carried residual as a delta blob; nothing changes until
        ``commit``: an update the server never counted must not consume the residual.
        Tensors named in ``exact`` (a model's buffers) go lossless."""
        to_send = self._compensated(delta)
        body, decoded = codec.encode_with_reconstruction(
            to_send, encoding=encoding, kind="delta", base_version=base_version, meta=meta, exact=exact
        )
        residual: dict[str, np.ndarray] = {}
        if encoding not in codec.LOSSLESS_ENCODINGS:  # lossless leaves nothing behind
            for name, value in to_send.items():
                if value.dtype == np.float32:
                    residual[name] = value - decoded[name]
        norm = float(np.sqrt(sum(float(np.dot(r.reshape(-1), r.reshape(-1))) for r in residual.values())))
        return PendingUpdate(body=body, residual=residual, residual_norm=norm)

    def commit(self, pending: PendingUpdate) -> None:
        """The server accepted ``pending``: carry its residual into the next update."""
        self._residual = pending.residual

    def _compensated(self, delta: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._fits(delta):
            self._residual = {}  # another model (a new run or architecture): start afresh
        out: dict[str, np.ndarray] = {}
        for name, value in delta.items():
            a = np.asarray(value)
            if a.dtype.kind == "f":
                a = a.astype(np.float32)
                if name in self._residual:
                    a = a + self._residual[name]
            out[name] = a
        return out

    def _fits(self, delta: Mapping[str, np.ndarray]) -> bool:
        return all(
            name in delta and np.shape(delta[name]) == r.shape for name, r in self._residual.items()
        )
