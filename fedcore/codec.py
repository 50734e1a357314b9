"""Wire codec for named tensors (model weights and updates).

Format, version 1 (all integers little-endian)::

    b"FEDT"            4 bytes  magic
    version            u8       = 1
    header_length      u32      length of the header in bytes (at most MAX_HEADER_BYTES)
    header             UTF-8 JSON, see below
    payload            exactly ONE zstd frame that declares its content size and
                       holds every tensor's encoded bytes concatenated in header order

Header::

    {"kind": "full" | "delta",
     "base_version": int | null,          # required (an int) when kind is "delta"
     "meta": {...},                        # small JSON object, free-form
     "tensors": [{"name": str,
                  "dtype": str,            # original numpy dtype, e.g. "float32", "int64"
                  "shape": [int, ...],
                  "encoding": str,         # see "Tensor encodings" below, or "raw"
                  "shuffle": bool,         # bytes stored as planes: all byte 0s, all byte 1s, ...
                  "nbytes": int}]}         # this tensor's bytes in the payload (checked, see below)

Integer and bool tensors always travel as "raw" little-endian bytes, so they are exact.
Float tensors use the requested encoding and decode to float32.

Tensor encodings (n = prod(shape); R = shape[0] for tensors of 2+ dims, 1 for vectors and
scalars, 0 when n == 0; all little-endian; nbytes must equal the size given here):

    float32      n x f4                                   lossless
    bfloat16     n x u2, top half of the float32, round to nearest even
    float16      n x f2
    int8         R x f4 scales, then n x i8 in [-127, 127]; value = q * scale[row]
    int4         R x f4 scales, then ceil(n/2) bytes of 4-bit values (element 2i in the low
                 nibble, stored as q + 8 with q in [-7, 7]; an odd count pads with q = 0)
    topkP-int8   (P in 10, 3, 1) keeps k = max(1, ceil(n * P / 100)) values (0 when n == 0):
                 1 x f4 scale, k x i8 values in [-127, 127], then the indices of the kept values,
                 strictly increasing: one mode byte, then either 0 = k unsigned LEB128 gaps
                 (index - previous index - 1, the first from -1) or 1 = a bitmap of ceil(n/8)
                 bytes, bit i of byte i//8 least significant first, exactly k bits set,
                 whichever is smaller. The values at every other index decode to 0.
    topkP-ternary  (P in 20, 10, 5) keeps k values as topkP-int8 does, but sends only their
                 signs: 1 x f4 magnitude (the mean |value| kept), ceil(k/8) bytes of sign bits
                 (bit j set = value j negative, least significant first, padding bits 0), then
                 the index section as above. Kept values decode to +-magnitude.

The quantized encodings (int8, int4, topk*) are for updates only: encode refuses them for
kind "full" and decode refuses a "full" blob that uses them. Quantizing full weights wipes out
most of what a round changes (even bfloat16 loses ~10 % of an update on full weights, 0.17 % on
the delta), so that path is closed rather than documented as a trap. Under int4 and topk*,
tensors with fewer than two dimensions (biases, BatchNorm parameters and statistics) travel as
int8 instead: they are a fraction of a percent of the bytes, and one scale per tensor at 4 bits,
or dropping 90 % of BatchNorm statistics, would cost accuracy for nothing. Quantized tensors are
never byte-shuffled (shuffle must be false).

Non-finite floats are refused on both sides (code "non_finite"): a NaN or inf weight is
always a bug or an attack, and refusing it at encode time gives the sender the error
instead of the server. This includes finite values that overflow the chosen encoding
(e.g. 1e5 as float16).

decode() treats its input as hostile: every size is checked against the header and
against max_bytes before anything large is allocated (scale counts, packed nibble bytes and the
bounds of top-k index sections follow from the shape), indices must be in range and strictly
increasing, scales finite and non-negative, and nothing is ever unpickled.

CodecError.code values (stable, safe to show to API clients):
bad_argument, bad_dtype (encode side); bad_magic, bad_version, truncated,
header_too_large, bad_header, kind_mismatch, manifest_mismatch, too_large,
size_mismatch (zstd declared size vs header), trailing_data, bad_payload, non_finite.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zstandard

from fedcore import quantize
from fedcore.quantize import QuantError

MAGIC = b"FEDT"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 4 << 20
CONTENT_TYPE = "application/x-fedplatform-tensors"
KINDS = ("full", "delta")
# Every name here fits the 16 characters of Round.upload_encoding (and Run's 32).
_DENSE_FLOAT = ("float32", "bfloat16", "float16")
# Top-k encodings: the percent of values kept, and how the kept values travel: "int8", a byte
# each on one scale, or "sign", a bit each on one shared magnitude (sparse ternary).
_TOPK = {
    "topk10-int8": (10, "int8"), "topk3-int8": (3, "int8"), "topk1-int8": (1, "int8"),
    "topk20-ternary": (20, "sign"), "topk10-ternary": (10, "sign"), "topk5-ternary": (5, "sign"),
}
ENCODINGS = (*_DENSE_FLOAT, "int8", "int4", *_TOPK)
LOSSLESS_ENCODINGS = frozenset({"float32"})
# Quantizers built for updates; refused in "full" blobs (see the module docstring).
DELTA_ONLY_ENCODINGS = frozenset({"int8", "int4", *_TOPK})

_PREFIX = struct.Struct("<4sBI")
_ENCODED_ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}
_SCALE_BYTES = 4  # scales are float32: per-row scales are a negligible share of the bytes
_FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
_RAW_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)
_TENSOR_KEYS = frozenset({"name", "dtype", "shape", "encoding", "shuffle", "nbytes"})
_HEADER_KEYS = frozenset({"kind", "base_version", "meta", "tensors"})
_MAX_NAME_CHARS = 1024
_MAX_NDIM = 32

Manifest = dict[str, tuple[str, tuple[int, ...]]]


class CodecError(ValueError):
    """Invalid or unacceptable tensor blob; ``code`` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Decoded:
    arrays: dict[str, np.ndarray]
    kind: str
    base_version: int | None
    meta: dict
    encodings: set[str] = field(default_factory=set)


