"""Operators' actions are audited: who, what, when, on which run or client, whichever way they
were made (API, admin); the trail is read-only in the admin."""
import pytest
from rest_framework.test import APIClient

from fedplatform.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_api(role_user) -> APIClient:
    api = APIClient()
    api.force_login(role_user("oscar", "operator"))
    return api


def _trail() -> list[tuple]:
    return list(AuditEntry.objects.order_by("id").values_list("actor", "action", "target_type", "target_id"))


def test_a_runs_life_through_the_api_is_audited_with_its_operator(operator_api):
    run_id = operator_api.post("/api/v1/runs/", {"name": "audited", "rounds": 2}, format="json").json()["id"]
    for action in ("start", "pause", "resume"):
        assert operator_api.post(f"/api/v1/runs/{run_id}/{action}/").status_code == 200
    assert operator_api.patch(f"/api/v1/runs/{run_id}/", {"rounds": 3}, format="json").status_code == 200
    assert operator_api.post(f"/api/v1/runs/{run_id}/stop/").status_code == 200
    actions = ("create", "start", "pause", "resume", "configure", "stop")
    assert _trail() == [("oscar", f"run.{a}", "run", run_id) for a in actions]
    configure = AuditEntry.objects.get(action="run.configure")
    assert configure.details == {"config_version": 2, "rounds": 3} and configure.at is not None


def test_a_refused_action_leaves_no_entry(operator_api, run):
    assert operator_api.post(f"/api/v1/runs/{run.pk}/start/").status_code == 409  # already running
    assert not AuditEntry.objects.filter(action="run.start", actor="oscar").exists()


def test_client_controls_are_audited(operator_api, device):
    alpha, beta = device("alpha"), device("beta")
    operator_api.post(f"/api/v1/clients/{alpha.id}/pause/")
    operator_api.post(f"/api/v1/clients/{alpha.id}/resume/")
    operator_api.delete(f"/api/v1/clients/{alpha.id}/")
    operator_api.post(f"/api/v1/clients/{beta.id}/ban/")
    assert [e for e in _trail() if e[1].startswith("client.")] == [
        ("oscar", "client.pause", "client", alpha.id), ("oscar", "client.resume", "client", alpha.id),
        ("oscar", "client.kick", "client", alpha.id), ("oscar", "client.ban", "client", beta.id),
    ]
    assert AuditEntry.objects.get(action="client.ban").details == {"address": "127.0.0.1"}


def test_an_operators_model_export_is_audited_and_a_devices_download_is_not(operator_api, run, device):
    dev = device("alpha")
    for _ in range(5):
        response = operator_api.get(f"/api/v1/runs/{run.pk}/model/?version=0&format=safetensors")
        if response.status_code == 200:
            break
    assert response.status_code == 200
    assert dev.api.get(f"/api/v1/runs/{run.pk}/model/?version=0&format=safetensors").status_code == 200
    (entry,) = AuditEntry.objects.filter(action="run.export")
    assert (entry.actor, entry.run_id, entry.details) == ("oscar", run.pk, {"version": 0, "format": "safetensors"})


def test_admin_actions_are_audited_and_the_trail_is_read_only_in_the_admin(client, django_user_model, run):
    client.force_login(django_user_model.objects.create_superuser("olivia", password="pw-olivia-123"))
    response = client.post("/admin/rounds/run/", {"action": "pause", "_selected_action": [run.pk]})
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="run.pause")
    assert entry.actor == "olivia"
    assert client.get("/admin/fedplatform/auditentry/").status_code == 200
    page = client.get(f"/admin/fedplatform/auditentry/{entry.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client.post(f"/admin/fedplatform/auditentry/{entry.pk}/change/", {"actor": "mallory"}).status_code == 403
    assert client.get("/admin/fedplatform/auditentry/add/").status_code == 403
    assert client.post(f"/admin/fedplatform/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.get(pk=entry.pk).actor == "olivia"
