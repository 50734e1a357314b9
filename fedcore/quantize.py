"""Lossy number formats for model *updates*: per-row int8/int4, top-k sparsification, signs.

Pure numpy, no framing: ``fedcore.codec`` lays these pieces out on the wire and validates sizes
before calling the decoders here. Every decoder treats its input as hostile and raises
``QuantError`` for anything the encoder could not have produced.

Why these choices (measured on a real ResNet-18 update, benchmarks/results/codec_sizes.md):

- **Scales per row (dim 0)**, for int8 and int4 alike: one scale per output channel. On a real
  ResNet-18 update, int4 with a scale per row takes 3.82 MB; groups of 128 along the flattened
  tensor take 4.94 MB (over the 4.4 MB budget, a quarter of the prototype) for 28 % less error
  per round (11.6 % vs 16.2 % on the conv/linear weights). Error feedback makes that per-round
  error irrelevant to accuracy (int4 per row matches float32 in benchmarks/results/
  accuracy_cost_*.md), so the bytes win. Tensors with fewer than two dimensions get one scale.
- **Deterministic rounding**, not stochastic: fewer bytes (3.82 vs 4.02 MB) at 19 % less error
  (16.2 % vs 20.0 %). Stochastic rounding's selling point, unbiasedness, is what error feedback
  (fedcore.feedback and the broadcast replica) already provides, without the extra variance.
  int8 rounds to nearest; int4 rounds with a deadzone of 1/6 of a step (``INT4_DEADZONE``): a
  magnitude's fraction must pass 2/3 to round up, the rounding offset of video codecs' rate-
  distortion quantizers. Small values, the most frequent, fall to zero more often, so the levels
  compress better: a ResNet-18 round, int4 both ways, 8.25 -> 7.81 MB for 18 % more error per
  broadcast (0.13 -> 0.155 of one round's change), which the next broadcast carries.
- **Symmetric ranges** [-127, 127] and [-7, 7]: zero stays exactly zero, and -128 / -8 never occur,
  so a decoder can refuse them as corruption.
"""
from __future__ import annotations

import math

import numpy as np

INT8_MAX = 127
INT4_MAX = 7
INT4_DEADZONE = 1 / 6  # the encoder's choice: decoders read levels, not how they were rounded
# Index coding modes for top-k (first byte of the index section).
INDEX_VARINT = 0
INDEX_BITMAP = 1


class QuantError(ValueError):
    """A payload that no encoder produces: corrupt, truncated inside, or forged."""


# ---------------------------------------------------------------- per-row scaled integers


def row_count(shape: tuple[int, ...]) -> int:
    """How many scales a tensor of ``shape`` carries: one per row, or one for a vector/scalar."""
    n = math.prod(shape)
    if n == 0:
        return 0
    return int(shape[0]) if len(shape) >= 2 else 1


def quantize_rows(x: np.ndarray, qmax: int, deadzone: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """float32 array -> (scales float32 (R,), q int8 flat) with ``x ~ q * scale[row]``.

    Each row's scale is ``max|row| / qmax``. ``deadzone`` 0 rounds to nearest (|error| <=
    scale / 2); a positive one rounds a magnitude down unless its fraction exceeds 1/2 + deadzone,
    so |error| <= scale * (1/2 + deadzone): fewer bits for a little more error. The row's maximum
    still maps to ``qmax``.
    """
    if not 0.0 <= deadzone < 0.5:
        raise ValueError(f"deadzone must be in [0, 0.5), got {deadzone!r}")
    x = np.asarray(x, dtype=np.float32)
    rows = row_count(x.shape)
    if rows == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int8)
    grid = x.reshape(rows, -1)
    scales = (np.abs(grid).max(axis=1) / np.float32(qmax)).astype(np.float32)
    # Division (not multiplication by 1/scale): a subnormal scale has no finite inverse. A row of
    # zeros is divided by 1 instead of its zero scale; in place, since this runs on whole models.
    y = grid / np.where(scales > 0, scales, np.float32(1))[:, None]
    if deadzone:
        np.abs(y, out=y)
        y += np.float32(0.5 - deadzone)
        np.floor(y, out=y)
        np.copysign(y, grid, out=y)
    else:
        np.rint(y, out=y)
    np.clip(y, -qmax, qmax, out=y)
    return scales, y.astype(np.int8).reshape(-1)


