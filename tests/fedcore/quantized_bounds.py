"""The error each quantized encoding promises, as a checkable bound (shared by the codec tests)."""
from __future__ import annotations

import numpy as np

from fedcore import codec, quantize

_SLACK = 1.0 + 2.0**-20  # float32 rounding in q * scale


def _row_bound(x: np.ndarray, qmax: int) -> np.ndarray:
    """Half a quantization step of each element's row: |error| of round-to-nearest."""
    rows = quantize.row_count(x.shape)
    if rows == 0:
        return np.zeros(x.shape, np.float32)
    grid = np.abs(x.reshape(rows, -1)).max(axis=1, keepdims=True) / qmax / 2
    return np.broadcast_to(grid, (rows, x.size // rows)).reshape(x.shape)


def quantized_within_bound(x: np.ndarray, y: np.ndarray, encoding: str) -> bool:
    """int8/int4: half a step per row; top-k: kept values as int8, dropped ones at most the
    largest dropped magnitude (and exactly zero on the wire)."""
    err = np.abs(y.astype(np.float64) - x.astype(np.float64))
    tiny = 2.0**-126  # subnormal scales lose their low bits
    if encoding == "int8" or x.ndim < 2:
        return bool(np.all(err <= _row_bound(x, 127) * _SLACK + tiny))
    if encoding == "int4":
        return bool(np.all(err <= _row_bound(x, 7) * _SLACK + tiny))
    flat, out = np.abs(x.reshape(-1)), y.reshape(-1)
    k = quantize.topk_count(flat.size, codec._TOPK_PERCENT[encoding])
    if flat.size == 0:
        return True
    dropped = out == 0
    kept_ok = err.reshape(-1) <= flat.max() / 254 * _SLACK + tiny
    largest_dropped = np.sort(flat)[-k - 1] if k < flat.size else 0.0
    return bool(np.all(kept_ok | (dropped & (flat <= largest_dropped))) and (~dropped).sum() <= k)
