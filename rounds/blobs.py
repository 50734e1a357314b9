"""Model and update blobs in Django storage."""
import hashlib
import os
import threading

import numpy as np
from cachetools import LRUCache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from fedcore import codec


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store(prefix: str, data: bytes, digest: str, suffix: str = ".fedt") -> str:
    """Write ``data`` under a content-addressed name and return the storage name.

    Content addressing makes a retried or raced write harmless: the same bytes land at the same
    name, and an existing file is kept rather than duplicated.
    """
    name = f"{prefix}/{digest}{suffix}"
    if default_storage.exists(name):
        return name
    return default_storage.save(name, ContentFile(data))


def load(name: str | None) -> bytes:
    """The stored blob ``name`` (a file field's name; empty or None where nothing is stored)."""
    if not name:
        raise FileNotFoundError("no blob is stored here")
    with default_storage.open(name, "rb") as handle:
        return handle.read()


# What devices download (broadcast deltas, replica snapshots) is asked for by every device of a
# round within seconds. Blob names end in their content's digest (``store``), so a name always
# means the same bytes and a kept copy never goes stale. Bounded by size, per server process;
# updates are never kept (the engine reads each once, and its memory must not grow with them).
_shared: LRUCache = LRUCache(maxsize=int(os.environ.get("FEDPLATFORM_BLOB_CACHE_BYTES", 256 << 20)), getsizeof=len)
_shared_lock = threading.Lock()


def load_shared(name: str | None) -> bytes:
    """``load``, kept in memory for the next device that asks (see ``_shared``)."""
    with _shared_lock:
        data = _shared.get(name)
    if data is None:
        data = load(name)
        if len(data) <= _shared.maxsize // 4:  # one blob may not crowd out the rest
            with _shared_lock:
                _shared[name] = data
    return data


# Decoded models (versions, replicas, strategy states) by blob name and digest, per process: every
# round decodes its base once, not per update, and the engine keeps what it has just encoded.
_decoded: LRUCache = LRUCache(maxsize=8)
_decoded_lock = threading.Lock()


def decoded_version(name: str | None, digest: str) -> dict[str, np.ndarray]:
    """The decoded blob ``name`` (read-only arrays, shared through the cache)."""
    with _decoded_lock:
        arrays = _decoded.get((name, digest))
    if arrays is None:
        arrays = remember_decoded(name, digest, codec.decode(load(name), kind="full").arrays)
    return arrays


def remember_decoded(name: str | None, digest: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep ``arrays`` as what blob ``name`` decodes to: the writer of a blob already holds its
    decoded values (``codec.encode_with_reconstruction``) and need not read them back."""
    for array in arrays.values():
        array.setflags(write=False)  # shared through the cache: nobody may modify it in place
    with _decoded_lock:
        _decoded[(name, digest)] = arrays
    return arrays
