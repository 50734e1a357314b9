"""The task interface: configurations checked against the task's defaults, tasks found by import
path with errors that say what to do, and a manifest digest that identifies the model."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from fedcore.codec import manifest_of
from fedcore.state import buffer_names, state_to_arrays
from fedcore.tasks import (
    BUILTIN_TASK,
    DataRequest,
    DeviceData,
    TaskConfigError,
    TaskNotFound,
    TensorSplit,
    TrainParams,
    installed_tasks,
    load_task,
    manifest_digest,
    seeded_model,
)


def test_the_builtin_task_fills_in_defaults_and_refuses_unknown_keys_wrong_types_and_choices():
    task = load_task(BUILTIN_TASK)
    assert task.validate_config({}) == {"arch": "cnn", "dataset": "fashion-mnist", "train_examples": 0}
    assert task.validate_config({"arch": "resnet18", "dataset": "cifar10"}) == {
        "arch": "resnet18", "dataset": "cifar10", "train_examples": 0}
    with pytest.raises(TaskConfigError,
                       match=r"unknown configuration keys \['depth'\]; this task takes: arch, dataset, train_examples"):
        task.validate_config({"depth": 3})
    with pytest.raises(TaskConfigError, match="'arch' must be a str"):
        task.validate_config({"arch": 18})
    with pytest.raises(TaskConfigError, match="unknown arch 'vgg'"):
        task.validate_config({"arch": "vgg"})
    with pytest.raises(TaskConfigError, match="must be a JSON object"):
        task.validate_config(["cnn"])
    with pytest.raises(TaskConfigError, match="train_examples must be 0"):
        task.validate_config({"train_examples": -5})


def test_train_examples_makes_every_device_partition_the_same_seeded_subset():
    task = load_task(BUILTIN_TASK)
    config = task.validate_config({"train_examples": 600})
    shares = [task.load_data(config, DataRequest(num_partitions=3, partition_index=i, seed=4, eval_fraction=0.1))
              for i in range(3)]
    assert sum(d.num_train + d.num_eval for d in shares) == 600
    rows = {bytes(x.numpy()) for d in shares for split in (d.train, d.eval) for x in split.x}
    assert len(rows) == 600  # disjoint: no image is on two devices, none in both splits


@pytest.mark.parametrize("path, message", [
    ("no colon here", "not a task path"),
    ("surely_not_installed_pkg.tasks:task", "cannot import task"),
    ("fedcore.tasks.vision:no_such_attribute", "has no attribute 'no_such_attribute'"),
    ("fedcore.codec:encode", "is not a task"),
])
def test_a_path_that_names_no_task_is_refused_with_what_to_do(path, message):
    with pytest.raises(TaskNotFound, match=message):
        load_task(path)


def test_a_users_task_module_is_loaded_by_path_and_trained_by_the_default_loops(tmp_path, monkeypatch):
    (tmp_path / "tiny_user_task.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn
        from fedcore.tasks import DeviceData, Task, TensorSplit

        class Tiny(Task):
            title = "two features, two classes"
            config_defaults = {"hidden": 4, "scale": 1.0}

            def build_model(self, config):
                return nn.Sequential(nn.Linear(2, config["hidden"]), nn.ReLU(), nn.Linear(config["hidden"], 2))

            def load_data(self, config, request):
                x = torch.randn(64, 2, generator=torch.Generator().manual_seed(request.partition_index))
                y = (x[:, 0] > 0).long()
                return DeviceData(TensorSplit(x[:48], y[:48]), TensorSplit(x[48:], y[48:]))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    task = load_task("tiny_user_task:Tiny")  # a class is instantiated
    config = task.validate_config({"hidden": 8, "scale": 2})
    assert config == {"hidden": 8, "scale": 2.0}
    data = task.load_data(config, DataRequest(partition_index=1))
    assert (data.num_train, data.num_eval) == (48, 16)
    model = seeded_model(task, config, seed=0)
    before = task.evaluate(model, data.eval, device=torch.device("cpu"))
    trained = task.train(model, data, TrainParams(epochs=20, batch_size=8, learning_rate=0.1),
                         device=torch.device("cpu"))
    after = task.evaluate(model, data.eval, device=torch.device("cpu"))
    assert set(trained) == {"loss", "accuracy"} and after["loss"] < before["loss"]
    sys.modules.pop("tiny_user_task", None)


def test_the_default_loops_say_what_to_override_for_data_that_is_not_tensors():
    task = load_task(BUILTIN_TASK)
    model = seeded_model(task, task.validate_config({}), seed=0)
    with pytest.raises(TypeError, match="override the task's train"):
        task.train(model, DeviceData(train=[1, 2, 3]), TrainParams(1, 2, 0.1), device=torch.device("cpu"))


def test_the_manifest_digest_tells_models_apart_and_ignores_the_seed():
    task = load_task(BUILTIN_TASK)
    fashion = task.validate_config({})

    def digest(config, seed=0):
        return manifest_digest(manifest_of(state_to_arrays(seeded_model(task, config, seed))))

    assert digest(fashion) == digest(fashion, seed=7)
    assert digest(fashion) != digest(task.validate_config({"dataset": "cifar10"}))
    assert len(digest(fashion)) == 32


def test_seeded_models_are_reproducible_and_leave_the_callers_rng_alone():
    task = load_task(BUILTIN_TASK)
    config = task.validate_config({})
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, b = seeded_model(task, config, seed=3), seeded_model(task, config, seed=3)
    assert torch.rand(1) == expected_next
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_installed_tasks_lists_the_builtin_then_extra_paths_once():
    assert installed_tasks(["pkg.mod:task", BUILTIN_TASK, "pkg.mod:task"])[:2] == [BUILTIN_TASK, "pkg.mod:task"]


def test_buffer_names_are_the_models_statistics_not_its_weights():
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    assert buffer_names(model) == {"0.running_mean", "0.running_var", "0.num_batches_tracked"}


def test_tensorsplit_refuses_inputs_and_labels_of_different_lengths():
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        TensorSplit(torch.zeros(3, 2), torch.zeros(2))


def test_a_task_with_batchnorm_can_skip_the_last_row_that_batchnorm_cannot_train_on():
    class WithBatchNorm(load_task(BUILTIN_TASK).__class__):
        drop_last_batch = True

        def build_model(self, config):
            return torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))

    x, y = torch.randn(9, 3), torch.tensor([0, 1] * 4 + [0])
    data = DeviceData(TensorSplit(x, y))
    model = WithBatchNorm().build_model({})
    metrics = WithBatchNorm().train(model, data, TrainParams(1, 4, 0.1), device=torch.device("cpu"))
    assert 0 <= metrics["accuracy"] <= 1  # two batches of four; the ninth row waits for the next epoch

    class KeepsEveryBatch(WithBatchNorm):
        drop_last_batch = False

    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        KeepsEveryBatch().train(model, data, TrainParams(1, 4, 0.1), device=torch.device("cpu"))
