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
                  "encoding": "float32" | "bfloat16" | "float16" | "raw",
                  "shuffle": bool,         # bytes stored as planes: all byte 0s, all byte 1s, ...
                  "nbytes": int}]}         # = prod(shape) * encoded itemsize

Integer and bool tensors always travel as "raw" little-endian bytes, so they are exact.
Float tensors use the requested encoding and decode to float32. bfloat16 is the top half
of a float32, rounded to nearest even.

Non-finite floats are refused on both sides (code "non_finite"): a NaN or inf weight is
always a bug or an attack, and refusing it at encode time gives the sender the error
instead of the server. This includes finite values that overflow the chosen encoding
(e.g. 1e5 as float16).

decode() treats its input as hostile: every size is checked against the header and
against max_bytes before anything large is allocated, and nothing is ever unpickled.

CodecError.code values (stable, safe to show to API clients):
bad_argument, bad_dtype (encode side); bad_magic, bad_version, truncated,
header_too_large, bad_header, kind_mismatch, manifest_mismatch, too_large,
size_mismatch (zstd declared size vs header), trailing_data, bad_payload, non_finite.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zstandard

MAGIC = b"FEDT"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 4 << 20
CONTENT_TYPE = "application/x-fedplatform-tensors"
ENCODINGS = ("float32", "bfloat16", "float16")
KINDS = ("full", "delta")

_PREFIX = struct.Struct("<4sBI")
_ENCODED_ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}
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


def encode(
    arrays: Mapping[str, np.ndarray],
    *,
    encoding: str = "bfloat16",
    shuffle: bool = True,
    level: int = 1,
    kind: str = "full",
    base_version: int | None = None,
    meta: dict | None = None,
) -> bytes:
    """Serialise named arrays into one FEDT blob (see the module docstring)."""
    if encoding not in ENCODINGS:
        raise CodecError("bad_argument", f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if not isinstance(level, int) or isinstance(level, bool) or not -7 <= level <= zstandard.MAX_COMPRESSION_LEVEL:
        raise CodecError("bad_argument", f"zstd level must be an int in [-7, 22], got {level!r}")
    _check_kind_and_base(kind, base_version, code="bad_argument")
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise CodecError("bad_argument", "meta must be a dict")

    entries, chunks = [], []
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME_CHARS:
            raise CodecError("bad_argument", f"tensor names must be non-empty strings, got {name!r}")
        a = np.asarray(value)
        dtype = a.dtype.name
        if dtype in _FLOAT_DTYPES:
            enc = encoding
            flat = _encode_float(name, a, encoding)
        elif dtype in _RAW_DTYPES:
            enc = "raw"
            flat = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).reshape(-1)
        else:
            raise CodecError("bad_dtype", f"tensor {name!r} has unsupported dtype {a.dtype}")
        itemsize = flat.dtype.itemsize
        chunks.append(_shuffle(flat, itemsize) if shuffle and itemsize > 1 else flat.tobytes())
        entries.append(
            {
                "name": name,
                "dtype": dtype,
                "shape": [int(d) for d in a.shape],
                "encoding": enc,
                "shuffle": bool(shuffle),
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
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + frame


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
    itemsize = _ENCODED_ITEMSIZE[enc] if enc != "raw" else np.dtype(dtype).itemsize
    if not _is_int(t["nbytes"]) or t["nbytes"] != math.prod(shape) * itemsize:
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


def _decode_tensor(t: dict, buf: memoryview) -> np.ndarray:
    enc, dtype, shape = t["encoding"], t["dtype"], tuple(t["shape"])
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
    raw = memoryview(_decompress(memoryview(data).cast("B")[offset:], expected))
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
