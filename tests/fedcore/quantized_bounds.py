"""The error each quantized encoding promises, as a checkable bound (shared by the codec tests)."""
from __future__ import annotations

import numpy as np

from fedcore import codec, quantize

# float32 arithmetic adds a few ulps of the row's largest value m to half a step: the scale m/qmax,
# x/scale (which can tip a value near a tie over it) and q*scale each round once, by 2**-24 of at most m.
_FLOAT32_ROUNDING = 2.0**-22


def _half_step(largest: np.ndarray | float, qmax: int, deadzone: float = 0.0) -> np.ndarray | float:
    """|error| of rounding on a grid of step largest/qmax, computed in float32: half a step to
    nearest, (1/2 + deadzone) of a step with a deadzone."""
    return largest / qmax * (0.5 + deadzone) + largest * _FLOAT32_ROUNDING


def _row_bound(x: np.ndarray, qmax: int, deadzone: float = 0.0) -> np.ndarray:
    """The rounding error each element's row allows."""
    rows = quantize.row_count(x.shape)
    if rows == 0:
        return np.zeros(x.shape, np.float32)
    grid = _half_step(np.abs(x.reshape(rows, -1).astype(np.float64)).max(axis=1, keepdims=True), qmax, deadzone)
    return np.broadcast_to(grid, (rows, x.size // rows)).reshape(x.shape)


def quantized_within_bound(x: np.ndarray, y: np.ndarray, encoding: str) -> bool:
    """int8: half a step per row; int4: (1/2 + its deadzone) of a step per row; top-k: at most k
    values kept, every dropped one no larger than the smallest kept and exactly zero on the wire;
    kept values as int8 (half a step of the largest) or, for ternary, all at one magnitude (their
    mean) with their own signs."""
    err = np.abs(y.astype(np.float64) - x.astype(np.float64))
    tiny = 2.0**-126  # subnormal scales lose their low bits
    if encoding == "int8" or x.ndim < 2:
        return bool(np.all(err <= _row_bound(x, 127) + tiny))
    if encoding == "int4":
        return bool(np.all(err <= _row_bound(x, 7, quantize.INT4_DEADZONE) + tiny))
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
        return bool(np.all(err.reshape(-1)[kept] <= _half_step(float(np.abs(flat).max()), 127) + tiny))
    magnitude = np.abs(flat[np.argsort(np.abs(flat), kind="stable")[-k:]]).mean(dtype=np.float64)
    same_sign = (flat[kept] == 0) | (np.sign(out[kept]) == np.sign(flat[kept]))
    return bool(np.allclose(np.abs(out[kept]), magnitude, rtol=1e-5, atol=tiny) and same_sign.all())
