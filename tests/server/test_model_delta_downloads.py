"""GET runs/{id}/model/?version=N&base=M: the broadcast delta (or chain) from the version a device
holds, or the replica's snapshot."""
import json

import numpy as np
import pytest
from rest_framework.test import APIClient

from clients.models import Client
from fedcore import codec
from fedcore.broadcast import CHAIN_CONTENT_TYPE, digest, same_bits, unpack_chain
from fedcore.state import add
from rounds import blobs, downloads
from rounds.broadcast import replica_arrays
from rounds.models import Broadcast, ModelVersion, Run
from rounds.lifecycle import run_create

from protocol_helpers import Device, base_arrays, delta_body

pytestmark = pytest.mark.django_db


class AcceptingDevice(Device):
    """A device that declares, like the worker does, which encodings it decodes."""

    def __init__(self, run_id: int, name: str, accepts: list[str]):
        self.api = APIClient()
        response = self.api.post("/api/v1/clients/", {"name": name, "run": run_id, "num_examples": 100,
                                                      "accepts": accepts}, format="json")
        assert response.status_code == 201, response.content
        self.id, self.token = response.json()["id"], response.json()["token"]
        self.api.credentials(HTTP_AUTHORIZATION=f"Token {self.token}")
        self.task()  # the first poll, as the worker makes: only then is it selectable

    def model(self, run, version: int, base: int | None = None, **extra):
        query = f"?version={version}" + ("" if base is None else f"&base={base}")
        return self.api.get(f"/api/v1/runs/{run.pk}/model/{query}", **extra)


def rounds_done(run, encoding: str, count: int = 1):
    """``count`` versions made by FedAvg from two uploads each, broadcast in ``encoding``;
    returns a device that accepts everything and one that declared float32 only."""
    Run.objects.filter(pk=run.pk).update(download_encoding=encoding)
    alpha = AcceptingDevice(run.pk, "alpha", list(codec.ENCODINGS))
    beta = AcceptingDevice(run.pk, "beta", ["float32"])
    for number in range(1, count + 1):
        answers = [alpha.task(), beta.task()]  # the second poll makes two ready: the round opens
        if answers[0].status_code == 204:
            answers[0] = alpha.task()
        for dev, answer, shift in ((alpha, answers[0], 0.01), (beta, answers[1], -0.003)):
            task = answer.json()
            assert dev.upload(task, delta_body(run, task, shift)[0]).status_code == 201
        assert run.versions.filter(number=number).exists()
    return alpha, beta


@pytest.fixture
def one_round_done(run):
    return rounds_done(run, "float32")


def replica(run, number: int) -> dict:
    return replica_arrays(Broadcast.objects.get(version__run=run, version__number=number))


def test_a_device_holding_the_previous_version_gets_a_float32_delta_that_rebuilds_it_bit_for_bit(run, one_round_done):
    alpha, _ = one_round_done
    response = alpha.model(run, 1, base=0)
    assert response.status_code == 200 and response["X-Base-Version"] == "0" and response["ETag"] == '"1"'
    decoded = codec.decode(response.content, kind="delta")
    assert decoded.base_version == 0 and decoded.encodings <= {"float32", "raw"}
    rebuilt, server = add(base_arrays(run, 0), decoded.arrays), base_arrays(run, 1)
    assert same_bits(rebuilt, server) and response["X-Model-Digest"] == digest(server)


def test_without_a_base_the_full_lossless_model_is_sent(run, one_round_done):
    alpha, _ = one_round_done
    response = alpha.model(run, 1)
    assert "X-Base-Version" not in response
    decoded = codec.decode(response.content, kind="full")
    assert decoded.encodings <= {"float32", "raw"} and same_bits(decoded.arrays, base_arrays(run, 1))


@pytest.mark.parametrize("base", [7, 1], ids=["unknown", "not-older"])
def test_a_base_the_server_cannot_start_from_gets_the_full_model(run, one_round_done, base):
    alpha, _ = one_round_done
    assert codec.peek_header(alpha.model(run, 1, base=base).content)["kind"] == "full"


