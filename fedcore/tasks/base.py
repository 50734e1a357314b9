"""The task interface: what a user implements to federate their own model and data.

A task is a Python object (usually an instance of a :class:`Task` subclass) named by an import
path, ``package.module:attribute``, installed both on the server and on every device. The
platform never looks inside the data: it asks the task for a model, a device's share of the
data, one round of local training, an evaluation, and optionally the server's test data.
Like the rest of fedcore, a task never imports Django.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

OnBatch = Callable[[int, int, int, float], None]  # (epoch, batch, batches per epoch, loss)


class TaskError(ValueError):
    """A task cannot be used as asked; the message says why and what would work."""


class TaskNotFound(TaskError):
    """The import path names nothing importable here (or nothing that is a task)."""


class TaskConfigError(TaskError):
    """A run's task configuration is invalid for the task."""


class TaskDataError(TaskError):
    """This device has no usable data for the task (missing files, an empty partition, ...)."""


@dataclass(frozen=True)
class DataRequest:
    """How a device's owner asked its data to be prepared (the worker's command line).

    A task uses what applies to it: one whose devices hold their own files may ignore the
    partition fields and read ``root``; ``options`` are the worker's ``--task-option KEY=VALUE``.
    """

    root: Path | None = None
    download: bool = False
    partition: str = "iid"
    alpha: float = 0.5
    shards_per_partition: int = 2
    num_partitions: int = 1
    partition_index: int = 0
    seed: int = 0
    limit: int | None = None
    eval_fraction: float = 0.1
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class TensorSplit:
    """Inputs and integer labels, the data the default training and evaluation loops take."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise TaskDataError(f"{len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class DeviceData:
    """One device's data: ``train`` and ``eval`` are whatever the task's ``train`` and
    ``evaluate`` take; ``len()`` of each is its number of examples (FedAvg's weight)."""

    train: Any
    eval: Any | None = None
    description: str = ""  # one line for the worker's log

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_eval(self) -> int:
        return 0 if self.eval is None else len(self.eval)


@dataclass(frozen=True)
class TrainParams:
    """A round's hyper-parameters, as the server sent them."""

    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0


class Task:
    """Subclass, set ``title`` and ``config_defaults``, and implement :meth:`build_model` and
    :meth:`load_data`. The default :meth:`train` and :meth:`evaluate` fit a classifier with
    cross-entropy and SGD on :class:`TensorSplit` data; override them for anything else."""

    title: str = ""
    # Every configuration key the task takes, with its default; a run's configuration may set
    # any of them (values of the same type) and nothing else.
    config_defaults: Mapping[str, Any] = MappingProxyType({})
    # The default train loop skips each epoch's last partial batch (a model with BatchNorm
    # cannot train on a batch of one row).
    drop_last_batch: bool = False

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The full configuration (defaults filled in), or TaskConfigError saying what is valid.

        Override to check ranges or choices, calling this first.
        """
        if not isinstance(config, Mapping):
            raise TaskConfigError(f"the task configuration must be a JSON object, got {type(config).__name__}")
        unknown = sorted(set(config) - set(self.config_defaults))
        if unknown:
            valid = ", ".join(sorted(self.config_defaults)) or "none"
            raise TaskConfigError(f"unknown configuration keys {unknown}; this task takes: {valid}")
        values = dict(self.config_defaults)
        for key, value in config.items():
            values[key] = _checked_value(key, value, self.config_defaults[key])
        return values

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        """A fresh model; initial weights come from torch's global RNG, which the caller seeds."""
        raise NotImplementedError

    def load_data(self, config: Mapping[str, Any], request: DataRequest) -> DeviceData:
        """This device's training (and held-out) data; TaskDataError when there is none."""
        raise NotImplementedError

    def train(
        self, model: nn.Module, data: DeviceData, params: TrainParams, *,
        device: torch.device, on_batch: OnBatch | None = None,
    ) -> dict[str, float]:
        """Train ``model`` in place for one round; return metrics (``loss``, ``accuracy``, ...).

        Call ``on_batch`` after each batch: it reports progress and raises when the server
        aborts the round. Raise FloatingPointError if training diverges.
        """
        from fedcore.training import train  # noqa: PLC0415 - keeps this module light to import

        split = _tensor_split(data.train, "train")
        result = train(
            model, split.x, split.y, epochs=params.epochs, batch_size=params.batch_size,
            lr=params.learning_rate, device=device, momentum=params.momentum,
            weight_decay=params.weight_decay, seed=params.seed, on_batch=on_batch,
            drop_last=self.drop_last_batch,
        )
        return {"loss": float(result["loss"]), "accuracy": float(result["accuracy"])}

    def evaluate(self, model: nn.Module, data: Any, *, device: torch.device) -> dict[str, float]:
        """Metrics of ``model`` on ``data`` (a device's held-out split or the server's test data);
        ``loss`` and ``accuracy`` are the ones the dashboard charts."""
        from fedcore.training import evaluate  # noqa: PLC0415

        split = _tensor_split(data, "evaluation")
        result = evaluate(model, split.x, split.y, device=device)
        return {"loss": float(result["loss"]), "accuracy": float(result["accuracy"])}

    def test_data(self, config: Mapping[str, Any], *, root: Path | None = None) -> Any | None:
        """The server's held-out test data, or None: the server then skips its evaluation."""
        return None

    def example_input(self, config: Mapping[str, Any]) -> torch.Tensor | tuple[torch.Tensor, ...] | None:
        """A batch the model accepts, for ONNX export; None when the model is not exportable."""
        return None


def _checked_value(key: str, value: Any, default: Any) -> Any:
    expected = type(default)
    if isinstance(default, bool) or default is None:
        ok = default is None or isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise TaskConfigError(f"{key!r} must be a {expected.__name__} (like its default {default!r}), got {value!r}")
    return value


def _tensor_split(data: Any, what: str) -> TensorSplit:
    if not isinstance(data, TensorSplit):
        raise TypeError(
            f"the default {what} loop takes TensorSplit data, got {type(data).__name__}; "
            f"return TensorSplit from load_data or override the task's {'train' if what == 'train' else 'evaluate'}()"
        )
    return data
