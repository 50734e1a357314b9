"""What operators do through the API: create and control runs, inspect rounds, control clients."""
import re
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command

from clients.models import Client, ClientEvent, ClientStatus
from rounds.models import Run, RunStatus

pytestmark = pytest.mark.django_db


def test_creating_a_run_stores_its_initial_model_as_version_zero(staff_api):
    response = staff_api.post(
        "/api/v1/runs/", {"name": "fmnist", "arch": "cnn", "dataset": "fashion-mnist", "rounds": 3}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "draft"
    assert body["current_version"] == 0
    run = Run.objects.get(pk=body["id"])
    version = run.versions.get()
    assert version.float32_bytes > 400_000 * 4
    assert version.size_bytes < version.float32_bytes * 1.01


@pytest.mark.django_db(transaction=True)
def test_the_initial_model_is_evaluated_by_a_task_of_its_own(staff_api, monkeypatch):
    monkeypatch.setattr("rounds.evaluation.evaluate_arrays", lambda run, arrays: {"accuracy": 0.1, "loss": 2.3})
    response = staff_api.post("/api/v1/runs/", {"name": "baseline", "rounds": 1}, format="json")
    assert response.status_code == 201, response.content
    version = Run.objects.get(pk=response.json()["id"]).versions.get()
    assert (version.evaluation, version.metrics["test_accuracy"], version.metrics["test_loss"]) == ("done", 0.1, 2.3)


@pytest.mark.django_db(transaction=True)
def test_a_failing_baseline_evaluation_does_not_fail_the_created_run(staff_api, monkeypatch, caplog):
    def broken(run, arrays):
        raise RuntimeError("evaluation crashed")

    monkeypatch.setattr("rounds.evaluation.evaluate_arrays", broken)
    response = staff_api.post("/api/v1/runs/", {"name": "no baseline", "rounds": 1}, format="json")
    assert response.status_code == 201, response.content
    version = Run.objects.get(pk=response.json()["id"]).versions.get()
    assert version.evaluation == "failed" and "test_accuracy" not in version.metrics
    assert version.metrics["evaluation_error"] == "RuntimeError: evaluation crashed"
    assert "evaluation crashed" in caplog.text


def test_run_creation_is_for_staff_only(db):
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/runs/", {"name": "x"}, format="json")
    assert response.status_code in (401, 403)
    assert not Run.objects.exists()


def test_run_control_follows_the_run_states(staff_api, run):
    assert staff_api.post(f"/api/v1/runs/{run.pk}/pause/").json()["status"] == "paused"
    refused = staff_api.post(f"/api/v1/runs/{run.pk}/start/")
    assert refused.status_code == 409
    assert refused.json()["code"] == "illegal_run_transition"
    assert staff_api.post(f"/api/v1/runs/{run.pk}/resume/").json()["status"] == "running"
    assert staff_api.post(f"/api/v1/runs/{run.pk}/stop/").json()["status"] == "stopped"
    assert Run.objects.get(pk=run.pk).status == RunStatus.STOPPED


def test_patching_a_run_changes_the_configuration_of_the_next_round(staff_api, run, device):
    response = staff_api.patch(f"/api/v1/runs/{run.pk}/", {"learning_rate": 0.2, "local_epochs": 2}, format="json")
    assert response.status_code == 200
    alpha, _ = device("alpha"), device("beta")
    assert alpha.task().json()["hyperparameters"]["learning_rate"] == 0.2


def test_a_runs_task_and_its_configuration_cannot_change_after_creation(staff_api, run):
    for change in ({"arch": "resnet18"}, {"task_config": {"arch": "resnet18", "dataset": "fashion-mnist"}}):
        response = staff_api.patch(f"/api/v1/runs/{run.pk}/", change, format="json")
        assert response.status_code == 400, change
    assert Run.objects.get(pk=run.pk).task_config == {"arch": "cnn", "dataset": "fashion-mnist", "train_examples": 0}


def test_operators_pause_and_resume_clients_and_paused_clients_are_not_selected(staff_api, run, device):
    alpha = device("alpha")
    assert staff_api.post(f"/api/v1/clients/{alpha.id}/pause/").json()["status"] == "paused"
    beta = device("beta")
    assert beta.task().status_code == 204  # only one selectable client: no round
    assert alpha.task().status_code == 204
    assert Client.objects.get(pk=alpha.id).status == ClientStatus.PAUSED
    assert staff_api.post(f"/api/v1/clients/{alpha.id}/resume/").json()["status"] == "ready"
    assert alpha.task().status_code == 200
    reasons = list(ClientEvent.objects.filter(client_id=alpha.id).values_list("to_status", "actor"))
    assert ("paused", "olivia") in reasons and ("ready", "olivia") in reasons


def test_rounds_are_listed_with_their_participants(staff_api, run, device):
    alpha, beta = device("alpha"), device("beta")
    alpha.task()
    rounds = staff_api.get(f"/api/v1/runs/{run.pk}/rounds/").json()
    assert len(rounds) == 1
    assert sorted(rounds[0]["expected"]) == sorted([alpha.id, beta.id])
    assert rounds[0]["status"] == "open"
    assert staff_api.get(f"/api/v1/rounds/{rounds[0]['id']}/").json()["number"] == 1


def test_the_openapi_schema_is_valid_and_documents_every_endpoint(staff_api, tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/v1/clients/{id}/task/", "/api/v1/rounds/{round_id}/updates/{client_id}/",
                 "/api/v1/runs/{id}/model/", "/api/v1/clients/{id}/heartbeat/", "/api/v1/runs/{id}/start/"):
        assert path in text
    assert staff_api.get("/api/schema/").status_code == 200


def test_swagger_ui_is_served_from_local_assets(staff_api):
    html = staff_api.get("/api/docs/").content.decode()
    asset_urls = re.findall(r'<(?:script|link)[^>]*?(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui" in url for url in asset_urls)
    # Operators may run without internet access: no asset may come from another host.
    assert asset_urls and all(urlsplit(url).netloc == "" for url in asset_urls), asset_urls