@pytest.mark.parametrize("encoding", ["int8", "int4"])
def test_a_quantized_broadcast_goes_to_devices_that_accept_it_and_the_replica_snapshot_to_the_others(run, encoding):
    alpha, beta = rounds_done(run, encoding)
    response = alpha.model(run, 1, base=0)
    delta = codec.decode(response.content, kind="delta")
    assert encoding in delta.encodings and delta.encodings <= {encoding, "int8", "float32", "raw"}
    rebuilt = add(base_arrays(run, 0), delta.arrays)  # version 0's replica is the exact initial model
    assert same_bits(rebuilt, replica(run, 1)) and response["X-Model-Digest"] == digest(rebuilt)
    for name, value in base_arrays(run, 1).items():
        np.testing.assert_allclose(rebuilt[name], value, atol=2e-3)
    snapshot = beta.model(run, 1, base=0)
    assert codec.peek_header(snapshot.content)["kind"] == "full"
    assert same_bits(codec.decode(snapshot.content).arrays, replica(run, 1))


def test_operators_download_the_exact_global_model_not_the_replica(run, staff_api):
    rounds_done(run, "int4")
    exact = codec.decode(staff_api.get(f"/api/v1/runs/{run.pk}/model/?version=1").content).arrays
    assert same_bits(exact, base_arrays(run, 1)) and not same_bits(exact, replica(run, 1))


def test_a_chain_goes_only_to_a_device_that_accepts_one(run):
    alpha, _ = rounds_done(run, "int4", count=2)
    chained = alpha.model(run, 2, base=0, HTTP_ACCEPT=f"{CHAIN_CONTENT_TYPE}, {codec.CONTENT_TYPE}")
    assert chained["Content-Type"] == CHAIN_CONTENT_TYPE and chained["X-Base-Version"] == "0"
    held = base_arrays(run, 0)
    for blob in unpack_chain(chained.content, max_bytes=1 << 30):
        held = add(held, codec.decode(blob, kind="delta").arrays)
    assert same_bits(held, replica(run, 2))
    older = alpha.model(run, 2, base=0)  # a worker from before chains: one blob, the snapshot
    assert older["Content-Type"] == codec.CONTENT_TYPE and codec.peek_header(older.content)["kind"] == "full"


def test_a_delta_download_renders_as_json_when_asked(run, one_round_done):
    alpha, _ = one_round_done
    body = alpha.model(run, 1, base=0, HTTP_ACCEPT="application/json").json()
    assert body["kind"] == "delta" and body["base_version"] == 0
    first = body["tensors"][0]
    expected = base_arrays(run, 1)[first["name"]] - base_arrays(run, 0)[first["name"]]
    np.testing.assert_array_equal(np.array(first["values"], np.float32), expected)


@pytest.mark.parametrize("base", ["-1", "x", "²"])
def test_a_malformed_base_is_a_bad_request(run, one_round_done, base):
    alpha, _ = one_round_done
    response = alpha.api.get(f"/api/v1/runs/{run.pk}/model/?version=1&base={base}")
    assert response.status_code == 400 and json.loads(response.content)["code"] == "bad_base"


def test_the_bytes_of_a_delta_are_what_the_client_is_counted_for(run, one_round_done):
    alpha, _ = one_round_done
    before = Client.objects.get(pk=alpha.id).bytes_received
    size = len(alpha.model(run, 1, base=0).content)
    assert Client.objects.get(pk=alpha.id).bytes_received - before == size


def test_each_version_is_broadcast_once_and_devices_are_sent_the_stored_blob(run):
    alpha, _ = rounds_done(run, "int4")
    stored = Broadcast.objects.get(version__run=run, version__number=1)
    assert alpha.model(run, 1, base=0).content == blobs.load(stored.delta_blob.name)
    assert Broadcast.objects.filter(version__run=run).count() == run.versions.count() == 2


def test_a_version_whose_broadcast_was_lost_gets_the_same_one_on_its_first_download(run):
    alpha, _ = rounds_done(run, "int4")
    first = Broadcast.objects.get(version__run=run, version__number=1)
    kept = (first.delta_sha256, first.replica_digest)
    first.delete()  # the engine died between storing the version and its broadcast
    response = alpha.model(run, 1, base=0)
    again = Broadcast.objects.get(version__run=run, version__number=1)
    assert (again.delta_sha256, again.replica_digest) == kept and response["X-Model-Digest"] == kept[1]


