"""A trained model out, in formats other tools read: safetensors for any model, ONNX for a model the
task can trace. Pure functions, arrays in and bytes out: the server's engine and ``manage.py
export_model`` share them, and neither the formats nor the task know anything of Django.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fedcore.state import load_arrays
from fedcore.tasks import Task, seeded_model

FORMATS = ("safetensors", "onnx")
FILE_SUFFIX = {"safetensors": ".safetensors", "onnx": ".onnx"}


class NotExportable(ValueError):
    """The task's model cannot be written in the asked format (ONNX needs an example input)."""


def to_safetensors(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """The model's tensors under their state_dict names, each in its own dtype (integer buffers such
    as BatchNorm's ``num_batches_tracked`` stay integers), so ``load_state_dict(strict=True)`` on
    the task's fresh model takes the file as it is. ``metadata`` is free text kept in the header."""
    from safetensors.numpy import save  # noqa: PLC0415 - only exports need it

    # The format stores raw C-order bytes. Not np.ascontiguousarray: it makes a 0-d buffer 1-d.
    tensors = {name: np.asarray(array, order="C") for name, array in arrays.items()}
    return save(tensors, metadata=dict(metadata) if metadata else None)


def example_inputs(task: Task, config: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
    """The task's example batch as a tuple of model arguments; NotExportable when it gives none."""
    example = task.example_input(config)
    if example is None:
        name = getattr(task, "title", "") or type(task).__name__
        raise NotExportable(
            f"the task ({name}) gives no example input, so its model cannot be exported to ONNX; "
            "implement example_input() in the task, or download safetensors"
        )
    inputs = example if isinstance(example, tuple) else (example,)
    if not inputs or not all(isinstance(x, torch.Tensor) and x.dim() >= 1 for x in inputs):
        raise NotExportable("the task's example_input() must be a batch tensor, or a tuple of them")
    return inputs


def _input_names(count: int) -> list[str]:
    return ["input"] if count == 1 else [f"input_{i}" for i in range(count)]


def to_onnx(task: Task, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """The model with these weights as an ONNX graph (eval mode: BatchNorm uses its running
    statistics, dropout is off). Inputs are named ``input`` (``input_0``, ``input_1``, ... for a
    model of several) and the output ``output``; the first dimension of every input is a dynamic
    batch, so the file takes any batch size, whatever the size of the task's example."""
    inputs = example_inputs(task, config)
    # Its initial weights are replaced at once; seeding only leaves the caller's RNG untouched.
    model = seeded_model(task, config, seed=0)
    load_arrays(model, arrays)
    model.eval()
    batch = torch.export.Dim("batch", min=1)  # one Dim for all inputs: they share the batch
    with torch.no_grad():
        program = torch.onnx.export(
            model, inputs, dynamo=True, verbose=False,
            input_names=_input_names(len(inputs)), output_names=["output"],
            dynamic_shapes=tuple({0: batch} for _ in inputs),
        )
    if program is None:  # only the legacy exporter (dynamo=False) returns nothing
        raise RuntimeError("torch.onnx.export returned no program")
    # Weights inline: one self-contained file (protobuf caps it at 2 GB, far above these models).
    return program.model_proto.SerializeToString()


def render(fmt: str, task: Task, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
           metadata: Mapping[str, str] | None = None) -> bytes:
    """The file for ``fmt`` (one of FORMATS)."""
    if fmt == "safetensors":
        return to_safetensors(arrays, metadata)
    if fmt == "onnx":
        return to_onnx(task, config, arrays)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
