"""The round's task as the worker reads it: FedProx's mu comes with the hyper-parameters."""
import pytest

from worker.task import BadTask, Task

BODY = {
    "round": 12, "round_number": 3, "run": 1, "task": "fedcore.tasks.vision:image_classification",
    "base_version": 2, "model_url": "/api/v1/runs/1/model/?version=2", "upload_url": "/api/v1/rounds/12/updates/5/",
    "hyperparameters": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.05},
}


def test_a_task_without_proximal_mu_trains_without_the_term():
    assert Task.from_json(BODY).hyperparameters.proximal_mu == 0.0


def test_a_fedprox_round_carries_its_mu():
    body = {**BODY, "hyperparameters": {**BODY["hyperparameters"], "proximal_mu": 0.25}}
    assert Task.from_json(body).hyperparameters.proximal_mu == 0.25


@pytest.mark.parametrize("mu", [-1, "nan", "inf", "lots"])
def test_a_nonsensical_mu_is_a_malformed_task(mu):
    body = {**BODY, "hyperparameters": {**BODY["hyperparameters"], "proximal_mu": mu}}
    with pytest.raises(BadTask):
        Task.from_json(body)
