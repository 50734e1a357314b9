"""The broadcast replica: the model every device rebuilds, with the server's error feedback.

Beside the exact global model x_t the server keeps the replica devices hold::

    x^_0 = x_0
    x^_t = x^_(t-1) + Q(x_t - x^_(t-1))

with Q the run's download encoding. What Q drops from one broadcast is still in
``x_t - x^_t`` and goes out with the next one, so the replica never drifts from the global model
by more than one broadcast's quantization error (the downlink half of bidirectional error
feedback, as in DoubleSqueeze). One encoded delta per version serves every device that holds
the previous replica; a device that holds an older one gets the chain of those deltas, or a
lossless float32 snapshot of the replica when that is smaller.

A device rebuilds with ``rebuild`` and the server computes the replica from the very blob it
sends, decoded and added the same way, so both sides hold the same bits. ``digest`` names those
bits, and devices check what they rebuilt against it.

float32 is lossless: there the replica *is* the global model, and a step whose float32 delta
would not rebuild it bit for bit (float32 addition is not exact for every pair) sends no delta at
all; devices one version behind then get the snapshot.

A chain travels as one body (``pack_chain``)::

    b"FEDC"   4 bytes  magic
    version   u8       = 1
    count     u32      number of FEDT blobs, 1 to MAX_CHAIN
    lengths   count x u64
    blobs     the FEDT blobs, in order, exactly the lengths above
"""
from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedcore import codec
from fedcore.state import add, subtract

CHAIN_CONTENT_TYPE = "application/x-fedplatform-tensor-chain"
CHAIN_MAGIC = b"FEDC"
CHAIN_FORMAT_VERSION = 1
MAX_CHAIN = 64
_CHAIN_PREFIX = struct.Struct("<4sBI")
_LENGTH = struct.Struct("<Q")

# Encodings a run may broadcast in. ``step`` takes any delta encoding (benchmarks measure the
# sparse ones too), but top-k downloads are not offered: what their replica error costs in
# accuracy is not measured, and every device of a run trains from that replica.
DOWNLOAD_ENCODINGS = ("float32", "bfloat16", "float16", "int8", "int4")
# int4 deltas of the replica: with int4 uploads a ResNet-18 round costs a device 7.8 MB against
# float32's 89.5 MB both ways (benchmarks/results/round_bytes.md), and paired seeds put its
# accuracy beside float32 downloads' (benchmarks/results/accuracy_cost_*_default_downloads_seeds.md).
DEFAULT_DOWNLOAD_ENCODING = "int4"


class ChainError(ValueError):
    """A chain body that is not well formed."""


@dataclass(frozen=True)
class Step:
    """One version's broadcast: the encoded delta from the previous replica (None when no delta
    can be sent and devices behind need the snapshot) and the replica it leads to."""

    delta: bytes | None
    replica: dict[str, np.ndarray]
    exact: bool  # the replica is the global model itself, bit for bit


def rebuild(held: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a device holds after applying a broadcast delta: the one addition both sides use."""
    return add(held, delta)


def same_bits(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    """Whether two models are identical bit for bit (dtypes, shapes, signed zeros included)."""
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        x, y = np.asarray(x), np.asarray(b[name])
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            return False
    return True


def digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of a model's exact bits: every tensor's name, dtype, shape and little-endian bytes,
    in name order. Independent of how the model travelled (codec, compression, chain)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        h.update(f"{name}\0{a.dtype.name}\0{list(a.shape)}\0".encode())
        h.update(a.data.cast("B"))
    return h.hexdigest()


def step(
    previous: Mapping[str, np.ndarray],
    target: Mapping[str, np.ndarray],
    *,
    encoding: str,
    base_version: int,
    exact: Collection[str] = (),
    meta: dict | None = None,
) -> Step:
    """The broadcast from replica ``previous`` towards the global model ``target``.

    ``exact`` names tensors (a model's buffers, BatchNorm statistics) that go as float32 whatever
    the encoding: a quantized variance can come back negative.
    """
    if encoding not in codec.ENCODINGS:
        raise ValueError(f"encoding must be one of {codec.ENCODINGS}, got {encoding!r}")
    delta = subtract(target, previous)
    blob = codec.encode(delta, encoding=encoding, kind="delta", base_version=base_version, meta=meta, exact=exact)
    # From the blob itself, decoded as a device decodes it: the replica is what devices will hold.
    replica = rebuild(previous, codec.decode(blob, kind="delta").arrays)
    if encoding in codec.LOSSLESS_ENCODINGS:
        if not same_bits(replica, target):
            return Step(None, dict(target), True)
        return Step(blob, dict(target), True)
    return Step(blob, replica, same_bits(replica, target))


def use_chain(step_bytes: Sequence[int | None], snapshot_bytes: int) -> bool:
    """Whether a device behind by ``len(step_bytes)`` versions should get the chain of broadcast
    deltas (their sizes, None where a version sent none) rather than the snapshot: only when every
    step exists and together they are smaller."""
    if not step_bytes or len(step_bytes) > MAX_CHAIN or any(size is None for size in step_bytes):
        return False
    return sum(step_bytes) < snapshot_bytes  # type: ignore[arg-type]


def pack_chain(blobs: Sequence[bytes]) -> bytes:
    if not 1 <= len(blobs) <= MAX_CHAIN:
        raise ChainError(f"a chain holds 1 to {MAX_CHAIN} blobs, not {len(blobs)}")
    head = _CHAIN_PREFIX.pack(CHAIN_MAGIC, CHAIN_FORMAT_VERSION, len(blobs))
    return head + b"".join(_LENGTH.pack(len(b)) for b in blobs) + b"".join(blobs)


def unpack_chain(data: bytes, *, max_bytes: int) -> list[bytes]:
    """The FEDT blobs of a chain body, each checked by the codec only when decoded; the framing
    is checked here (magic, version, count, lengths that add up to exactly the body)."""
    if len(data) > max_bytes:
        raise ChainError(f"chain of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < _CHAIN_PREFIX.size:
        raise ChainError("chain body too short")
    magic, version, count = _CHAIN_PREFIX.unpack_from(data)
    if magic != CHAIN_MAGIC or version != CHAIN_FORMAT_VERSION:
        raise ChainError("not a version 1 chain body")
    if not 1 <= count <= MAX_CHAIN:
        raise ChainError(f"a chain holds 1 to {MAX_CHAIN} blobs, not {count}")
    offset = _CHAIN_PREFIX.size + count * _LENGTH.size
    if len(data) < offset:
        raise ChainError("chain body too short for its lengths")
    lengths = [_LENGTH.unpack_from(data, _CHAIN_PREFIX.size + i * _LENGTH.size)[0] for i in range(count)]
    if offset + sum(lengths) != len(data):
        raise ChainError("chain lengths do not add up to the body")
    out = []
    for length in lengths:
        out.append(data[offset:offset + length])
        offset += length
    return out
