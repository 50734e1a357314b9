"""GET runs/{id}/model/?format=safetensors|onnx and manage.py export_model: a trained global version
out in standard files, rendered by the engine, loaded back in plain PyTorch and in onnxruntime."""
from datetime import timedelta

import numpy as np
import onnxruntime
import pytest
import safetensors.torch
import torch
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from fedcore import codec
from fedcore.export import FORMATS
from fedcore.state import load_arrays
from fedcore.tasks import seeded_model
from fedcore.tasks.vision import ImageClassification
from protocol_helpers import Device, delta_body
from rounds import exports, runtask
from rounds.lifecycle import run_control, run_create
from rounds.models import ExportFormat, ExportStatus, ModelExport
from rounds.tasks import model_export as export_task  # the real task, before any test replaces it

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_test_set_evaluation(monkeypatch):
    # Each version's server-side evaluation is a second of every test here and none of its subject.
    monkeypatch.setattr("rounds.evaluation.evaluate_arrays", lambda run, arrays: None)


@pytest.fixture
def trained(run, device):
    """Version 1 of the run's CNN, made by FedAvg from two devices' uploads; returns one of them."""
    alpha, beta = device("alpha"), device("beta")
    for dev, shift in ((alpha, 0.02), (beta, -0.01)):
        task = dev.task().json()
        assert dev.upload(task, delta_body(run, task, shift)[0]).status_code == 201
    assert run.versions.filter(number=1).exists()
    return alpha


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """Export tasks are recorded instead of run, so a test can run the engine's task itself."""
    ids: list[int] = []
    monkeypatch.setattr("rounds.tasks.model_export", ids.append)
    return ids


def export_url(run, fmt: str, version: int | None = 1) -> str:
    return f"/api/v1/runs/{run.pk}/model/?format={fmt}" + ("" if version is None else f"&version={version}")


def download(api, run, fmt: str, version: int | None = 1):
    """The file, as a client gets it: ask, and ask again while the answer is 202."""
    first = api.get(export_url(run, fmt, version))
    assert first.status_code == 202, first.content
    assert first["Retry-After"] == "1" and first.json()["code"] == "export_pending"
    # The test engine runs the task at once, in the request: the second answer is the file.
    second = api.get(export_url(run, fmt, version))
    assert second.status_code == 200, second.content
    return second


def server_model(run, api) -> torch.nn.Module:
    """The global version 1 as the server serves it to devices (the wire format), in the task's model."""
    arrays = codec.decode(api.get(f"/api/v1/runs/{run.pk}/model/?version=1").content, kind="full").arrays
    model = seeded_model(runtask.task_of(run), run.task_config, seed=123)
    load_arrays(model, arrays)
    return model.eval()


def test_the_export_formats_are_the_ones_fedcore_writes():
    assert tuple(ExportFormat.values) == FORMATS == exports.FORMATS


def test_a_version_as_safetensors_loads_strictly_into_the_tasks_model_and_predicts_what_the_server_holds(
    run, trained, staff_api
):
    response = download(staff_api, run, "safetensors")
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-v1.safetensors"'
    assert response["X-Model-Version"] == "1"
    state = safetensors.torch.load(response.content)
    fresh = runtask.task_of(run).build_model(run.task_config)  # its own random weights, all replaced
    assert set(state) == set(fresh.state_dict())  # every tensor under its state_dict name
    fresh.load_state_dict(state, strict=True)
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), server_model(run, staff_api)(x))


def test_a_version_as_onnx_runs_in_onnxruntime_at_any_batch_size_and_matches_torch(run, trained, staff_api):
    response = download(staff_api, run, "onnx")
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-v1.onnx"'
    session = onnxruntime.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"] and [o.name for o in session.get_outputs()] == ["output"]
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    (logits,) = session.run(["output"], {"input": x.numpy()})
    with torch.no_grad():
        expected = server_model(run, staff_api)(x).numpy()
    assert logits.shape == (3, 10)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_the_first_request_answers_202_and_the_engine_task_renders_the_file_once(run, trained, staff_api, queued):
    first = staff_api.get(export_url(run, "safetensors"))
    assert first.status_code == 202 and first["Retry-After"] == "1"
    assert first.json()["code"] == "export_pending" and "version 1" in first.json()["detail"]
    export = ModelExport.objects.get()
    assert (export.version.number, export.format, export.status) == (1, "safetensors", ExportStatus.PENDING)
    assert queued == [export.pk]

    assert staff_api.get(export_url(run, "safetensors")).status_code == 202  # polling: one row, one task
    assert ModelExport.objects.count() == 1 and queued == [export.pk]

    export_task.call_local(export.pk)  # what an engine worker runs
    export.refresh_from_db()
    assert export.status == ExportStatus.DONE and export.size_bytes > 0 and export.claimed_at is not None
    assert exports.export_render(export_id=export.pk) is None  # a duplicate task finds it finished

    done = staff_api.get(export_url(run, "safetensors"))
    assert done.status_code == 200 and len(done.content) == export.size_bytes
    assert set(safetensors.torch.load(done.content)) == set(server_model(run, staff_api).state_dict())


