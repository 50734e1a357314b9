"""Runs name a task: the API offers the installed tasks, validates a run's task and configuration,
and tells a device which task a run trains before it registers, refusing a device whose model
does not match the run's."""
import pytest
from rest_framework.test import APIClient

from fedcore.codec import manifest_of
from fedcore.state import state_to_arrays
from fedcore.tasks import BUILTIN_TASK, load_task, manifest_digest, seeded_model
from rounds.models import Run

pytestmark = pytest.mark.django_db
USER_TASK = "wide_task:task"


@pytest.fixture(autouse=True)
def user_task_offered(settings, monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "user_tasks"))
    settings.FEDPLATFORM = {**settings.FEDPLATFORM, "TASKS": [USER_TASK, "not_installed_anywhere.mod:task"]}


def _digest(path: str, config: dict) -> str:
    task = load_task(path)
    return manifest_digest(manifest_of(state_to_arrays(seeded_model(task, task.validate_config(config), 0))))


def test_the_api_lists_the_offered_tasks_with_their_defaults_and_whether_they_import(staff_api):
    listed = {t["path"]: t for t in staff_api.get("/api/v1/tasks/").json()}
    assert listed[BUILTIN_TASK]["config_defaults"] == {"arch": "cnn", "dataset": "fashion-mnist", "train_examples": 0}
    assert listed[USER_TASK] == {"path": USER_TASK, "title": "a linear model of configurable width",
                                 "config_defaults": {"width": 4}, "available": True, "error": ""}
    missing = listed["not_installed_anywhere.mod:task"]
    assert not missing["available"] and "cannot import" in missing["error"]


def test_a_run_of_a_users_task_stores_its_full_configuration_and_manifest(staff_api):
    response = staff_api.post("/api/v1/runs/", {"name": "wide", "task": USER_TASK, "task_config": {"width": 6}},
                              format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["task"], body["task_config"]) == (USER_TASK, {"width": 6})
    assert body["manifest_digest"] == _digest(USER_TASK, {"width": 6})
    assert Run.objects.get(pk=body["id"]).versions.get().number == 0


def test_the_arch_and_dataset_shorthand_configures_the_builtin_task(staff_api):
    body = staff_api.post("/api/v1/runs/", {"name": "c", "arch": "resnet18", "dataset": "cifar10"},
                          format="json").json()
    assert (body["task"], body["task_config"]) == (
        BUILTIN_TASK, {"arch": "resnet18", "dataset": "cifar10", "train_examples": 0})


@pytest.mark.parametrize("payload, code, says", [
    ({"task": "someone.elses:task"}, "unknown_task", BUILTIN_TASK),
    ({"task": "not_installed_anywhere.mod:task"}, "task_unavailable", "cannot import"),
    ({"task": USER_TASK, "task_config": {"width": 0}}, "invalid_task_config", "width must be at least 1"),
    ({"task": USER_TASK, "task_config": {"depth": 2}}, "invalid_task_config", "this task takes: width"),
    ({"arch": "vgg"}, "invalid_task_config", "unknown arch 'vgg'"),
    ({"task": USER_TASK, "arch": "cnn"}, "invalid_task_config", "task_config"),
])
def test_an_unknown_task_or_invalid_configuration_is_a_400_that_says_what_is_valid(staff_api, payload, code, says):
    response = staff_api.post("/api/v1/runs/", {"name": "bad", **payload}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code and says in response.json()["detail"]
    assert not Run.objects.exists()


def test_a_device_learns_the_runs_task_before_it_registers(run):
    answer = APIClient().get(f"/api/v1/clients/enrollment/?run={run.pk}")
    assert answer.status_code == 200
    assert answer.json() == {"run": run.pk, "name": run.name, "status": "running", "task": BUILTIN_TASK,
                             "task_config": {"arch": "cnn", "dataset": "fashion-mnist", "train_examples": 0},
                             "manifest_digest": run.manifest_digest, "upload_encoding": "int4"}
    assert APIClient().get("/api/v1/clients/enrollment/").json()["run"] == run.pk  # the newest active run


def test_enrollment_answers_like_registration_for_missing_closed_and_garbage_runs(run, staff_api):
    assert APIClient().get("/api/v1/clients/enrollment/?run=999").json()["code"] == "no_such_run"
    assert APIClient().get("/api/v1/clients/enrollment/?run=¹").json()["code"] == "bad_parameter"
    beyond_64_bits = 46057044073805655310336  # no database column holds it
    assert APIClient().get(f"/api/v1/clients/enrollment/?run={beyond_64_bits}").json()["code"] == "bad_parameter"
    refused = APIClient().post("/api/v1/clients/", {"name": "d", "num_examples": 10, "run": beyond_64_bits},
                               format="json")
    assert refused.status_code == 400 and "run" in refused.json()["errors"]
    staff_api.post(f"/api/v1/runs/{run.pk}/stop/")
    assert APIClient().get(f"/api/v1/clients/enrollment/?run={run.pk}").json()["code"] == "run_closed"
    assert APIClient().get("/api/v1/clients/enrollment/").json()["code"] == "no_active_run"


def _register(run, **extra):
    return APIClient().post("/api/v1/clients/", {"name": "d", "num_examples": 10, "run": run.pk, **extra},
                            format="json")


def test_a_device_whose_model_does_not_match_the_runs_manifest_is_refused(run):
    other = _digest(BUILTIN_TASK, {"dataset": "cifar10"})
    refused = _register(run, task=BUILTIN_TASK, manifest_digest=other)
    assert refused.status_code == 409 and refused.json()["code"] == "manifest_mismatch"
    answer = _register(run, task="another.name:for_the_same_model", manifest_digest=run.manifest_digest)
    assert answer.status_code == 201
    mismatch = _register(run, task=USER_TASK)
    assert mismatch.status_code == 409 and mismatch.json()["code"] == "task_mismatch"
    accepted = _register(run, task=BUILTIN_TASK, manifest_digest=run.manifest_digest).json()
    assert (accepted["task"], accepted["manifest_digest"]) == (BUILTIN_TASK, run.manifest_digest)