# ---------------------------------------------------------------- manifests


def manifest_of(arrays: Mapping[str, np.ndarray]) -> Manifest:
    """Name -> (dtype str, shape) for a dict of arrays."""
    return {name: (np.asarray(a).dtype.name, tuple(int(d) for d in np.shape(a))) for name, a in arrays.items()}


def float32_size(manifest: Manifest) -> int:
    """Bytes if every float tensor went as raw float32 and every int tensor as its own dtype."""
    total = 0
    for dtype, shape in manifest.values():
        itemsize = 4 if dtype in _FLOAT_DTYPES else np.dtype(dtype).itemsize
        total += math.prod(shape) * itemsize
    return total


# ---------------------------------------------------------------- float conversions


def _to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round-to-nearest-even.

    NaNs stay NaN (quiet bit forced) rather than rounding into inf.
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit rounds ties towards an even mantissa;
    # the carry correctly ripples into the exponent (and up to inf on overflow).
    rounded = (bits + (((bits >> 16) & 1) + np.uint32(0x7FFF))) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return out


def _from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _shuffle(raw: np.ndarray, itemsize: int) -> bytes:
    return raw.view(np.uint8).reshape(-1, itemsize).T.tobytes()


def _unshuffle(buf: bytes | memoryview, itemsize: int) -> np.ndarray:
    planes = np.frombuffer(buf, dtype=np.uint8).reshape(itemsize, -1)
    return np.ascontiguousarray(planes.T).reshape(-1)


# ---------------------------------------------------------------- encode


