"""Configuration changes are versioned and apply from the next round that opens."""
import pytest

from protocol_helpers import delta_body
from rounds.models import Round

pytestmark = pytest.mark.django_db


def _finish_round(run, devices):
    tasks = [d.task().json() for d in devices]
    for dev, task in zip(devices, tasks):
        assert dev.upload(task, delta_body(run, task, 0.01)[0]).status_code == 201
    return tasks


def test_a_change_during_a_round_applies_from_the_next_round(staff_api, run, device):
    alpha, beta = device("alpha"), device("beta")
    first = alpha.task().json()
    response = staff_api.patch(f"/api/v1/runs/{run.pk}/", {"learning_rate": 0.01, "local_epochs": 3}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["config_version"], body["config_in_force"]) == (2, 1)  # a change is pending
    assert beta.task().json()["hyperparameters"]["learning_rate"] == first["hyperparameters"]["learning_rate"]

    _finish_round(run, [alpha, beta])
    assert beta.task().status_code == 204  # idle again: ready for the next round
    second = alpha.task().json()
    assert second["round_number"] == 2
    assert second["hyperparameters"]["learning_rate"] == 0.01
    assert second["hyperparameters"]["local_epochs"] == 3
    assert [r.config.version for r in Round.objects.filter(run=run).order_by("number")] == [1, 2]
    assert staff_api.get(f"/api/v1/runs/{run.pk}/").json()["config_in_force"] == 2


def test_each_version_records_its_author_and_what_changed(staff_api, run):
    staff_api.patch(f"/api/v1/runs/{run.pk}/", {"clients_per_round": 5, "batch_size": 64}, format="json")
    configs = staff_api.get(f"/api/v1/runs/{run.pk}/configs/").json()
    assert [c["version"] for c in configs] == [1, 2]
    assert configs[1]["author"] == "olivia"
    assert configs[1]["changed"] == ["batch_size", "clients_per_round"]
    assert configs[1]["values"]["clients_per_round"] == 5


def test_a_patch_that_changes_nothing_makes_no_new_version(staff_api, run):
    staff_api.patch(f"/api/v1/runs/{run.pk}/", {"learning_rate": run.learning_rate}, format="json")
    assert len(staff_api.get(f"/api/v1/runs/{run.pk}/configs/").json()) == 1


def test_renaming_a_run_is_not_a_configuration_change(staff_api, run):
    assert staff_api.patch(f"/api/v1/runs/{run.pk}/", {"name": "renamed"}, format="json").json()["name"] == "renamed"
    assert len(staff_api.get(f"/api/v1/runs/{run.pk}/configs/").json()) == 1


def test_lowering_the_round_count_below_what_is_done_finishes_the_run(staff_api, run, device):
    alpha, beta = device("alpha"), device("beta")
    _finish_round(run, [alpha, beta])
    staff_api.patch(f"/api/v1/runs/{run.pk}/", {"rounds": 1}, format="json")
    assert staff_api.get(f"/api/v1/runs/{run.pk}/").json()["status"] == "finished"


def test_a_newcomer_backfills_an_unfilled_round_when_the_run_allows_it(staff_api, run, device):
    staff_api.patch(f"/api/v1/runs/{run.pk}/", {"clients_per_round": 3, "allow_backfill": True}, format="json")
    alpha, _beta = device("alpha"), device("beta")
    task = alpha.task().json()
    late = device("late")
    late_task = late.task().json()
    assert late_task["round"] == task["round"]
    assert Round.objects.get(pk=task["round"]).expected.count() == 3


def test_a_newcomer_waits_for_the_next_round_without_backfill(run, device):
    alpha, _beta = device("alpha"), device("beta")
    alpha.task()
    late = device("late")
    assert late.task().status_code == 204
