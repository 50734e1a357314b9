"""The device protocol over HTTP: registration, auth, tasks, model download, uploads."""
import json

import numpy as np
import pytest
import zstandard

from clients.models import Client, ClientStatus, hash_token
from fedcore import codec
from rounds.lifecycle import run_configure
from rounds.models import Round, RoundStatus, Update

from protocol_helpers import base_arrays, delta_body

pytestmark = pytest.mark.django_db


def test_registration_returns_a_token_once_and_stores_only_its_hash(device):
    dev = device("alpha", poll=False)
    client = Client.objects.get(pk=dev.id)
    assert client.status == ClientStatus.JOIN
    assert client.token_hash == hash_token(dev.token)
    assert dev.token not in client.token_hash
    assert "token" not in dev.api.get(f"/api/v1/clients/{dev.id}/").json()


def test_registration_without_an_active_run_is_a_conflict(db):
    response = pytest.importorskip("rest_framework.test").APIClient().post(
        "/api/v1/clients/", {"name": "x", "num_examples": 5}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "no_active_run"


def test_registration_rejects_a_negative_example_count(run):
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/clients/", {"name": "x", "run": run.pk, "num_examples": -1}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_task_polling_without_a_token_is_unauthorised(device):
    dev = device("alpha")
    dev.api.credentials()
    assert dev.task().status_code == 401


def test_task_polling_with_a_wrong_token_is_unauthorised(device):
    dev = device("alpha")
    dev.api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert dev.task().status_code == 401


def test_a_client_cannot_poll_another_clients_tasks(device):
    alpha, beta = device("alpha"), device("beta")
    response = alpha.api.get(f"/api/v1/clients/{beta.id}/task/")
    assert response.status_code == 403
    assert response.json()["code"] == "not_your_resource"


def test_a_client_cannot_use_operator_endpoints(device, run):
    dev = device("alpha")
    assert dev.api.get("/api/v1/runs/").status_code == 403
    assert dev.api.post(f"/api/v1/runs/{run.pk}/stop/").status_code == 403


def test_a_lone_client_waits_with_retry_after_until_enough_clients_are_ready(device):
    dev = device("alpha")
    response = dev.task()
    assert response.status_code == 204
    assert float(response["Retry-After"]) > 0
    assert Client.objects.get(pk=dev.id).status == ClientStatus.READY


def test_a_round_opens_when_min_clients_are_ready_and_tasks_carry_the_run_config(device, run):
    alpha, beta = device("alpha"), device("beta")
    task = alpha.task().json()
    assert task["round_number"] == 1
    assert task["base_version"] == 0
    assert task["hyperparameters"]["learning_rate"] == run.learning_rate
    assert task["upload_url"] == f"/api/v1/rounds/{task['round']}/updates/{alpha.id}/"
    assert beta.task().json()["round"] == task["round"]
    assert Client.objects.get(pk=alpha.id).status == ClientStatus.TRAINING


def test_model_download_carries_its_version_as_etag_and_honours_if_none_match(device, run):
    alpha, _ = device("alpha"), device("beta")
    task = alpha.task().json()
    response = alpha.api.get(task["model_url"])
    assert response.status_code == 200
    assert response["ETag"] == '"0"'
    assert response["Content-Type"] == codec.CONTENT_TYPE
    decoded = codec.decode(response.content)
    assert list(decoded.arrays) == list(base_arrays(run))
    assert alpha.api.get(task["model_url"], HTTP_IF_NONE_MATCH='"0"').status_code == 304


def test_model_download_renders_json_when_asked(device, run):
    alpha = device("alpha")
    response = alpha.api.get(f"/api/v1/runs/{run.pk}/model/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "full"
    first = body["tensors"][0]
    assert np.allclose(np.array(first["values"], dtype=np.float32), base_arrays(run)[first["name"]])


def test_the_same_update_sent_three_times_is_acknowledged_and_counted_once(device, run):
    alpha, _beta = device("alpha"), device("beta")
    task = alpha.task().json()
    body, _ = delta_body(run, task, 0.01)
    first = alpha.upload(task, body)
    assert first.status_code == 201, first.content
    for _ in range(2):
        again = alpha.upload(task, body)
        assert again.status_code == 200
        assert again.json()["duplicate"] is True
    assert Update.objects.filter(round_id=task["round"], client_id=alpha.id).count() == 1
    assert Client.objects.get(pk=alpha.id).bytes_sent == len(body)


def test_a_different_second_update_for_the_same_round_is_a_conflict(device, run):
    alpha, _ = device("alpha"), device("beta")
    task = alpha.task().json()
    assert alpha.upload(task, delta_body(run, task, 0.01)[0]).status_code == 201
    response = alpha.upload(task, delta_body(run, task, 0.02)[0])
    assert response.status_code == 409
    assert response.json()["code"] == "update_conflict"


def test_a_client_cannot_upload_as_another_client(device, run):
    alpha, beta = device("alpha"), device("beta")
    task = beta.task().json()
    response = alpha.upload(task, delta_body(run, task, 0.01)[0])
    assert response.status_code == 403


def test_an_update_with_the_wrong_tensor_layout_is_rejected_and_not_stored(device, run):
    alpha, _ = device("alpha"), device("beta")
    task = alpha.task().json()
    body = codec.encode({"fc.weight": np.zeros((2, 2), np.float32)}, kind="delta", base_version=0)
    response = alpha.upload(task, body)
    assert response.status_code == 400
    assert response.json()["code"] == "manifest_mismatch"
    assert not Update.objects.exists()


def _forged_blob_with_nan(run) -> bytes:
    """A blob built by hand (the encoder refuses NaN) to check that the server does too."""
    base = base_arrays(run)
    tensors, payload = [], b""
    for name, array in base.items():
        raw = np.zeros_like(array)
        if array.dtype == np.float32:
            raw.flat[0] = np.nan
        tensors.append({"name": name, "dtype": str(array.dtype), "shape": list(array.shape),
                        "encoding": "float32" if array.dtype == np.float32 else "raw", "shuffle": False,
                        "nbytes": raw.nbytes})
        payload += raw.tobytes()
    header = json.dumps({"kind": "delta", "base_version": 0, "meta": {}, "tensors": tensors}).encode()
    compressed = zstandard.ZstdCompressor().compress(payload)
    return b"FEDT" + bytes([1]) + len(header).to_bytes(4, "little") + header + compressed


def test_an_update_with_nan_values_is_rejected(device, run):
    run_configure(run=run, changes={"upload_encoding": "float32"}, author="test")  # the forged blob's
    alpha, _ = device("alpha"), device("beta")
    task = alpha.task().json()
    response = alpha.upload(task, _forged_blob_with_nan(run))
    assert response.status_code == 400
    assert response.json()["code"] == "non_finite"
    assert not Update.objects.exists()


def test_garbage_bytes_get_a_clear_error(device, run):
    alpha, _ = device("alpha"), device("beta")
    task = alpha.task().json()
    response = alpha.upload(task, b"\x80\x04\x95 pickled? no thanks")
    assert response.status_code == 400
    assert response.json()["code"] == "bad_magic"


def test_an_update_against_the_wrong_base_version_is_rejected(device, run):
    alpha, _ = device("alpha"), device("beta")
    task = alpha.task().json()
    body, _ = delta_body(run, task, 0.01)
    forged = codec.encode(codec.decode(body).arrays, encoding=task["upload_encoding"], kind="delta", base_version=7)
    response = alpha.upload(task, forged)
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_base"


def test_bad_example_counts_and_metrics_are_rejected(device, run):
    alpha, _ = device("alpha"), device("beta")
    task = alpha.task().json()
    body, _ = delta_body(run, task, 0.01)
    assert alpha.upload(task, body, num_examples=0).json()["code"] == "bad_num_examples"
    assert alpha.upload(task, body, metrics='{"loss": "NaN"}').json()["code"] == "bad_metrics"
    assert alpha.upload(task, body, metrics="[1, 2]").json()["code"] == "bad_metrics"


def test_an_oversized_upload_is_refused_with_413(device, run, settings):
    alpha, _ = device("alpha"), device("beta")
    task = alpha.task().json()
    settings.FEDPLATFORM = {**settings.FEDPLATFORM, "MAX_UPLOAD_BYTES": 1000}
    response = alpha.upload(task, delta_body(run, task, 0.01)[0])
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_the_round_closes_with_the_example_weighted_mean_of_the_deltas(device, run):
    alpha, beta = device("alpha", 100), device("beta", 300)
    task_a, task_b = alpha.task().json(), beta.task().json()
    body_a, delta_a = delta_body(run, task_a, 0.01)
    body_b, delta_b = delta_body(run, task_b, -0.03)
    metrics = json.dumps({"train_loss": 1.0, "eval_accuracy": 0.5, "eval_examples": 10})
    assert alpha.upload(task_a, body_a, num_examples=100, metrics=metrics).status_code == 201
    assert beta.upload(task_b, body_b, num_examples=300).status_code == 201

    rnd = Round.objects.get(pk=task_a["round"])
    assert rnd.status == RoundStatus.CLOSED
    assert rnd.result_version.number == 1
    new = base_arrays(run, 1)
    base = base_arrays(run, 0)
    name = next(k for k, a in base.items() if a.dtype == np.float32)
    expected = base[name] + (100 * delta_a[name] + 300 * delta_b[name]) / 400
    np.testing.assert_allclose(new[name], expected, rtol=0, atol=1e-6)
    assert rnd.metrics["participants"] == 2
    assert rnd.metrics["bytes_up"] == len(body_a) + len(body_b)
    assert 0.0 <= rnd.metrics["test_accuracy"] <= 1.0
    assert rnd.metrics["federated_base_accuracy"] == 0.5


def test_a_failing_server_evaluation_is_recorded_and_does_not_hold_back_the_round(device, run, monkeypatch):
    def broken(run, arrays):
        raise MemoryError("no room for the test split")

    monkeypatch.setattr("rounds.evaluation.evaluate_arrays", broken)
    alpha, beta = device("alpha"), device("beta")
    task_a, task_b = alpha.task().json(), beta.task().json()
    assert alpha.upload(task_a, delta_body(run, task_a, 0.01)[0]).status_code == 201
    assert beta.upload(task_b, delta_body(run, task_b, 0.01)[0]).status_code == 201

    closed = Round.objects.get(pk=task_a["round"])
    assert closed.status == RoundStatus.CLOSED and closed.result_version.number == 1
    assert closed.metrics["test_accuracy"] is None
    assert closed.metrics["evaluation_error"] == "MemoryError: no room for the test split"
    alpha.task()
    next_task = beta.task().json()  # and the run goes on from the new version
    assert (next_task["round_number"], next_task["base_version"]) == (2, 1)


@pytest.mark.parametrize("encoding", ["int4", "topk10-ternary"])
def test_quantized_updates_are_averaged_as_the_server_decodes_them(device, run, encoding):
    run_configure(run=run, changes={"upload_encoding": encoding}, author="test")
    alpha, beta = device("alpha", 100), device("beta", 300)
    task_a, task_b = alpha.task().json(), beta.task().json()
    body_a, _ = delta_body(run, task_a, 0.01, encoding=encoding)
    body_b, _ = delta_body(run, task_b, -0.03, encoding=encoding)
    assert alpha.upload(task_a, body_a, num_examples=100).status_code == 201
    assert beta.upload(task_b, body_b, num_examples=300).status_code == 201

    sent_a, sent_b = codec.decode(body_a).arrays, codec.decode(body_b).arrays
    new, base = base_arrays(run, 1), base_arrays(run, 0)
    for name, a in base.items():
        if a.dtype == np.float32:
            expected = a + (100 * sent_a[name] + 300 * sent_b[name]) / 400
            np.testing.assert_allclose(new[name], expected, rtol=0, atol=1e-6)


def test_a_late_update_for_a_closed_round_gets_409_and_is_not_used(device, run):
    alpha, beta = device("alpha"), device("beta")
    task_a, task_b = alpha.task().json(), beta.task().json()
    alpha.upload(task_a, delta_body(run, task_a, 0.01)[0])
    Round.objects.filter(pk=task_b["round"]).update(status=RoundStatus.ABANDONED)
    response = beta.upload(task_b, delta_body(run, task_b, 0.01)[0])
    assert response.status_code == 409
    assert response.json()["code"] == "round_closed"
    assert not Update.objects.filter(client_id=beta.id).exists()


def test_a_kicked_clients_upload_is_refused_with_403_and_not_stored(device, run, staff_api):
    alpha, _beta = device("alpha"), device("beta")
    task = alpha.task().json()
    assert staff_api.delete(f"/api/v1/clients/{alpha.id}/").status_code == 204
    assert Client.objects.get(pk=alpha.id).status == ClientStatus.KICKED
    response = alpha.upload(task, delta_body(run, task, 0.01)[0])
    assert response.status_code == 403
    assert response.json()["code"] == "kicked"
    assert not Update.objects.filter(client_id=alpha.id).exists()


def test_a_client_that_leaves_loses_its_token(device):
    alpha = device("alpha")
    assert alpha.api.delete(f"/api/v1/clients/{alpha.id}/").status_code == 204
    assert Client.objects.get(pk=alpha.id).status == ClientStatus.LEFT
    assert alpha.task().status_code == 401


def test_the_round_closes_without_a_client_that_left_mid_round(device, run):
    alpha, beta = device("alpha"), device("beta")
    task = alpha.task().json()
    beta.task()
    beta.api.delete(f"/api/v1/clients/{beta.id}/")
    assert alpha.upload(task, delta_body(run, task, 0.01)[0]).status_code == 201
    assert Round.objects.get(pk=task["round"]).status == RoundStatus.CLOSED


def test_heartbeat_says_continue_while_wanted_and_abort_after_the_round_is_gone(device, run):
    alpha, _ = device("alpha"), device("beta")
    task = alpha.task().json()
    url = f"/api/v1/clients/{alpha.id}/heartbeat/"
    reply = alpha.api.post(url, {"progress": 0.5, "round": task["round"]}, format="json").json()
    assert reply == {"action": "continue", "status": "training"}
    assert Client.objects.get(pk=alpha.id).progress == 0.5
    Round.objects.filter(pk=task["round"]).update(status=RoundStatus.ABANDONED)
    assert alpha.api.post(url, {"round": task["round"]}, format="json").json()["action"] == "abort"


def test_a_heartbeat_naming_a_round_id_past_64_bits_is_a_400_not_a_database_overflow(device):
    alpha = device("alpha")
    url = f"/api/v1/clients/{alpha.id}/heartbeat/"
    response = alpha.api.post(url, {"round": 111664604258500591616}, format="json")
    assert response.status_code == 400 and "round" in response.json()["errors"]
    assert alpha.api.post(url, {"round": 10**18 - 1}, format="json").json()["action"] == "abort"


def test_a_finished_run_tells_its_clients_it_is_over(device, run, staff_api):
    alpha = device("alpha")
    staff_api.post(f"/api/v1/runs/{run.pk}/stop/")
    response = alpha.task()
    assert response.status_code == 410
    assert response.json()["code"] == "run_stopped"


def test_registration_keeps_only_the_encodings_this_server_knows(run):
    from rest_framework.test import APIClient

    response = APIClient().post(
        "/api/v1/clients/",
        {"name": "newer", "run": run.pk, "num_examples": 5, "accepts": ["float32", "int2-future", "int8"]},
        format="json",
    )
    assert response.status_code == 201
    assert Client.objects.get(pk=response.json()["id"]).accepts == ["float32", "int8"]


@pytest.mark.parametrize("info", [{"gpu": "a\u0000b"}, {"nul\u0000key": 1}, {"list": ["ok", ["\u0000"]]},
                                    {"deep": [[[[[[[[["too deep"]]]]]]]]]}])
def test_device_info_with_a_nul_or_nested_past_eight_levels_is_refused(run, info):
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/clients/", {"name": "odd", "run": run.pk, "num_examples": 5, "device": info},
                                format="json")
    assert response.status_code == 400 and "device" in response.json()["errors"], response.content
    assert not Client.objects.filter(name="odd").exists()


def test_device_info_nested_as_deep_as_json_parses_is_a_400_not_a_stack_overflow(run):
    """900 levels parse (Python's recursion limit is 1000) but overflowed the stack when stored."""
    from rest_framework.test import APIClient

    body = '{"name": "deep", "run": %d, "num_examples": 5, "device": {"a": %s1%s}}' % (run.pk, "[" * 900, "]" * 900)
    response = APIClient().generic("POST", "/api/v1/clients/", body, content_type="application/json")
    assert response.status_code == 400 and "device" in response.json()["errors"], response.content