def _encode_float(name: str, a: np.ndarray, encoding: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        f32 = a.astype(np.float32)
        if not np.isfinite(f32).all():
            raise CodecError("non_finite", f"tensor {name!r} has NaN/inf values or overflows float32")
        if encoding == "float32":
            return f32.astype("<f4").reshape(-1)
        if encoding == "float16":
            out = f32.astype("<f2").reshape(-1)
            if not np.isfinite(out).all():
                raise CodecError("non_finite", f"tensor {name!r} has values outside the float16 range")
            return out
        out = _to_bfloat16_bits(f32.reshape(-1)).astype("<u2")
        if ((out & 0x7F80) == 0x7F80).any():
            raise CodecError("non_finite", f"tensor {name!r} has values outside the bfloat16 range")
        return out


def _dense_reconstruction(flat: np.ndarray, encoding: str, shape: tuple[int, ...]) -> np.ndarray:
    """What decode() will return for a dense float tensor, computed the way decode computes it."""
    if encoding == "bfloat16":
        out = _from_bfloat16_bits(flat)
    else:
        out = flat.astype(np.float32, copy=True)
    return out.reshape(shape)


def _tensor_encoding(encoding: str, shape: tuple[int, ...]) -> str:
    # Vectors and scalars (biases, BatchNorm) go as int8 under the coarser encodings: they are a
    # tiny share of the bytes and the most sensitive to coarse quantization or sparsification.
    if encoding in DELTA_ONLY_ENCODINGS and encoding != "int8" and len(shape) < 2:
        return "int8"
    return encoding


def wire_encoding(encoding: str, dtype: str, shape: tuple[int, ...], *, exact: bool = False) -> str:
    """The encoding a tensor of this dtype and shape travels in when a blob asks for ``encoding``
    (``exact``: the tensor is named in encode()'s ``exact``): what encode() writes, and so what a
    server may insist on. Integer and bool tensors: "raw"."""
    if dtype not in _FLOAT_DTYPES:
        return "raw"
    return "float32" if exact else _tensor_encoding(encoding, tuple(shape))


def _encode_quantized(name: str, a: np.ndarray, encoding: str) -> tuple[bytes, np.ndarray]:
    """(payload bytes, decoded float32 values) of one float tensor under int8 / int4 / topk."""
    with np.errstate(over="ignore", invalid="ignore"):
        f32 = a.astype(np.float32, copy=False)  # read only below
    if not np.isfinite(f32).all():
        raise CodecError("non_finite", f"tensor {name!r} has NaN/inf values or overflows float32")
    shape = f32.shape
    if encoding in ("int8", "int4"):
        qmax = quantize.INT8_MAX if encoding == "int8" else quantize.INT4_MAX
        deadzone = 0.0 if encoding == "int8" else quantize.INT4_DEADZONE
        scales, q = quantize.quantize_rows(f32, qmax, deadzone)
        body = q if encoding == "int8" else quantize.pack_nibbles(q)
        data = scales.astype("<f4").tobytes() + body.tobytes()
        with np.errstate(over="ignore"):
            recon = quantize.dequantize_rows(scales, q, shape)
    else:
        flat = f32.reshape(-1)
        percent, values = _TOPK[encoding]
        k = quantize.topk_count(flat.size, percent)
        recon = np.zeros(flat.size, np.float32)
        if k == 0:
            return b"", recon.reshape(shape)
        idx = quantize.topk_select(flat, k)
        if values == "int8":
            scales, q = quantize.quantize_rows(flat[idx], quantize.INT8_MAX)
            head = scales.astype("<f4").tobytes() + q.tobytes()
            with np.errstate(over="ignore"):
                recon[idx] = quantize.dequantize_rows(scales, q, (k,))
        else:
            magnitude, negative = quantize.ternarize(flat[idx])
            head = np.array([magnitude], "<f4").tobytes() + quantize.pack_signs(negative).tobytes()
            recon[idx] = quantize.signed_magnitudes(magnitude, negative)
        data = head + quantize.encode_indices(idx, flat.size).tobytes()
        recon = recon.reshape(shape)
    if not np.isfinite(recon).all():
        raise CodecError("non_finite", f"tensor {name!r} has values that overflow when quantized")
    return data, recon


def encode(
    arrays: Mapping[str, np.ndarray],
    *,
    encoding: str = "bfloat16",
    shuffle: bool = True,
    level: int = 1,
    kind: str = "full",
    base_version: int | None = None,
    meta: dict | None = None,
    exact: Collection[str] = (),
) -> bytes:
    """Serialise named arrays into one FEDT blob (see the module docstring).

    Float tensors named in ``exact`` go as lossless float32 whatever ``encoding`` says: running
    statistics such as BatchNorm's variances are not updates and must never be quantized.
    """
    return _encode(arrays, encoding=encoding, shuffle=shuffle, level=level, kind=kind,
                   base_version=base_version, meta=meta, reconstruct=False, exact=exact)[0]


def encode_with_reconstruction(
    arrays: Mapping[str, np.ndarray],
    *,
    encoding: str = "bfloat16",
    shuffle: bool = True,
    level: int = 1,
    kind: str = "full",
    base_version: int | None = None,
    meta: dict | None = None,
    exact: Collection[str] = (),
) -> tuple[bytes, dict[str, np.ndarray]]:
    """``encode`` plus exactly what ``decode`` will return for it, without decoding.

    Error feedback needs ``decode(encode(x))``; the quantizer already has those values, so
    rebuilding them here skips a decompression and gives the same bits as the decoder.
    """
    blob, recon = _encode(arrays, encoding=encoding, shuffle=shuffle, level=level, kind=kind,
                          base_version=base_version, meta=meta, reconstruct=True, exact=exact)
    assert recon is not None
    return blob, recon


def _encode(
    arrays: Mapping[str, np.ndarray],
    *,
    encoding: str,
    shuffle: bool,
    level: int,
    kind: str,
    base_version: int | None,
    meta: dict | None,
    reconstruct: bool,
    exact: Collection[str] = (),
) -> tuple[bytes, dict[str, np.ndarray] | None]:
    if encoding not in ENCODINGS:
        raise CodecError("bad_argument", f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if not isinstance(level, int) or isinstance(level, bool) or not -7 <= level <= zstandard.MAX_COMPRESSION_LEVEL:
        raise CodecError("bad_argument", f"zstd level must be an int in [-7, 22], got {level!r}")
    _check_kind_and_base(kind, base_version, code="bad_argument")
    if kind == "full" and encoding in DELTA_ONLY_ENCODINGS:
        raise CodecError("bad_argument",
                         f"{encoding} quantizes updates; full weights need float32, bfloat16 or float16")
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise CodecError("bad_argument", "meta must be a dict")

    entries, chunks = [], []
    recon: dict[str, np.ndarray] | None = {} if reconstruct else None
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME_CHARS:
            raise CodecError("bad_argument", f"tensor names must be non-empty strings, got {name!r}")
        a = np.asarray(value)
        dtype = a.dtype.name
        tensor_shuffle = bool(shuffle)
        if dtype in _FLOAT_DTYPES:
            enc = "float32" if name in exact else _tensor_encoding(encoding, a.shape)
            if enc in DELTA_ONLY_ENCODINGS:
                data, values = _encode_quantized(name, a, enc)
                tensor_shuffle = False
                chunks.append(data)
            else:
                flat = _encode_float(name, a, enc)
                chunks.append(_shuffle(flat, flat.dtype.itemsize) if shuffle else flat.tobytes())
                values = _dense_reconstruction(flat, enc, a.shape) if reconstruct else a
        elif dtype in _RAW_DTYPES:
            enc = "raw"
            flat = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).reshape(-1)
            itemsize = flat.dtype.itemsize
            chunks.append(_shuffle(flat, itemsize) if shuffle and itemsize > 1 else flat.tobytes())
            values = a
        else:
            raise CodecError("bad_dtype", f"tensor {name!r} has unsupported dtype {a.dtype}")
        if recon is not None:
            recon[name] = values if enc != "raw" else a.copy()
        entries.append(
            {
                "name": name,
                "dtype": dtype,
                "shape": [int(d) for d in a.shape],
                "encoding": enc,
                "shuffle": tensor_shuffle,
                "nbytes": len(chunks[-1]),
            }
        )

    header_obj = {"kind": kind, "base_version": base_version, "meta": meta, "tensors": entries}
    try:
        header = json.dumps(header_obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise CodecError("bad_argument", f"header is not serialisable as JSON: {exc}") from exc
    if len(header) > MAX_HEADER_BYTES:
        raise CodecError("header_too_large", f"header is {len(header)} bytes, limit {MAX_HEADER_BYTES}")

    payload = b"".join(chunks)
    # Content size is declared so the receiver can check it before decompressing.
    frame = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=True).compress(payload)
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + frame, recon


# ---------------------------------------------------------------- header validation


def _check_kind_and_base(kind: Any, base_version: Any, *, code: str) -> None:
    if kind not in KINDS:
        raise CodecError(code, f"kind must be one of {KINDS}, got {kind!r}")
    if base_version is not None and (not _is_int(base_version) or base_version < 0):
        raise CodecError(code, f"base_version must be a non-negative int or null, got {base_version!r}")
    if kind == "delta" and base_version is None:
        raise CodecError(code, "a delta needs a base_version")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise CodecError("bad_header", "header JSON has duplicate keys")
    return out


def _reject_constant(name: str) -> None:
    raise CodecError("bad_header", f"header JSON contains {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise CodecError("bad_header", "header JSON contains a non-finite number")
    return value


def _bad(msg: str) -> CodecError:
    return CodecError("bad_header", msg)


def _quantized_nbytes_ok(enc: str, shape: list[int], nbytes: int) -> bool:
    """Whether a quantized tensor's declared size is one its shape allows (before decompressing)."""
    n = math.prod(shape)
    rows = quantize.row_count(tuple(shape))
    if enc == "int8":
        return nbytes == rows * _SCALE_BYTES + n
    if enc == "int4":
        return nbytes == rows * _SCALE_BYTES + quantize.packed_nibble_bytes(n)
    if n == 0:
        return nbytes == 0
    k = quantize.topk_count(n, _TOPK[enc][0])
    head = _SCALE_BYTES + _topk_value_bytes(enc, k)
    low, high = quantize.index_section_bounds(n, k)
    return head + low <= nbytes <= head + high


def _topk_value_bytes(enc: str, k: int) -> int:
    return k if _TOPK[enc][1] == "int8" else -(-k // 8)


def _validate_tensor_entry(i: int, t: Any) -> None:
    if not isinstance(t, dict) or set(t) != _TENSOR_KEYS:
        raise _bad(f"tensor entry {i} must be an object with keys {sorted(_TENSOR_KEYS)}")
    name = t["name"]
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME_CHARS:
        raise _bad(f"tensor entry {i} has an invalid name")
    dtype, enc = t["dtype"], t["encoding"]
    if not isinstance(dtype, str) or not isinstance(enc, str):
        raise _bad(f"tensor {name!r}: dtype and encoding must be strings")
    if dtype in _FLOAT_DTYPES:
        if enc not in ENCODINGS:
            raise _bad(f"tensor {name!r}: float dtype needs an encoding in {ENCODINGS}, got {enc!r}")
    elif dtype in _RAW_DTYPES:
        if enc != "raw":
            raise _bad(f"tensor {name!r}: dtype {dtype} must use the raw encoding, got {enc!r}")
    else:
        raise _bad(f"tensor {name!r}: dtype {dtype!r} is not allowed")
    shape = t["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_NDIM
        or not all(_is_int(d) and d >= 0 for d in shape)
    ):
        raise _bad(f"tensor {name!r}: shape must be a list of at most {_MAX_NDIM} non-negative ints")
    if not isinstance(t["shuffle"], bool):
        raise _bad(f"tensor {name!r}: shuffle must be a bool")
    if not _is_int(t["nbytes"]):
        raise _bad(f"tensor {name!r}: nbytes must be an int")
    if enc in DELTA_ONLY_ENCODINGS:
        if t["shuffle"]:
            raise _bad(f"tensor {name!r}: {enc} tensors are never shuffled")
        if not _quantized_nbytes_ok(enc, shape, t["nbytes"]):
            raise _bad(f"tensor {name!r}: nbytes does not fit a {enc} tensor of this shape")
        return
    itemsize = _ENCODED_ITEMSIZE[enc] if enc != "raw" else np.dtype(dtype).itemsize
    if t["nbytes"] != math.prod(shape) * itemsize:
        raise _bad(f"tensor {name!r}: nbytes does not match shape x itemsize")


def _parse_header(data: bytes | bytearray | memoryview) -> tuple[dict, int]:
    """Validate prefix + header; return (header, payload offset)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("bad_argument", f"expected bytes, got {type(data).__name__}")
    try:
        data = memoryview(data).cast("B")
    except TypeError as exc:
        raise CodecError("bad_argument", f"expected a contiguous byte buffer: {exc}") from exc
    head = bytes(data[:4])
    if head != MAGIC[: len(head)]:
        raise CodecError("bad_magic", "not a fedplatform tensor blob (bad magic)")
    if len(data) < _PREFIX.size:
        raise CodecError("truncated", "blob is shorter than its fixed prefix")
    _, version, header_len = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise CodecError("bad_version", f"unsupported format version {version}, expected {FORMAT_VERSION}")
    if header_len > MAX_HEADER_BYTES:
        raise CodecError("header_too_large", f"header declares {header_len} bytes, limit {MAX_HEADER_BYTES}")
    end = _PREFIX.size + header_len
    if len(data) < end:
        raise CodecError("truncated", "blob ends inside its header")
    try:
        header = json.loads(
            bytes(data[_PREFIX.size : end]).decode("utf-8"),
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except CodecError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError/UnicodeDecodeError are ValueErrors
        raise _bad(f"header is not valid UTF-8 JSON: {exc}") from exc

    if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
        raise _bad(f"header must be an object with keys {sorted(_HEADER_KEYS)}")
    _check_kind_and_base(header["kind"], header["base_version"], code="bad_header")
    if not isinstance(header["meta"], dict):
        raise _bad("meta must be an object")
    tensors = header["tensors"]
    if not isinstance(tensors, list):
        raise _bad("tensors must be a list")
    seen: set[str] = set()
    for i, t in enumerate(tensors):
        _validate_tensor_entry(i, t)
        if t["name"] in seen:
            raise _bad(f"duplicate tensor name {t['name']!r}")
        seen.add(t["name"])
        if header["kind"] == "full" and t["encoding"] in DELTA_ONLY_ENCODINGS:
            raise _bad(f"tensor {t['name']!r}: {t['encoding']} is only allowed in delta blobs")
    return header, end


def peek_header(data: bytes) -> dict:
    """Return the validated header without touching the payload."""
    return _parse_header(data)[0]


def _check_manifest(tensors: list[dict], manifest: Manifest) -> None:
    got = {t["name"]: t for t in tensors}
    for name in manifest:
        if name not in got:
            raise CodecError("manifest_mismatch", f"tensor {name!r} is missing")
    for t in tensors:
        name = t["name"]
        if name not in manifest:
            raise CodecError("manifest_mismatch", f"unexpected tensor {name!r}")
        dtype, shape = manifest[name]
        if t["dtype"] != dtype:
            raise CodecError("manifest_mismatch", f"tensor {name!r} has dtype {t['dtype']}, expected {dtype}")
        if tuple(t["shape"]) != tuple(shape):
            raise CodecError(
                "manifest_mismatch", f"tensor {name!r} has shape {tuple(t['shape'])}, expected {tuple(shape)}"
            )


# ---------------------------------------------------------------- zstd frame checks


def _frame_length(payload: memoryview) -> int:
    """Exact byte length of the zstd frame at the start of payload.

    Walking the block headers ourselves tells truncation apart from trailing garbage
    without relying on zstd's error strings.
    """
    n = len(payload)
    if n < 5:
        raise CodecError("truncated", "payload ends inside the zstd frame header")
    if bytes(payload[:4]) != b"\x28\xb5\x2f\xfd":
        raise CodecError("bad_payload", "payload is not a zstd frame")
    fhd = payload[4]
    fcs_flag, single_segment, checksum = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1
    reserved, dict_flag = (fhd >> 3) & 1, fhd & 3
    if reserved or dict_flag:
        raise CodecError("bad_payload", "zstd frame uses reserved bits or a dictionary")
    fcs_size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    pos = 5 + (0 if single_segment else 1) + fcs_size
    while True:
        if pos + 3 > n:
            raise CodecError("truncated", "payload ends inside a zstd block header")
        block = payload[pos] | (payload[pos + 1] << 8) | (payload[pos + 2] << 16)
        last, btype, bsize = block & 1, (block >> 1) & 3, block >> 3
        if btype == 3:
            raise CodecError("bad_payload", "zstd frame has a reserved block type")
        pos += 3 + (1 if btype == 1 else bsize)
        if pos > n:
            raise CodecError("truncated", "payload ends inside a zstd block")
        if last:
            break
    pos += 4 if checksum else 0
    if pos > n:
        raise CodecError("truncated", "payload ends inside the zstd checksum")
    return pos


def _decompress(payload: memoryview, expected: int) -> bytes:
    length = _frame_length(payload)
    if length != len(payload):
        raise CodecError("trailing_data", f"{len(payload) - length} unexpected bytes after the zstd frame")
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise CodecError("bad_payload", f"unreadable zstd frame header: {exc}") from exc
    # python-zstandard trusts a declared content size over max_output_size, so this
    # comparison is what actually bounds the allocation below.
    if declared != expected:
        raise CodecError(
            "size_mismatch",
            f"zstd frame declares {'no' if declared < 0 else declared} content size, header implies {expected}",
        )
    try:
        out = zstandard.ZstdDecompressor().decompress(payload, max_output_size=expected, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CodecError("bad_payload", f"corrupt zstd payload: {exc}") from exc
    if len(out) != expected:
        raise CodecError("size_mismatch", f"payload decompressed to {len(out)} bytes, expected {expected}")
    return out


# ---------------------------------------------------------------- decode


_LARGEST_LEVEL = {"int8": 127, "int4": 7}


def _check_dense_quantized(t: dict, buf: memoryview) -> tuple[np.ndarray, np.ndarray]:
    """Everything that makes an int8/int4 tensor acceptable, checked on its bytes: the scales are
    finite, non-negative and small enough that every value dequantizes to a finite float32, and
    every level is in the symmetric range. Returns (scales, packed levels)."""
    enc, shape = t["encoding"], tuple(t["shape"])
    raw = np.frombuffer(buf, dtype=np.uint8)
    rows = quantize.row_count(shape)
    scales = raw[: rows * _SCALE_BYTES].view("<f4").astype(np.float32)
    quantize.check_scales(scales)
    if not quantize.scales_fit(scales, _LARGEST_LEVEL[enc]):
        raise CodecError("non_finite", f"tensor {t['name']!r}: a scale so large its values overflow float32")
    body = raw[rows * _SCALE_BYTES :]
    if enc == "int8":
        quantize.check_int8(body.view(np.int8))
    else:
        quantize.check_packed_nibbles(body, math.prod(shape))
    return scales, body


def _decode_quantized(t: dict, buf: memoryview) -> np.ndarray:
    enc, shape = t["encoding"], tuple(t["shape"])
    raw = np.frombuffer(buf, dtype=np.uint8)
    n = math.prod(shape)
    if enc in _LARGEST_LEVEL:
        scales, body = _check_dense_quantized(t, buf)
        q = body.view(np.int8) if enc == "int8" else quantize.unpack_nibbles(body, n)
        return quantize.dequantize_rows(scales, q, shape)  # finite: the scales fit (checked)
    out = np.zeros(n, np.float32)
    if n == 0:
        return out.reshape(shape)
    k = quantize.topk_count(n, _TOPK[enc][0])
    scales = raw[:_SCALE_BYTES].view("<f4").astype(np.float32)
    quantize.check_scales(scales)
    values = raw[_SCALE_BYTES : _SCALE_BYTES + _topk_value_bytes(enc, k)]
    idx = quantize.decode_indices(raw[_SCALE_BYTES + values.size :], n, k)
    if _TOPK[enc][1] == "int8":
        q = values.view(np.int8)
        quantize.check_int8(q)
        with np.errstate(over="ignore"):
            out[idx] = quantize.dequantize_rows(scales, q, (k,))
    else:
        out[idx] = quantize.signed_magnitudes(scales[0], quantize.unpack_signs(values, k))
    return out.reshape(shape)


def _decode_tensor(t: dict, buf: memoryview) -> np.ndarray:
    enc, dtype, shape = t["encoding"], t["dtype"], tuple(t["shape"])
    if enc in DELTA_ONLY_ENCODINGS:
        try:
            out = _decode_quantized(t, buf)
        except QuantError as exc:
            raise CodecError("bad_payload", f"tensor {t['name']!r}: {exc}") from exc
        if enc not in _LARGEST_LEVEL and not np.isfinite(out).all():
            raise CodecError("non_finite", f"tensor {t['name']!r} has NaN/inf values")
        return out
    itemsize = _ENCODED_ITEMSIZE[enc] if enc != "raw" else np.dtype(dtype).itemsize
    if t["shuffle"] and itemsize > 1 and len(buf):
        flat = _unshuffle(buf, itemsize)
    else:
        flat = np.frombuffer(buf, dtype=np.uint8)
    if enc == "raw":
        out = flat.view(np.dtype(dtype).newbyteorder("<")).astype(np.dtype(dtype), copy=True)
        if dtype == "bool" and (flat > 1).any():
            raise CodecError("bad_payload", f"tensor {t['name']!r} has bool bytes other than 0/1")
    elif enc == "bfloat16":
        out = _from_bfloat16_bits(flat.view("<u2"))
    else:
        out = flat.view("<f4" if enc == "float32" else "<f2").astype(np.float32, copy=True)
    if enc != "raw" and not np.isfinite(out).all():
        raise CodecError("non_finite", f"tensor {t['name']!r} has NaN/inf values")
    # out is always a fresh C-contiguous copy here (np.ascontiguousarray would turn 0-d into 1-d).
    return out.reshape(shape)


def _open(data: bytes, *, manifest: Manifest | None, max_bytes: int, kind: str | None) -> tuple[dict, memoryview]:
    """The validated header and the decompressed payload (sizes checked before inflating)."""
    header, offset = _parse_header(data)
    tensors = header["tensors"]
    if kind is not None and header["kind"] != kind:
        raise CodecError("kind_mismatch", f"expected a {kind!r} blob, got {header['kind']!r}")
    if manifest is not None:
        _check_manifest(tensors, manifest)

    decoded_size = 0
    for t in tensors:
        out_itemsize = 4 if t["encoding"] != "raw" else np.dtype(t["dtype"]).itemsize
        decoded_size += math.prod(t["shape"]) * out_itemsize
    if decoded_size > max_bytes:
        raise CodecError("too_large", f"blob would decode to {decoded_size} bytes, limit {max_bytes}")

    expected = sum(t["nbytes"] for t in tensors)
    return header, memoryview(_decompress(memoryview(data).cast("B")[offset:], expected))


class LazyTensors(Mapping):
    """A blob's tensors, each decoded (and validated) only when it is looked up, never kept.

    For aggregation: folding an update tensor by tensor holds one decoded tensor at a time,
    not the whole update.
    """

    def __init__(self, header: dict, raw: memoryview) -> None:
        self._raw = raw
        self._where: dict[str, tuple[dict, int]] = {}
        pos = 0
        for t in header["tensors"]:
            self._where[t["name"]] = (t, pos)
            pos += t["nbytes"]

    def __getitem__(self, name: str) -> np.ndarray:
        t, pos = self._where[name]
        return _decode_tensor(t, self._raw[pos : pos + t["nbytes"]])

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def decode_lazily(
    data: bytes, *, manifest: Manifest | None = None, max_bytes: int = 1 << 30, kind: str | None = None
) -> LazyTensors:
    """Like :func:`decode`, but the tensors are decoded one by one as they are read."""
    header, raw = _open(data, manifest=manifest, max_bytes=max_bytes, kind=kind)
    return LazyTensors(header, raw)


def validate(
    data: bytes, *, manifest: Manifest | None = None, max_bytes: int = 1 << 30, kind: str | None = None
) -> Decoded:
    """Refuse exactly what :func:`decode` refuses, without keeping the decoded tensors.

    int8 and int4 tensors, the bulk of an update, are checked on their bytes (``_check_dense_
    quantized``) and never dequantized: a server accepting a ResNet-sized upload spends a few
    milliseconds on it instead of a decode's worth. The answer's ``arrays`` is empty.
    """
    header, raw = _open(data, manifest=manifest, max_bytes=max_bytes, kind=kind)
    pos = 0
    for t in header["tensors"]:
        buf = raw[pos : pos + t["nbytes"]]
        if t["encoding"] in _LARGEST_LEVEL:
            try:
                _check_dense_quantized(t, buf)
            except QuantError as exc:
                raise CodecError("bad_payload", f"tensor {t['name']!r}: {exc}") from exc
        else:
            _decode_tensor(t, buf)
        pos += t["nbytes"]
    return Decoded(
        arrays={},
        kind=header["kind"],
        base_version=header["base_version"],
        meta=header["meta"],
        encodings={t["encoding"] for t in header["tensors"]},
    )


def decode(
    data: bytes,
    *,
    manifest: Manifest | None = None,
    max_bytes: int = 1 << 30,
    kind: str | None = None,
) -> Decoded:
    """Validate and decode a FEDT blob; raise CodecError for anything unacceptable.

    max_bytes bounds the total size of the decoded arrays (float tensors count 4 bytes
    per element) and is checked before the payload is decompressed.
    """
    header, raw = _open(data, manifest=manifest, max_bytes=max_bytes, kind=kind)
    tensors = header["tensors"]
    arrays: dict[str, np.ndarray] = {}
    pos = 0
    for t in tensors:
        arrays[t["name"]] = _decode_tensor(t, raw[pos : pos + t["nbytes"]])
        pos += t["nbytes"]
    return Decoded(
        arrays=arrays,
        kind=header["kind"],
        base_version=header["base_version"],
        meta=header["meta"],
        encodings={t["encoding"] for t in tensors},
    )


def to_json(decoded: Decoded) -> dict:
    """JSON-serialisable rendering of a decoded blob, for debugging and size comparisons."""
    return {
        "kind": decoded.kind,
        "base_version": decoded.base_version,
        "meta": decoded.meta,
        "tensors": [
            {"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "values": a.tolist()}
            for name, a in decoded.arrays.items()
        ],
    }