def dequantize_rows(scales: np.ndarray, q: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 values that ``quantize_rows`` stands for (the encoder uses this too, bit for bit)."""
    rows = row_count(shape)
    if rows == 0:
        return np.zeros(shape, np.float32)
    grid = q.reshape(rows, -1).astype(np.float32) * scales.astype(np.float32)[:, None]
    return grid.reshape(shape)


def check_scales(scales: np.ndarray) -> None:
    if not np.isfinite(scales).all() or (scales < 0).any():
        raise QuantError("scales must be finite and non-negative")


def check_int8(q: np.ndarray) -> None:
    if (q == -128).any():
        raise QuantError("int8 value -128 is outside the symmetric range")


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def scales_fit(scales: np.ndarray, largest_level: int) -> bool:
    """Whether every dequantized value ``q * scale`` (|q| <= largest_level) is a finite float32.

    An encoder's scale is a row's largest magnitude over ``largest_level``, so it always fits;
    checked, the values need no finiteness pass of their own. The product of a float32 and a
    small integer is exact in float64, so the comparison is too.
    """
    return not scales.size or float(scales.max()) * largest_level <= _FLOAT32_MAX


def check_packed_nibbles(packed: np.ndarray, n: int) -> None:
    """What ``unpack_nibbles`` refuses, checked on the packed bytes without unpacking them."""
    if packed.size != packed_nibble_bytes(n):
        raise QuantError(f"{packed.size} packed bytes cannot hold exactly {n} 4-bit values")
    if not packed.size:
        return
    if ((packed & 0x0F) == 0).any() or (packed[: n // 2] < 0x10).any():
        raise QuantError("4-bit value -8 is outside the symmetric range")
    if n % 2 and packed[-1] >> 4 != 8:
        raise QuantError("the padding nibble must encode 0")


# ---------------------------------------------------------------- 4-bit packing


def packed_nibble_bytes(n: int) -> int:
    return (n + 1) // 2


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """int8 values in [-7, 7] -> bytes holding two each (element 2i in the low nibble), offset 8."""
    u = (q.astype(np.int8, copy=False) + np.int8(8)).view(np.uint8)  # q in [-7, 7]: no overflow
    if u.size % 2:
        u = np.append(u, np.uint8(8))  # the padding nibble encodes 0
    return (u[0::2] | (u[1::2] << 4)).astype(np.uint8)


def unpack_nibbles(packed: np.ndarray, n: int) -> np.ndarray:
    if packed.size != packed_nibble_bytes(n):
        raise QuantError(f"{packed.size} packed bytes cannot hold exactly {n} 4-bit values")
    u = np.empty(packed.size * 2, np.uint8)
    u[0::2] = packed & 0x0F
    u[1::2] = packed >> 4
    if n % 2 and u[-1] != 8:
        raise QuantError("the padding nibble must encode 0")
    u = u[:n]
    if (u == 0).any():
        raise QuantError("4-bit value -8 is outside the symmetric range")
    return u.view(np.int8) - np.int8(8)  # u in [1, 15]: no overflow


# ---------------------------------------------------------------- top-k


def topk_count(n: int, percent: int) -> int:
    """Values a top-``percent`` tensor of n elements keeps: at least one of a non-empty tensor."""
    return 0 if n == 0 else min(n, max(1, -(-n * percent // 100)))


def topk_select(x: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices of the k largest magnitudes of flat ``x``."""
    n = x.size
    if k >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.argpartition(np.abs(x), n - k)[n - k :]).astype(np.int64)


def ternarize(values: np.ndarray) -> tuple[np.float32, np.ndarray]:
    """Kept values -> (their mean magnitude, which are negative): each decodes to +-magnitude.

    The mean magnitude keeps the sum of |values|; error feedback carries what the signs
    leave out (sparse ternary compression, Sattler et al. 2019).
    """
    if not values.size:
        return np.float32(0), values < 0
    with np.errstate(over="ignore"):
        magnitude = np.abs(values, dtype=np.float32).mean()
    if not np.isfinite(magnitude):  # the float32 sum of values near the float32 maximum overflows
        magnitude = np.abs(values).mean(dtype=np.float64)
    return np.float32(magnitude), values < 0


def signed_magnitudes(magnitude: np.float32, negative: np.ndarray) -> np.ndarray:
    """The float32 values ``ternarize`` stands for (the encoder uses this too, bit for bit)."""
    magnitude = np.float32(magnitude)
    return np.where(negative, -magnitude, magnitude)


def pack_signs(negative: np.ndarray) -> np.ndarray:
    """One bit a value, set when negative, least significant first; the last byte pads with 0."""
    return np.packbits(negative.astype(bool), bitorder="little")


