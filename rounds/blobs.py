"""Model and update blobs in Django storage, and the model layout each run expects."""
import functools
import hashlib

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from fedcore import codec
from fedcore.data import DATASETS
from fedcore.nets import build_model
from fedcore.state import state_to_arrays


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store(prefix: str, data: bytes, digest: str) -> str:
    """Write ``data`` under a content-addressed name and return the storage name.

    Content addressing makes a retried or raced write harmless: the same bytes land at the same
    name, and an existing file is kept rather than duplicated.
    """
    name = f"{prefix}/{digest}.fedt"
    if default_storage.exists(name):
        return name
    return default_storage.save(name, ContentFile(data))


def load(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def initial_arrays(arch: str, dataset: str, seed: int) -> dict[str, np.ndarray]:
    info = DATASETS[dataset]
    model = build_model(
        arch,
        in_channels=info.in_channels,
        num_classes=info.num_classes,
        image_size=info.image_size,
        seed=seed,
    )
    return state_to_arrays(model)


@functools.lru_cache(maxsize=16)
def manifest_for(arch: str, dataset: str) -> codec.Manifest:
    """Names, dtypes and shapes every upload for this model must match exactly."""
    return codec.manifest_of(initial_arrays(arch, dataset, seed=0))


@functools.lru_cache(maxsize=8)
def decoded_version(name: str, digest: str) -> dict[str, np.ndarray]:
    """Decoded global model, cached per process: every round decodes its base once, not per update."""
    arrays = codec.decode(load(name), kind="full").arrays
    for array in arrays.values():
        array.setflags(write=False)  # shared through the cache: nobody may modify it in place
    return arrays
