"""What a model download sends: the full lossless version, or the delta from one the device holds.

``GET runs/{id}/model/?version=N&base=M`` asks for version N by a device that holds version M.
The answer is the delta N - M in the run's ``download_encoding`` (kind "delta", base_version M)
when that is possible and the device can decode it, else the stored full float32 blob:

- M unknown in this run, M >= N, or N - M > MAX_DELTA_SPAN (the device is far behind: a fresh
  lossless copy also clears any drift that lossy deltas left in its copy) -> full;
- the device did not declare the encoding in ``accepts`` at registration -> full (float32
  counts as declared: every decoder of this format reads it);
- float32 deltas must rebuild N bit for bit: the server checks ``M + delta == N`` with the very
  addition the worker does (``fedcore.state.add``) and sends the full model if any bit differs.
  A version made by FedAvg from M (``M + mean``, float32) always passes; a delta spanning
  several rounds may not, since float32 addition is not associative.

Only dense encodings are allowed for downloads (DOWNLOAD_ENCODINGS): the server keeps no
per-device residual, so top-k or int4 deltas would leave devices drifting away from the global
model round after round; int8 and 16-bit deltas err by well under 1 % of one round's change.

Encoded deltas are cached in-process (LRU bounded by bytes), keyed by run, both versions, their
digests (row ids are reused by tests and restored databases; digests are not) and the encoding,
so the devices of one round share one encoding.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from fedcore import codec
from fedcore.state import add, subtract

from . import blobs
from .models import ModelVersion

DOWNLOAD_ENCODINGS = ("float32", "bfloat16", "float16", "int8")
MAX_DELTA_SPAN = 20
CACHE_BYTES = 256 << 20


@dataclass(frozen=True)
class ModelBody:
    data: bytes
    base_version: int | None  # None: the full model


class _BytesLRU:
    """Least-recently-used cache of byte strings, bounded by their total size; thread-safe."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: bytes) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._size += len(value)
            while self._size > self._limit and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


_cache = _BytesLRU(CACHE_BYTES)
_NO_DELTA = b""  # cached answer "this delta cannot be exact: send the full model"


def model_body(*, version: ModelVersion, base: int | None, accepts: list[str] | None) -> ModelBody:
    """The bytes to send for ``version`` to a device holding ``base`` (see the module docstring).

    ``accepts`` is the device's declared list of encodings; None (an operator) accepts all.
    """
    full = ModelBody(blobs.load(version.blob.name), None)
    encoding = version.run.download_encoding
    if (
        base is None
        or not 0 <= version.number - base - 1 < MAX_DELTA_SPAN
        or encoding not in DOWNLOAD_ENCODINGS
        # float32 is the codec's baseline: every device decodes it, declared or not.
        or (accepts is not None and encoding != "float32" and encoding not in accepts)
    ):
        return full
    source = ModelVersion.objects.filter(run_id=version.run_id, number=base).first()
    if source is None:
        return full
    key = (version.run_id, base, version.number, source.sha256, version.sha256, encoding)
    data = _cache.get(key)
    if data is None:
        data = _encode_delta(source, version, encoding)
        _cache.put(key, data)
    return ModelBody(data, base) if data else full


def _encode_delta(source: ModelVersion, target: ModelVersion, encoding: str) -> bytes:
    old = blobs.decoded_version(source.blob.name, source.sha256)
    new = blobs.decoded_version(target.blob.name, target.sha256)
    delta = subtract(new, old)
    if encoding in codec.LOSSLESS_ENCODINGS and not _rebuilds(old, delta, new):
        return _NO_DELTA
    return codec.encode(delta, encoding=encoding, kind="delta", base_version=source.number,
                        meta={"run": target.run_id, "version": target.number})


def _rebuilds(old: dict[str, np.ndarray], delta: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> bool:
    """Whether the device's ``add(old, delta)`` gives ``new`` bit for bit (signed zeros included)."""
    rebuilt = add(old, delta)
    return all(np.asarray(rebuilt[k]).tobytes() == np.asarray(new[k]).tobytes() for k in new)


def clear_cache() -> None:
    _cache.clear()
