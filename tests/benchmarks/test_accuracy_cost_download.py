"""The accuracy benchmark's model of a device's download: deltas onto its copy, full after max_lossy."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from accuracy_cost import Download  # noqa: E402

from fedcore import codec  # noqa: E402
from fedcore.state import subtract  # noqa: E402


def _versions(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    first = {"w": rng.standard_normal((8, 16)).astype(np.float32), "steps": np.array([0], np.int64)}
    versions = [first]
    for _ in range(1, count):
        prev = versions[-1]
        versions.append({"w": prev["w"] + 0.01 * rng.standard_normal((8, 16)).astype(np.float32),
                         "steps": prev["steps"] + 1})
    return versions


def _rounds(download: Download, versions, encoding: str) -> list[tuple[dict, int]]:
    out = []
    for n, version in enumerate(versions):
        full = codec.encode(version, encoding="float32", kind="full")
        delta = None if n == 0 else codec.encode(subtract(version, versions[n - 1]), encoding=encoding,
                                                 kind="delta", base_version=n - 1)
        out.append((download.fetch(full, delta), len(full), None if delta is None else len(delta)))
    return out


def test_lossy_deltas_are_applied_to_the_copy_until_the_limit_then_the_full_model_resets_it():
    versions = _versions(6)
    rounds = _rounds(Download(max_lossy=2), versions, "int8")
    sent = [got[1] for got, _, _ in rounds]
    full_sizes = [full for _, full, _ in rounds]
    delta_sizes = [delta for _, _, delta in rounds]
    # full, delta, delta, full (limit reached), delta, delta
    assert sent == [full_sizes[0], delta_sizes[1], delta_sizes[2], full_sizes[3], delta_sizes[4], delta_sizes[5]]
    assert np.array_equal(rounds[3][0][0]["w"], versions[3]["w"])
    drift = np.abs(rounds[2][0][0]["w"] - versions[2]["w"]).max()
    assert 0 < drift < 1e-3  # int8 deltas leave a small error in the copy
    assert np.array_equal(rounds[2][0][0]["steps"], versions[2]["steps"])  # integer buffers exact


def test_bfloat16_deltas_are_far_smaller_than_the_full_model():
    rounds = _rounds(Download(max_lossy=8), _versions(3), "bfloat16")
    assert rounds[1][0][1] < rounds[1][1] * 0.7
