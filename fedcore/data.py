"""Image datasets, offline first.

Everything is returned as numpy: images uint8 (N, H, W, C), labels int64. Local files
are preferred; torchvision downloads only happen when explicitly asked for.

Search order when ``root`` is None: ``$FEDPLATFORM_DATA_DIR``, then (Fashion-MNIST only)
the Debian package directory. An explicit ``root`` is authoritative: if it holds no data
we raise instead of silently training on data from somewhere else.
"""

from __future__ import annotations

import gzip
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ENV_VAR = "FEDPLATFORM_DATA_DIR"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR_NPZ_NAMES = ("cifar10-subset.npz", "cifar10.npz")
_DOWNLOAD_DEFAULT = Path("~/.cache/fedplatform/data")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        in_channels=1,
        image_size=28,
        num_classes=10,
        mean=(0.2860,),
        std=(0.3530,),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        in_channels=3,
        image_size=32,
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        classes=("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"),
    ),
}


class DatasetNotFound(FileNotFoundError):
    """No usable local copy; the message lists where we looked and how to get the data."""


# ---------------------------------------------------------------- IDX files

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped if the name ends in .gz), validating magic and size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4].hex()})")
    ndim, dtype = raw[3], np.dtype(_IDX_TYPES[raw[2]])
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: IDX body has {len(raw) - offset} bytes, dims {dims} need {expected}")
    return np.frombuffer(raw, dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


# ---------------------------------------------------------------- Fashion-MNIST


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _fashion_from_dir(directory: Path, train: bool) -> tuple[np.ndarray, np.ndarray] | None:
    prefix = "train" if train else "t10k"
    for d in (directory, directory / "FashionMNIST" / "raw"):
        images = _find_idx(d, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx(d, f"{prefix}-labels-idx1-ubyte")
        if images and labels:
            x, y = read_idx(images), read_idx(labels)
            if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(x) != len(y):
                raise ValueError(f"{d}: Fashion-MNIST files have unexpected shapes {x.shape} / {y.shape}")
            if len(y) and (y.min() < 0 or y.max() > 9):
                raise ValueError(f"{labels}: labels outside 0-9")
            return x[..., None], y.astype(np.int64)
    return None


def _fashion_help(looked: list[Path]) -> str:
    where = ", ".join(str(p) for p in looked) or "(nowhere)"
    return (
        f"Fashion-MNIST not found; looked in: {where} (and FashionMNIST/raw/ below each). "
        "Get it with `apt-get install dataset-fashion-mnist` (installs the IDX files in "
        f"{DEBIAN_FASHION_DIR}/), or point root / ${ENV_VAR} at a directory holding "
        "train-images-idx3-ubyte[.gz] etc., or pass download=True (the worker's --download) "
        "to fetch it with torchvision."
    )


def _load_fashion(root: Path | None, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    env = os.environ.get(ENV_VAR)
    if root is not None:
        candidates = [root]
    else:
        candidates = ([Path(env)] if env else []) + [DEBIAN_FASHION_DIR]
    for directory in candidates:
        found = _fashion_from_dir(directory, train)
        if found is not None:
            return found
    if download:
        target = root or (Path(env) if env else _DOWNLOAD_DEFAULT.expanduser())
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(target), train=train, download=True)
        found = _fashion_from_dir(target, train)
        if found is not None:
            return found
        candidates.append(target)
    raise DatasetNotFound(_fashion_help(candidates))


# ---------------------------------------------------------------- CIFAR-10


def load_cifar_npz(path: str | os.PathLike, *, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR-10 style .npz (keys x_train, y_train, x_test, y_test) without pickle."""
    split = "train" if train else "test"
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {f"x_{split}", f"y_{split}"} - set(npz.files)
            if missing:
                raise ValueError(f"{path}: missing keys {sorted(missing)}")
            x, y = npz[f"x_{split}"], npz[f"y_{split}"]
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: unreadable npz ({exc})") from exc
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise ValueError(f"{path}: x_{split} must be uint8 (N, 32, 32, 3), got {x.dtype} {x.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
        raise ValueError(f"{path}: y_{split} must be integer ({len(x)},), got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{path}: labels outside 0-9")
    return np.ascontiguousarray(x), y.astype(np.int64)


def _cifar_from(location: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray] | None:
    if location.is_file():
        return load_cifar_npz(location, train=train)
    for name in CIFAR_NPZ_NAMES:
        if (location / name).is_file():
            return load_cifar_npz(location / name, train=train)
    if (location / "cifar-10-batches-py").is_dir() or download:
        # The user's own local torchvision copy (or an explicit download request).
        from torchvision.datasets import CIFAR10

        ds = CIFAR10(str(location), train=train, download=download)
        return np.ascontiguousarray(ds.data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64)
    return None


def _load_cifar(root: Path | None, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    env = os.environ.get(ENV_VAR)
    location = root or (Path(env) if env else None)
    if location is not None:
        found = _cifar_from(location, train, download=False)
        if found is not None:
            return found
    if download:
        target = location or _DOWNLOAD_DEFAULT.expanduser()
        found = _cifar_from(target, train, download=True)
        if found is not None:
            return found
    looked = str(location) if location is not None else f"nothing (no root given and ${ENV_VAR} unset)"
    raise DatasetNotFound(
        f"CIFAR-10 not found; looked in: {looked}. Provide an .npz with keys "
        "x_train, y_train, x_test, y_test (uint8 N x 32 x 32 x 3 images, int labels) like the "
        f"shipped cifar10-subset.npz, or a directory holding {' or '.join(CIFAR_NPZ_NAMES)} or a "
        f"torchvision root containing cifar-10-batches-py, via root or ${ENV_VAR}; or pass "
        "download=True (the worker's --download) to fetch it with torchvision."
    )


# ---------------------------------------------------------------- public entry points


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    train: bool = True,
    download: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N, H, W, C), labels int64) for the train or test split."""
    root_path = Path(root).expanduser() if root is not None else None
    if name == "fashion-mnist":
        return _load_fashion(root_path, train, download)
    if name == "cifar10":
        return _load_cifar(root_path, train, download)
    raise ValueError(f"unknown dataset {name!r}; choose from {tuple(DATASETS)}")


def to_tensors(x: np.ndarray, y: np.ndarray, info: DatasetInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 NHWC images -> normalised float32 NCHW tensor; labels -> int64 tensor."""
    if x.ndim == 3 and info.in_channels == 1:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != info.in_channels:
        raise ValueError(f"expected images (N, H, W, {info.in_channels}), got {x.shape}")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    images = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)
    images = ((images - mean) / std).contiguous()
    return images, torch.from_numpy(np.asarray(y, dtype=np.int64).copy())
