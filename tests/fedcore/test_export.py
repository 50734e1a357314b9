"""fedcore.export: a model's arrays as safetensors and ONNX, read back by the libraries users have."""
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnxruntime
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from torch import nn

from fedcore import export
from fedcore.state import state_to_arrays
from fedcore.tasks import Task


class TinyBatchNormTask(Task):
    """A model with an integer buffer and running statistics: what eval mode and dtypes change."""

    title = "tiny"

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    def example_input(self, config: Mapping[str, Any]) -> torch.Tensor:
        return torch.zeros(2, 4)


class NoExampleTask(TinyBatchNormTask):
    def example_input(self, config: Mapping[str, Any]) -> None:
        return None


def trained_arrays(task: Task) -> tuple[nn.Module, dict[str, np.ndarray]]:
    """A model whose BatchNorm statistics moved away from their initial values."""
    torch.manual_seed(0)
    model = task.build_model({})
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 4) * 3 + 1)
    return model.eval(), state_to_arrays(model)


def test_safetensors_keeps_every_name_dtype_and_value():
    _, arrays = trained_arrays(TinyBatchNormTask())
    loaded = safetensors.numpy.load(export.to_safetensors(arrays, {"run": "7"}))
    assert set(loaded) == set(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        assert np.array_equal(loaded[name], array), name
    assert loaded["1.num_batches_tracked"].dtype == np.int64 and int(loaded["1.num_batches_tracked"]) == 3


def test_safetensors_loads_strictly_into_a_fresh_model_of_the_task():
    task = TinyBatchNormTask()
    model, arrays = trained_arrays(task)
    fresh = task.build_model({})
    fresh.load_state_dict(safetensors.torch.load(export.to_safetensors(arrays)), strict=True)
    x = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model(x))


def test_onnx_uses_the_running_statistics_and_takes_any_batch_size():
    task = TinyBatchNormTask()
    model, arrays = trained_arrays(task)
    session = onnxruntime.InferenceSession(export.to_onnx(task, {}, arrays), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 7):  # the example was a batch of 2
        x = torch.randn(batch, 4)
        (out,) = session.run(["output"], {"input": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(out, model(x).numpy(), atol=1e-5, rtol=0)


def test_onnx_refuses_a_task_without_an_example_input():
    task = NoExampleTask()
    _, arrays = trained_arrays(task)
    with pytest.raises(export.NotExportable, match="no example input"):
        export.to_onnx(task, {}, arrays)


def test_an_unknown_format_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="safetensors, onnx"):
        export.render("pickle", TinyBatchNormTask(), {}, {})