def test_a_float32_delta_that_would_not_rebuild_exactly_falls_back_to_the_full_model(db):
    run = run_create(name="unreachable", rounds=1, download_encoding="float32")
    v0 = base_arrays(run, 0)
    v1 = {k: np.array(a) for k, a in v0.items()}
    weights = next(k for k, a in v1.items() if a.dtype == np.float32 and np.abs(a).max() > 1e-2)
    flat = v1[weights].reshape(-1)
    flat[np.argmax(np.abs(flat))] = 1e-12  # big - tiny rounds to -big: v0 + delta gives 0, not 1e-12
    data = codec.encode(v1, encoding="float32", kind="full")
    digest_ = blobs.sha256(data)
    version = ModelVersion.objects.create(
        run=run, number=1, blob=blobs.store(f"runs/{run.pk}/versions", data, digest_), sha256=digest_,
        size_bytes=len(data), float32_bytes=codec.float32_size(codec.manifest_of(v1)),
    )
    assert downloads.model_body(version=version, base=0, accepts=["float32"]).base_version is None


def test_a_runs_download_encoding_refuses_sparse_quantizers(staff_api, run):
    bad = staff_api.patch(f"/api/v1/runs/{run.pk}/", {"download_encoding": "topk10-int8"}, format="json")
    good = staff_api.patch(f"/api/v1/runs/{run.pk}/", {"download_encoding": "int4"}, format="json")
    assert bad.status_code == 400 and good.status_code == 200


def test_runs_created_through_the_api_upload_int4_and_download_int4_broadcasts_by_default(staff_api):
    response = staff_api.post("/api/v1/runs/", {"name": "defaults"}, format="json")
    assert response.status_code == 201, response.content
    assert (response.json()["upload_encoding"], response.json()["download_encoding"]) == ("int4", "int4")


def test_an_int4_upload_is_accepted_and_averaged_like_any_other(run):
    alpha = AcceptingDevice(run.pk, "alpha", list(codec.ENCODINGS))
    beta = AcceptingDevice(run.pk, "beta", list(codec.ENCODINGS))
    for dev in (alpha, beta):
        task = dev.task().json()
        body, _ = delta_body(run, task, 0.01, encoding="int4")
        assert dev.upload(task, body).status_code == 201
    new, old = base_arrays(run, 1), base_arrays(run, 0)
    name = next(k for k, a in old.items() if a.ndim >= 2)
    np.testing.assert_allclose(new[name] - old[name], 0.01, atol=1e-5)


def test_a_round_records_the_bytes_the_server_sent_each_device_not_what_devices_report(run):
    Run.objects.filter(pk=run.pk).update(download_encoding="int4")
    alpha = AcceptingDevice(run.pk, "alpha", list(codec.ENCODINGS))
    beta = AcceptingDevice(run.pk, "beta", ["float32"])
    answers = [alpha.task(), beta.task()]
    if answers[0].status_code == 204:
        answers[0] = alpha.task()
    sent = {}
    for dev, answer, fetches in ((alpha, answers[0], 2), (beta, answers[1], 1)):  # alpha retried once
        task = answer.json()
        sent[str(dev.id)] = sum(len(dev.api.get(task["model_url"]).content) for _ in range(fetches))
        body = delta_body(run, task, 0.01)[0]
        assert dev.upload(task, body, metrics='{"download_bytes": 1}').status_code == 201
    metrics = run.round_set.get(number=1).metrics
    assert metrics["bytes_down_by_client"] == sent and metrics["bytes_down"] == sum(sent.values())
    assert metrics["bytes_up"] == sum(metrics["bytes_up_by_client"].values()) > 0


def test_a_rounds_version_is_committed_with_its_broadcast_so_no_download_computes_it(run, monkeypatch):
    from rounds import broadcast, engine
    from rounds.models import Round

    Run.objects.filter(pk=run.pk).update(download_encoding="int4")
    alpha, beta = Device(run.pk, "alpha"), Device(run.pk, "beta")
    task = alpha.task().json()
    assert alpha.upload(task, delta_body(run, task, 0.01)[0]).status_code == 201
    rnd = Round.objects.get(pk=task["round"])
    assert rnd.status == "open"  # beta's update is still expected
    # The close as an engine worker makes it; once it commits, any other tick may open the next
    # round and its devices download at once.
    version_id = engine._aggregate_and_commit(rnd.pk, engine._claim(rnd.pk))
    committed = Broadcast.objects.get(version_id=version_id)
    assert committed.encoding == "int4" and committed.delta_blob  # the int4 step from version 0's replica
    monkeypatch.setattr(broadcast, "prepare", lambda version: pytest.fail("a download computed the broadcast"))
    answer = beta.api.get(f"/api/v1/runs/{run.pk}/model/?version=1&base=0", HTTP_ACCEPT=codec.CONTENT_TYPE)
    assert answer.status_code == 200
    assert answer["X-Model-Digest"] == committed.replica_digest
    assert broadcast.check_chain(run) == []
