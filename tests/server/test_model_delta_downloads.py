"""GET runs/{id}/model/?version=N&base=M: the delta from the version a device holds."""
import json

import numpy as np
import pytest
from rest_framework.test import APIClient

from clients.models import Client
from fedcore import codec
from fedcore.state import add
from rounds import blobs, downloads
from rounds.models import ModelVersion, Run
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


@pytest.fixture
def one_round_done(run):
    """Version 1 made by FedAvg from two uploads; returns a device that accepts everything."""
    downloads.clear_cache()
    alpha = AcceptingDevice(run.pk, "alpha", list(codec.ENCODINGS))
    beta = AcceptingDevice(run.pk, "beta", ["float32"])
    for dev, shift in ((alpha, 0.01), (beta, -0.003)):
        task = dev.task().json()
        assert dev.upload(task, delta_body(run, task, shift)[0]).status_code == 201
    assert run.versions.filter(number=1).exists()
    return alpha, beta


def set_download_encoding(run, encoding: str) -> None:
    Run.objects.filter(pk=run.pk).update(download_encoding=encoding)


def test_a_device_holding_the_previous_version_gets_a_float32_delta_that_rebuilds_it_bit_for_bit(run, one_round_done):
    alpha, _ = one_round_done
    response = alpha.model(run, 1, base=0)
    assert response.status_code == 200 and response["X-Base-Version"] == "0" and response["ETag"] == '"1"'
    decoded = codec.decode(response.content, kind="delta")
    assert decoded.base_version == 0 and decoded.encodings <= {"float32", "raw"}
    rebuilt, server = add(base_arrays(run, 0), decoded.arrays), base_arrays(run, 1)
    for name, value in server.items():
        assert rebuilt[name].dtype == value.dtype and rebuilt[name].tobytes() == value.tobytes()


def test_without_a_base_the_full_lossless_model_is_sent(run, one_round_done):
    alpha, _ = one_round_done
    response = alpha.model(run, 1)
    assert "X-Base-Version" not in response
    assert codec.decode(response.content, kind="full").encodings <= {"float32", "raw"}


@pytest.mark.parametrize("base", [7, 1], ids=["unknown", "not-older"])
def test_a_base_the_server_cannot_start_from_gets_the_full_model(run, one_round_done, base):
    alpha, _ = one_round_done
    assert codec.peek_header(alpha.model(run, 1, base=base).content)["kind"] == "full"


def test_an_int8_delta_goes_to_devices_that_accept_it_and_the_full_model_to_the_others(run, one_round_done):
    alpha, beta = one_round_done
    set_download_encoding(run, "int8")
    delta = codec.decode(alpha.model(run, 1, base=0).content, kind="delta")
    assert "int8" in delta.encodings and delta.encodings <= {"int8", "raw"}
    rebuilt = add(base_arrays(run, 0), delta.arrays)
    for name, value in base_arrays(run, 1).items():
        np.testing.assert_allclose(rebuilt[name], value, atol=1e-3)
    assert codec.peek_header(beta.model(run, 1, base=0).content)["kind"] == "full"


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


def test_a_delta_is_encoded_once_and_then_served_from_the_cache(run, one_round_done):
    version = run.versions.get(number=1)
    first = downloads.model_body(version=version, base=0, accepts=None).data
    assert downloads.model_body(version=version, base=0, accepts=None).data is first


def test_a_float32_delta_that_would_not_rebuild_exactly_falls_back_to_the_full_model(db):
    downloads.clear_cache()
    run = run_create(name="unreachable", rounds=1)
    v0 = base_arrays(run, 0)
    v1 = {k: np.array(a) for k, a in v0.items()}
    weights = next(k for k, a in v1.items() if a.dtype == np.float32 and np.abs(a).max() > 1e-2)
    flat = v1[weights].reshape(-1)
    flat[np.argmax(np.abs(flat))] = 1e-12  # big - tiny rounds to -big: v0 + delta gives 0, not 1e-12
    data = codec.encode(v1, encoding="float32", kind="full")
    digest = blobs.sha256(data)
    version = ModelVersion.objects.create(
        run=run, number=1, blob=blobs.store(f"runs/{run.pk}/versions", data, digest), sha256=digest,
        size_bytes=len(data), float32_bytes=codec.float32_size(codec.manifest_of(v1)),
    )
    assert downloads.model_body(version=version, base=0, accepts=None).base_version is None


def test_a_runs_download_encoding_refuses_quantizers_that_would_make_devices_drift(staff_api, run):
    bad = staff_api.patch(f"/api/v1/runs/{run.pk}/", {"download_encoding": "topk10-int8"}, format="json")
    good = staff_api.patch(f"/api/v1/runs/{run.pk}/", {"download_encoding": "int8"}, format="json")
    assert bad.status_code == 400 and good.status_code == 200


def test_runs_created_through_the_api_upload_int4_by_default(staff_api):
    response = staff_api.post("/api/v1/runs/", {"name": "defaults"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["upload_encoding"] == "int4"


def test_an_int4_upload_is_accepted_and_averaged_like_any_other(run):
    downloads.clear_cache()
    alpha = AcceptingDevice(run.pk, "alpha", list(codec.ENCODINGS))
    beta = AcceptingDevice(run.pk, "beta", list(codec.ENCODINGS))
    for dev in (alpha, beta):
        task = dev.task().json()
        body, _ = delta_body(run, task, 0.01, encoding="int4")
        assert dev.upload(task, body).status_code == 201
    new, old = base_arrays(run, 1), base_arrays(run, 0)
    name = next(k for k, a in old.items() if a.ndim >= 2)
    np.testing.assert_allclose(new[name] - old[name], 0.01, atol=1e-5)