def test_without_a_version_the_newest_is_exported(run, trained, staff_api):
    response = download(staff_api, run, "safetensors", version=None)
    assert response["X-Model-Version"] == "1"


def test_a_pending_export_whose_task_was_lost_is_enqueued_again_once(run, trained, staff_api, queued):
    staff_api.get(export_url(run, "safetensors"))
    export = ModelExport.objects.get()
    ModelExport.objects.filter(pk=export.pk).update(requested_at=timezone.now() - timedelta(minutes=2))
    for _ in range(3):
        assert staff_api.get(export_url(run, "safetensors")).status_code == 202
    assert queued == [export.pk, export.pk]


def test_a_stale_running_claim_is_handed_back_and_a_worker_that_lost_it_cannot_finish(run, trained, staff_api, queued):
    staff_api.get(export_url(run, "safetensors"))
    export = ModelExport.objects.get()
    dead_claim = timezone.now() - exports.EXPORT_LEASE - timedelta(seconds=1)
    ModelExport.objects.filter(pk=export.pk).update(status=ExportStatus.RUNNING, claimed_at=dead_claim)
    assert staff_api.get(export_url(run, "safetensors")).status_code == 202
    export.refresh_from_db()
    assert export.status == ExportStatus.PENDING and queued == [export.pk, export.pk]
    # A fresh claim is honoured: a running export is not taken back before its lease ends.
    ModelExport.objects.filter(pk=export.pk).update(status=ExportStatus.RUNNING, claimed_at=timezone.now())
    assert staff_api.get(export_url(run, "safetensors")).status_code == 202
    assert ModelExport.objects.get(pk=export.pk).status == ExportStatus.RUNNING and len(queued) == 2


def test_a_failed_export_is_a_409_that_says_why(run, trained, staff_api, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the exporter does not know this operator")

    monkeypatch.setattr("fedcore.export.to_onnx", broken)
    assert staff_api.get(export_url(run, "onnx")).status_code == 202
    response = staff_api.get(export_url(run, "onnx"))
    assert response.status_code == 409 and response.json()["code"] == "export_failed"
    assert "RuntimeError: the exporter does not know this operator" in response.json()["detail"]
    assert ModelExport.objects.get().status == ExportStatus.FAILED


def test_onnx_of_a_task_without_an_example_input_is_refused_at_once(run, trained, staff_api, monkeypatch, queued):
    monkeypatch.setattr(ImageClassification, "example_input", lambda self, config: None)
    response = staff_api.get(export_url(run, "onnx"))
    assert response.status_code == 400 and response.json()["code"] == "not_exportable"
    assert "example input" in response.json()["detail"]
    assert not ModelExport.objects.exists() and queued == []
    assert staff_api.get(export_url(run, "safetensors")).status_code == 202  # every model has tensors


def test_an_unknown_format_is_a_400_that_lists_the_formats(run, staff_api):
    response = staff_api.get(export_url(run, "pt", version=0))
    assert response.status_code == 400 and response.json()["code"] == "bad_format"
    assert "safetensors" in response.json()["detail"] and "onnx" in response.json()["detail"]
    assert response["Content-Type"] == "application/json"


def test_without_a_format_the_model_is_still_the_wire_format_or_json(run, staff_api):
    assert staff_api.get(f"/api/v1/runs/{run.pk}/model/")["Content-Type"] == codec.CONTENT_TYPE
    as_json = staff_api.get(f"/api/v1/runs/{run.pk}/model/?format=json")
    assert as_json.status_code == 200 and as_json["Content-Type"] == "application/json"


def test_the_runs_own_devices_may_export_its_model_and_no_one_else(run, trained, django_user_model):
    assert download(trained.api, run, "safetensors").status_code == 200
    other = run_control(run=run_create(name="other", rounds=1), action="start")
    stranger = Device(other.pk, "stranger")
    refused = stranger.api.get(export_url(run, "safetensors"))
    assert refused.status_code == 403 and refused.json()["code"] == "not_your_resource"
    django_user_model.objects.create_user("eve", password="pw-eve-12345")
    user = APIClient()
    user.login(username="eve", password="pw-eve-12345")
    assert user.get(export_url(run, "safetensors")).json()["code"] == "staff_only"
    assert APIClient().get(export_url(run, "safetensors")).status_code == 401


def test_the_command_writes_the_newest_version_as_a_file_that_loads(run, trained, staff_api, tmp_path, capsys):
    path = tmp_path / "model.safetensors"
    call_command("export_model", str(run.pk), format="safetensors", output=str(path))
    assert "version 1 as safetensors" in capsys.readouterr().out
    fresh = runtask.task_of(run).build_model(run.task_config)
    fresh.load_state_dict(safetensors.torch.load_file(path), strict=True)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), server_model(run, staff_api)(x))
    assert not ModelExport.objects.exists()  # the command renders here and now, not through the engine


def test_the_command_refuses_a_version_the_run_does_not_have(run, tmp_path):
    with pytest.raises(CommandError, match="has no version 9"):
        call_command("export_model", str(run.pk), version=9, format="safetensors", output=str(tmp_path / "m"))
