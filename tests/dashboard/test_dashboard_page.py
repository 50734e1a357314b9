"""The dashboard page and its JSON snapshot: staff only, assets served locally, and a snapshot
that holds everything the page draws."""
import json
import re

import pytest
from django.test import override_settings

from clients.services import client_pause
from dashboard_helpers import join, running_run, train_one_round
from rounds.lifecycle import run_configure
from rounds.protocol import task_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user("olivia", password="pw-olivia-123", is_staff=True)


@pytest.fixture
def staff(client, operator):
    client.force_login(operator)
    return client


def _embedded_snapshot(html: str) -> dict:
    match = re.search(r'<script id="snapshot" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page embeds no snapshot"
    return json.loads(match.group(1))


def test_anonymous_visitors_are_sent_to_log_in(client):
    run = running_run()
    for path in ("/", f"/runs/{run.pk}/", f"/runs/{run.pk}/snapshot.json"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/login/"), path


def test_users_without_a_role_are_sent_to_log_in(client, django_user_model):
    run = running_run()
    django_user_model.objects.create_user("eve", password="pw-eve-12345")
    client.login(username="eve", password="pw-eve-12345")
    assert client.get(f"/runs/{run.pk}/snapshot.json").status_code == 302
    assert client.get("/").status_code == 302


def test_a_viewer_sees_the_dashboard_without_controls_and_an_operator_with_them(client, role_user):
    run = running_run()
    for role, can_operate in (("viewer", "false"), ("operator", "true")):
        client.force_login(role_user(f"{role}-user", role))
        page = client.get(f"/runs/{run.pk}/").content.decode()
        assert f'data-can-operate="{can_operate}"' in page, role
        assert client.get(f"/runs/{run.pk}/snapshot.json").json()["run"]["id"] == run.pk
        assert 'href="/admin/"' not in page  # neither is staff
        client.logout()


def test_a_user_without_a_role_logs_in_at_the_dashboards_own_page_and_a_viewer_gets_in(client, role_user):
    role_user("vera", "viewer")
    form = client.get("/login/?next=/")
    assert form.status_code == 200 and b'name="password"' in form.content
    response = client.post("/login/", {"username": "vera", "password": "pw-vera-12345", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_the_page_shows_the_newest_run_from_an_embedded_snapshot(staff):
    running_run(name="older")
    newest = running_run(name="newest")
    html = staff.get("/").content.decode()
    snapshot = _embedded_snapshot(html)
    assert snapshot["run"]["id"] == newest.pk
    assert [r["name"] for r in snapshot["runs"]] == ["newest", "older"]


def test_the_page_loads_only_local_assets(staff):
    running_run()
    html = staff.get("/").content.decode()
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert any(s.endswith("chart.umd.min.js") for s in sources)
    remote = [s for s in sources if not s.startswith("data:") and (not s.startswith("/") or s.startswith("//"))]
    assert remote == []


@override_settings(DEBUG=False)
def test_static_files_are_served_without_debug_mode(client):
    # runserver/daphne serve static files only with DEBUG on; the dashboard must work without it.
    assets = ("/static/dashboard/js/main.js", "/static/dashboard/vendor/chart.umd.min.js", "/static/admin/css/base.css")
    for path in assets:
        response = client.get(path)
        assert response.status_code == 200, path
        assert b"".join(response.streaming_content)
    assert client.get("/static/../fedplatform/settings.py").status_code == 404


def test_the_snapshot_has_clients_with_state_round_and_traffic(staff):
    run = running_run(min_clients=2, clients_per_round=2)
    alpha, _beta, gamma = join(run, "alpha"), join(run, "beta"), join(run, "gamma")
    task = task_for(client=alpha)  # opens round 1 with two of the three
    client_pause(client=gamma, actor="olivia")
    snapshot = staff.get(f"/runs/{run.pk}/snapshot.json").json()

    clients = {c["name"]: c for c in snapshot["clients"]}
    assert clients["gamma"]["status"] == "paused"
    selected = [name for name, c in clients.items() if c["round"] == 1]
    assert "alpha" in selected and len(selected) == 2
    assert all(c["status"] == "training" for name, c in clients.items() if name in selected)
    assert set(clients["alpha"]) >= {"progress", "num_examples", "last_seen", "bytes_sent", "bytes_received",
                                     "held_version"}
    (open_round,) = snapshot["rounds"]
    assert open_round["id"] == task["round"] and open_round["status"] == "open"
    assert len(open_round["expected"]) == 2 and open_round["received"] == []
    assert open_round["deadline"] and open_round["opened_at"]
    assert {lane["outcome"] for lane in open_round["lanes"]} == {"working"}


def test_the_snapshot_has_each_closed_rounds_metrics_and_timeline(staff):
    run = running_run()
    alpha = join(run, "alpha")
    train_one_round(run, alpha, metrics={"download_seconds": 0.2, "eval_seconds": 0.1, "train_seconds": 0.3})
    snapshot = staff.get(f"/runs/{run.pk}/snapshot.json").json()

    first = snapshot["rounds"][0]
    assert first["status"] == "closed"
    for key in ("test_accuracy", "test_loss", "participants", "bytes_up", "float32_bytes_per_update",
                "compression_ratio", "duration_seconds"):
        assert key in first["metrics"], key
    (lane,) = first["lanes"]
    assert lane["name"] == "alpha" and lane["outcome"] == "delivered"
    assert [s["kind"] for s in lane["segments"]][:3] == ["download", "eval", "train"]
    assert snapshot["run"]["completed_rounds"] == 1


def test_the_snapshot_shows_a_configuration_change_as_pending_until_the_next_round(staff):
    run = running_run(learning_rate=0.05, rounds=3)
    alpha = join(run, "alpha")
    task_for(client=alpha)  # round 1 opens with configuration version 1
    run_configure(run=run, changes={"learning_rate": 0.01}, author="olivia")

    config = staff.get(f"/runs/{run.pk}/snapshot.json").json()["config"]
    assert (config["version"], config["in_force"]) == (2, 1)
    assert config["pending"] == {"learning_rate": [0.05, 0.01]}
    assert config["in_force_values"]["learning_rate"] == 0.05


def test_an_unknown_run_is_not_found(staff):
    assert staff.get("/runs/999/snapshot.json").status_code == 404
    assert staff.get("/runs/999/").status_code == 404


def test_with_no_run_the_page_offers_to_create_one(staff):
    html = staff.get("/").content.decode()
    assert _embedded_snapshot(html)["run"] is None
    assert 'id="new-run-form"' in html


def test_the_new_run_form_offers_the_download_encodings_the_broadcast_takes(staff):
    html = staff.get("/").content.decode()
    select = re.search(r'<select name="download_encoding" id="new-download_encoding"[^>]*>(.*?)</select>', html, re.S)
    assert select, "the new-run form has no download encoding"
    offered = re.findall(r'<option value="([^"]+)"', select.group(1))
    assert "int4" in offered and "float32" in offered and not any(e.startswith("topk") for e in offered)
