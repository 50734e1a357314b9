"""A device that missed rounds rebuilds the server's broadcast replica bit for bit, through the
real download endpoint and the worker's own model cache (over Django's test client)."""
from pathlib import Path

import numpy as np
import pytest
from rest_framework.test import APIClient

from fedcore import codec
from fedcore.broadcast import CHAIN_CONTENT_TYPE, same_bits
from rounds import blobs
from rounds.broadcast import broadcast_ensure, check_chain, replica_arrays
from rounds.engine import store_version
from rounds.lifecycle import run_create
from rounds.models import Broadcast
from worker.modelcache import ModelCache

pytestmark = pytest.mark.django_db
WIDE = "wide_task:task"


@pytest.fixture(autouse=True)
def wide_task_offered(settings, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "user_tasks"))
    settings.FEDPLATFORM = {**settings.FEDPLATFORM, "TASKS": [WIDE]}


class TestClientSession:
    """The worker's ``ApiSession.request`` over Django's test client: the same endpoint, no socket."""

    __test__ = False

    def __init__(self, api: APIClient) -> None:
        self.api, self.content_types = api, []

    def request(self, method: str, path: str, *, headers=None, **_):
        extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in (headers or {}).items()}
        response = self.api.generic(method, path, **extra)
        assert response.status_code < 400, response.content
        self.content_types.append(response.headers.get("Content-Type"))
        return response


class Server:
    """A run of a linear model 4096 wide whose global versions move like training's do, each
    broadcast as the engine does once a round's version is stored."""

    def __init__(self, encoding: str) -> None:
        self.run = run_create(name=f"catch-up {encoding}", task=WIDE, task_config={"width": 4096},
                              download_encoding=encoding, rounds=100)
        self.rng = np.random.default_rng(0)

    def versions(self, count: int) -> None:
        for _ in range(count):
            last = self.run.versions.order_by("-number").first()
            exact = blobs.decoded_version(last.blob.name, last.sha256)
            moved = {k: (a + self.rng.standard_normal(a.shape) * 1e-2).astype(np.float32) for k, a in exact.items()}
            version = store_version(run=self.run, number=last.number + 1, arrays=moved)
            version.save()
            broadcast_ensure(version=version)

    def replica(self, number: int) -> dict:
        return replica_arrays(Broadcast.objects.get(version__run=self.run, version__number=number))

    def exact(self, number: int) -> dict:
        v = self.run.versions.get(number=number)
        return blobs.decoded_version(v.blob.name, v.sha256)

    def device(self, name: str) -> tuple[ModelCache, TestClientSession]:
        api = APIClient()
        answer = api.post("/api/v1/clients/", {"name": name, "run": self.run.pk, "num_examples": 10,
                                               "accepts": list(codec.ENCODINGS)}, format="json")
        assert answer.status_code == 201, answer.content
        api.credentials(HTTP_AUTHORIZATION=f"Token {answer.json()['token']}")
        session = TestClientSession(api)
        return ModelCache(session), session

    def fetch(self, cache: ModelCache, number: int) -> dict:
        return cache.fetch(f"/api/v1/runs/{self.run.pk}/model/?version={number}", number)


@pytest.mark.parametrize("encoding, missed, travels_as", [
    ("int4", 1, "delta"), ("int4", 5, "chain"), ("int4", 50, "snapshot"),
    # int8 deltas are about a quarter of the snapshot: five of them are larger than it.
    ("int8", 1, "delta"), ("int8", 2, "chain"), ("int8", 5, "snapshot"), ("int8", 50, "snapshot"),
])
def test_a_device_that_missed_rounds_rebuilds_the_replica_bit_for_bit(encoding, missed, travels_as):
    server = Server(encoding)
    steady, _ = server.device("steady")
    behind, session = server.device("behind")
    server.fetch(steady, 0)
    server.fetch(behind, 0)
    for number in range(1, missed + 1):
        server.versions(1)
        assert same_bits(server.fetch(steady, number), server.replica(number))
    got = server.fetch(behind, missed)
    assert same_bits(got, server.replica(missed)) and same_bits(got, server.fetch(steady, missed))
    kind = {"delta": codec.CONTENT_TYPE, "chain": CHAIN_CONTENT_TYPE, "snapshot": codec.CONTENT_TYPE}
    assert session.content_types[-1] == kind[travels_as]
    assert behind.last_was_delta == (travels_as != "snapshot")
    # The replica is not the global model (it is what int4/int8 broadcasts rebuild) but close to it.
    exact = server.exact(missed)
    assert not same_bits(got, exact)
    np.testing.assert_allclose(got["weight"], exact["weight"], atol=0.01)
    assert check_chain(server.run) == []


def test_a_device_joining_late_gets_the_replica_snapshot_and_then_deltas():
    server = Server("int4")
    server.versions(12)
    late, session = server.device("late")
    assert same_bits(server.fetch(late, 12), server.replica(12))
    assert not late.last_was_delta
    server.versions(1)
    assert same_bits(server.fetch(late, 13), server.replica(13)) and late.last_was_delta


def test_a_float32_run_broadcasts_the_exact_global_model():
    server = Server("float32")
    device, _ = server.device("exact")
    server.fetch(device, 0)
    server.versions(3)
    for number in (1, 2, 3):
        assert same_bits(server.fetch(device, number), server.exact(number))
    assert all(b.exact for b in Broadcast.objects.filter(version__run=server.run))


def test_the_replica_error_stays_bounded_over_many_broadcasts():
    server = Server("int4")
    server.versions(40)
    errors = [float(np.abs(server.replica(n)["weight"] - server.exact(n)["weight"]).max()) for n in (10, 20, 40)]
    # Each version moves every weight by ~0.01 (sd); one int4 step of that is under 0.01: the
    # error does not grow with the number of broadcasts.
    assert max(errors) < 0.01


def test_a_copy_that_is_not_the_replica_is_replaced_by_the_snapshot_in_the_same_fetch():
    server = Server("int4")
    device, session = server.device("drifted")
    server.fetch(device, 0)
    device._arrays = {k: v + np.float32(1e-3) for k, v in device._arrays.items()}  # not the server's bits
    server.versions(1)
    got = server.fetch(device, 1)
    assert same_bits(got, server.replica(1))
    assert len(session.content_types) == 3  # version 0, the delta that did not match, the snapshot
