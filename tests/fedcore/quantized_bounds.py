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
    """int8/int4: half a step per row; top-k: at most k values kept, every dropped one no larger
    than the smallest kept and exactly zero on the wire; kept values as int8 (half a step of the
    largest) or, for ternary, all at one magnitude (their mean) with their own signs."""
    err = np.abs(y.astype(np.float64) - x.astype(np.float64))
    tiny = 2.0**-126  # subnormal scales lose their low bits
    if encoding == "int8" or x.ndim < 2:
        return bool(np.all(err <= _row_bound(x, 127) * _SLACK + tiny))
    if encoding == "int4":
        return bool(np.all(err <= _row_bound(x, 7) * _SLACK + tiny))
    percent, values = codec._TOPK[encoding]
    flat, out = x.reshape(-1), y.reshape(-1)
    k = quantize.topk_count(flat.size, percent)
    if flat.size == 0:
        return True
    kept = np.flatnonzero(out)
    dropped = np.setdiff1d(np.arange(flat.size), kept)
    if kept.size > k or (kept.size and dropped.size and np.abs(flat[dropped]).max() > np.abs(flat[kept]).min()):
        return False
    if values == "int8":
        return bool(np.all(err.reshape(-1)[kept] <= np.abs(flat).max() / 254 * _SLACK + tiny))
    magnitude = np.abs(flat[np.argsort(np.abs(flat), kind="stable")[-k:]]).mean(dtype=np.float64)
    same_sign = (flat[kept] == 0) | (np.sign(out[kept]) == np.sign(flat[kept]))
    return bool(np.allclose(np.abs(out[kept]), magnitude, rtol=1e-5, atol=tiny) and same_sign.all())
