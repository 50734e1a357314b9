import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from fedcore.data import DATASETS, DatasetNotFound, load_dataset, read_idx, to_tensors

CIFAR_NPZ = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10-subset.npz"


@pytest.fixture(autouse=True)
def no_data_dir_env(monkeypatch):
    monkeypatch.delenv("FEDPLATFORM_DATA_DIR", raising=False)


def idx_bytes(array: np.ndarray) -> bytes:
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + dims + array.tobytes()


def write_tiny_fashion(directory: Path, *, gz: bool, n: int = 5) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    images = np.arange(n * 28 * 28, dtype=np.uint8).reshape(n, 28, 28)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for prefix in ("train", "t10k"):
        for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            if gz:
                (directory / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(array)))
            else:
                (directory / stem).write_bytes(idx_bytes(array))


@pytest.mark.parametrize("train, count", [(True, 60_000), (False, 10_000)])
def test_real_fashion_mnist_loads_from_the_debian_directory(train, count):
    x, y = load_dataset("fashion-mnist", train=train)
    assert x.shape == (count, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (count,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))


def test_read_idx_reads_a_tiny_hand_made_file(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(array))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx.gz"), array)


def test_read_idx_rejects_a_body_shorter_than_its_dimensions(tmp_path):
    (tmp_path / "short.idx").write_bytes(idx_bytes(np.zeros((2, 3), np.uint8))[:-1])
    with pytest.raises(ValueError, match="short.idx"):
        read_idx(tmp_path / "short.idx")


def test_read_idx_rejects_bad_magic(tmp_path):
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01" + b"\0" * 8)
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad.idx")


@pytest.mark.parametrize("gz, subdir", [(True, ""), (False, ""), (False, "FashionMNIST/raw")])
def test_fashion_mnist_loads_from_an_explicit_root(tmp_path, gz, subdir):
    write_tiny_fashion(tmp_path / subdir, gz=gz)
    x, y = load_dataset("fashion-mnist", root=tmp_path, train=False)
    assert x.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 4])


def test_fashion_mnist_uses_the_data_dir_environment_variable(tmp_path, monkeypatch):
    write_tiny_fashion(tmp_path, gz=True, n=3)
    monkeypatch.setenv("FEDPLATFORM_DATA_DIR", str(tmp_path))
    x, _ = load_dataset("fashion-mnist")
    assert len(x) == 3


def test_missing_fashion_mnist_explains_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFound) as info:
        load_dataset("fashion-mnist", root=tmp_path)
    assert "dataset-fashion-mnist" in str(info.value)
    assert str(tmp_path) in str(info.value)


@pytest.mark.skipif(not CIFAR_NPZ.is_file(), reason="shared CIFAR-10 subset not present")
@pytest.mark.parametrize("train, count", [(True, 10_000), (False, 2_000)])
def test_the_cifar10_npz_subset_loads(train, count):
    x, y = load_dataset("cifar10", root=CIFAR_NPZ, train=train)
    assert x.shape == (count, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (count,) and y.dtype == np.int64 and set(np.unique(y)) == set(range(10))


def test_cifar10_finds_an_npz_inside_a_directory(tmp_path):
    np.savez(tmp_path / "cifar10.npz", x_train=np.zeros((4, 32, 32, 3), np.uint8), y_train=np.arange(4),
             x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.arange(2))
    x, y = load_dataset("cifar10", root=tmp_path, train=False)
    assert x.shape == (2, 32, 32, 3) and list(y) == [0, 1]


def test_cifar10_npz_with_wrong_image_dtype_is_rejected(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((4, 32, 32, 3), np.float32), y_train=np.arange(4),
             x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.arange(2))
    with pytest.raises(ValueError, match="uint8"):
        load_dataset("cifar10", root=tmp_path / "bad.npz")


def test_missing_cifar10_explains_the_expected_npz_keys(tmp_path):
    with pytest.raises(DatasetNotFound, match="x_train"):
        load_dataset("cifar10", root=tmp_path)


def test_unknown_dataset_names_are_rejected():
    with pytest.raises(ValueError, match="mnist-digits"):
        load_dataset("mnist-digits")


def test_to_tensors_returns_normalised_float32_nchw():
    info = DATASETS["cifar10"]
    x = np.full((2, 32, 32, 3), 255, np.uint8)
    images, labels = to_tensors(x, np.array([3, 4]), info)
    assert images.shape == (2, 3, 32, 32) and str(images.dtype) == "torch.float32"
    expected = [(1 - m) / s for m, s in zip(info.mean, info.std)]
    assert images[0, :, 0, 0].tolist() == pytest.approx(expected, rel=1e-5)
    assert labels.tolist() == [3, 4] and str(labels.dtype) == "torch.int64"


def test_to_tensors_rejects_a_channel_count_that_does_not_match_the_dataset():
    with pytest.raises(ValueError):
        to_tensors(np.zeros((1, 28, 28, 3), np.uint8), np.array([0]), DATASETS["fashion-mnist"])
