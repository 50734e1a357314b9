"""The admin acts through the services: client pause/resume/kick, run start/pause/stop and
configuration edits are recorded (history rows, config versions) exactly as the API records them."""
import json

import pytest
from django.urls import reverse

from clients.models import Client, ClientEvent
from dashboard_helpers import join, running_run, train_one_round
from rounds.models import Run, RunConfig

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-12345")
    client.force_login(user)
    return client


def _action(admin_client, model: str, action: str, ids: list[int]):
    url = reverse(f"admin:{model}_changelist")
    return admin_client.post(url, {"action": action, "_selected_action": [str(i) for i in ids]}, follow=True)


def test_pausing_resuming_and_kicking_from_the_admin_go_through_the_state_machine(admin_client):
    run = running_run(min_clients=2)  # one client alone is never selected: its moves are the admin's
    alpha = join(run, "alpha")
    _action(admin_client, "clients_client", "pause", [alpha.pk])
    assert Client.objects.get(pk=alpha.pk).status == "paused"
    _action(admin_client, "clients_client", "resume", [alpha.pk])
    assert Client.objects.get(pk=alpha.pk).status == "ready"
    _action(admin_client, "clients_client", "kick", [alpha.pk])
    assert Client.objects.get(pk=alpha.pk).status == "kicked"
    moves = list(ClientEvent.objects.filter(client=alpha, actor="root").values_list("to_status", flat=True))
    assert moves == ["paused", "ready", "kicked"]


def test_an_illegal_client_action_is_reported_not_applied(admin_client):
    run = running_run(min_clients=2)
    alpha = join(run, "alpha")
    page = _action(admin_client, "clients_client", "resume", [alpha.pk]).content.decode()
    assert "not paused" in page
    assert Client.objects.get(pk=alpha.pk).status == "join"


def test_run_control_from_the_admin_starts_pauses_resumes_and_stops(admin_client):
    from rounds.lifecycle import run_create

    run = run_create(name="admin run")
    for action, status in (("start", "running"), ("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        _action(admin_client, "rounds_run", action, [run.pk])
        assert Run.objects.get(pk=run.pk).status == status, action


def test_editing_a_run_in_the_admin_records_a_configuration_version(admin_client):
    run = running_run(learning_rate=0.05)
    url = reverse("admin:rounds_run_change", args=[run.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items() if not isinstance(v, bool) or v}
    # As a browser posts JSON fields.
    data = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in data.items()}
    data.update({"learning_rate": "0.01", "configs-TOTAL_FORMS": "0", "configs-INITIAL_FORMS": "0",
                 "round_set-TOTAL_FORMS": "0", "round_set-INITIAL_FORMS": "0"})
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    latest = RunConfig.objects.filter(run=run).order_by("-version").first()
    assert (latest.version, latest.changed, latest.author) == (2, ["learning_rate"], "root")
    assert Run.objects.get(pk=run.pk).learning_rate == 0.01


def test_the_model_layout_of_an_existing_run_is_read_only_in_the_admin(admin_client):
    run = running_run()
    form = admin_client.get(reverse("admin:rounds_run_change", args=[run.pk])).context["adminform"].form
    assert not {"task", "task_config", "seed", "strategy"} & set(form.fields)
    assert {"learning_rate", "clients_per_round", "name"} <= set(form.fields)


def test_admin_lists_filter_by_status_and_search_by_name(admin_client):
    run = running_run()
    alpha, beta = join(run, "alpha"), join(run, "beta")
    _action(admin_client, "clients_client", "pause", [beta.pk])
    listing = admin_client.get(reverse("admin:clients_client_changelist"), {"status__exact": "paused"})
    assert list(listing.context["cl"].queryset) == [Client.objects.get(pk=beta.pk)]
    found = admin_client.get(reverse("admin:clients_client_changelist"), {"q": "alph"})
    assert list(found.context["cl"].queryset) == [Client.objects.get(pk=alpha.pk)]
    runs = admin_client.get(reverse("admin:rounds_run_changelist"), {"status__exact": "running", "q": run.name})
    assert list(runs.context["cl"].queryset) == [run]


def test_a_round_page_shows_its_updates_and_a_run_page_its_rounds(admin_client):
    run = running_run()
    alpha = join(run, "alpha")
    task = train_one_round(run, alpha)
    round_page = admin_client.get(reverse("admin:rounds_round_change", args=[task["round"]])).content.decode()
    assert "alpha" in round_page and "Updates" in round_page
    run_page = admin_client.get(reverse("admin:rounds_run_change", args=[run.pk])).content.decode()
    assert "configuration versions" in run_page.lower() and "Rounds" in run_page
    client_page = admin_client.get(reverse("admin:clients_client_change", args=[alpha.pk])).content.decode()
    assert "updates sent" in client_page.lower()


def test_clients_cannot_be_deleted_from_the_admin_only_kicked(admin_client):
    run = running_run()
    alpha = join(run, "alpha")
    assert admin_client.get(reverse("admin:clients_client_delete", args=[alpha.pk])).status_code == 403