def unpack_signs(packed: np.ndarray, k: int) -> np.ndarray:
    """The k sign bits ``pack_signs`` wrote, or QuantError if the size or padding is wrong."""
    if packed.size != -(-k // 8):
        raise QuantError(f"{packed.size} sign bytes cannot hold exactly {k} signs")
    bits = np.unpackbits(packed, bitorder="little")
    if bits[k:].any():
        raise QuantError("sign padding bits must be 0")
    return bits[:k].astype(bool)


def varint_max_len(n: int) -> int:
    """Bytes of the longest LEB128 gap in a tensor of n elements (gaps are < n)."""
    return max(1, -(-max(n - 1, 1).bit_length() // 7))


def varint_encode(values: np.ndarray) -> np.ndarray:
    """Unsigned LEB128 of each value, concatenated, vectorised (7 bits a byte, high bit = more)."""
    v = values.astype(np.uint64)
    lengths = np.ones(v.size, np.int64)
    rest = v >> np.uint64(7)
    while rest.any():
        lengths += rest > 0
        rest >>= np.uint64(7)
    starts = np.cumsum(lengths) - lengths
    out = np.empty(int(lengths.sum()), np.uint8)
    for j in range(int(lengths.max(initial=0))):
        live = lengths > j
        byte = ((v[live] >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        more = (lengths[live] - 1 > j).astype(np.uint8) << 7
        out[starts[live] + j] = byte | more
    return out


def varint_decode(buf: np.ndarray, count: int, max_len: int) -> np.ndarray:
    """Exactly ``count`` canonical LEB128 values filling ``buf``; each at most ``max_len`` bytes."""
    ends = np.flatnonzero(buf < 0x80)
    if ends.size != count or (count and ends[-1] != buf.size - 1) or (not count and buf.size):
        raise QuantError(f"index section does not hold exactly {count} varints")
    if count == 0:
        return np.zeros(0, np.uint64)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    lengths = ends - starts + 1
    if lengths.max() > max_len:
        raise QuantError("a varint is longer than any index gap can be")
    if ((lengths > 1) & (buf[ends] == 0)).any():
        raise QuantError("overlong varint")
    values = np.zeros(count, np.uint64)
    for j in range(int(lengths.max())):
        live = lengths > j
        values[live] |= (buf[starts[live] + j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
    return values


def encode_indices(idx: np.ndarray, n: int) -> np.ndarray:
    """Mode byte + the smaller of delta-coded varint gaps and a bitmap (little bit order)."""
    gaps = np.diff(idx, prepend=-1) - 1
    varints = varint_encode(gaps)
    bitmap_bytes = -(-n // 8)
    if varints.size < bitmap_bytes:
        return np.concatenate([np.array([INDEX_VARINT], np.uint8), varints])
    bits = np.zeros(n, bool)
    bits[idx] = True
    return np.concatenate([np.array([INDEX_BITMAP], np.uint8), np.packbits(bits, bitorder="little")])


def index_section_bounds(n: int, k: int) -> tuple[int, int]:
    """(min, max) bytes of an index section, mode byte included: checked before decompressing."""
    bitmap = -(-n // 8)
    return 1 + min(k, bitmap), 1 + max(k * varint_max_len(n), bitmap)


def decode_indices(section: np.ndarray, n: int, k: int) -> np.ndarray:
    """Strictly increasing indices in [0, n), exactly k of them, or QuantError."""
    if section.size < 1:
        raise QuantError("empty index section")
    mode, body = int(section[0]), section[1:]
    if mode == INDEX_BITMAP:
        if body.size != -(-n // 8):
            raise QuantError("bitmap size does not match the tensor")
        bits = np.unpackbits(body, bitorder="little")
        if bits[n:].any():
            raise QuantError("bitmap sets bits past the end of the tensor")
        idx = np.flatnonzero(bits[:n]).astype(np.int64)
        if idx.size != k:
            raise QuantError(f"bitmap selects {idx.size} values, the encoding keeps {k}")
        return idx
    if mode != INDEX_VARINT:
        raise QuantError(f"unknown index coding {mode}")
    gaps = varint_decode(body, k, varint_max_len(n))
    if k and gaps.max() >= n:
        raise QuantError("index gap past the end of the tensor")
    # Each gap < n and k <= n, so the running sum stays far below 2**63.
    idx = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if k and idx[-1] >= n:
        raise QuantError("index past the end of the tensor")
    return idx
