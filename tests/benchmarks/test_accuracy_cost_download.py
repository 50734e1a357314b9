"""The accuracy benchmark's model of downloads: the broadcast replica every device holds."""
import numpy as np
from accuracy_cost import Broadcast

from fedcore import codec
from fedcore.broadcast import step


def _versions(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    first = {"w": rng.standard_normal((64, 256)).astype(np.float32), "steps": np.array([0], np.int64)}
    versions = [first]
    for _ in range(1, count):
        prev = versions[-1]
        versions.append({"w": prev["w"] + 0.01 * rng.standard_normal((64, 256)).astype(np.float32),
                         "steps": prev["steps"] + 1})
    return versions


def test_devices_train_from_the_replica_the_server_would_broadcast():
    versions = _versions(5)
    downlink = Broadcast("int4")
    first, first_bytes = downlink.send(versions[0], base_version=0)
    assert np.array_equal(first["w"], versions[0]["w"])  # the first round: the exact model
    assert first_bytes == len(codec.encode(versions[0], encoding="float32", kind="full"))
    replica = versions[0]
    for n in range(1, 5):
        got, sent = downlink.send(versions[n], base_version=n - 1)
        expected = step(replica, versions[n], encoding="int4", base_version=n - 1)
        replica = expected.replica
        assert all(got[k].tobytes() == replica[k].tobytes() for k in replica) and sent == len(expected.delta)
        assert sent < first_bytes / 3
    assert np.abs(got["w"] - versions[4]["w"]).max() < 5e-3  # error feedback: no drift
    assert np.array_equal(got["steps"], versions[4]["steps"])  # integer buffers exact


def test_float32_downloads_are_the_full_model_every_round():
    versions = _versions(3)
    downlink = Broadcast("float32")
    sizes = [downlink.send(v, base_version=max(0, n - 1))[1] for n, v in enumerate(versions)]
    assert sizes == [len(codec.encode(v, encoding="float32", kind="full")) for v in versions]
