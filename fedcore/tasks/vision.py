"""The built-in task: image classification with the model zoo on the bundled image datasets."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from fedcore.data import DATASETS, DatasetNotFound, load_dataset, to_tensors
from fedcore.nets import ARCHITECTURES, build_model
from fedcore.tasks.base import DataRequest, DeviceData, Task, TaskConfigError, TaskDataError, TensorSplit
from fedcore.tasks.splits import describe, device_indices, training_subset


class ImageClassification(Task):
    title = "Image classification: small CNN or ResNet-18/50 (CIFAR form) on Fashion-MNIST or CIFAR-10"
    # train_examples > 0: every device first draws the same seeded subset of the training split,
    # then partitions it (quick experiments at a chosen data size; 0 = the whole split).
    config_defaults = MappingProxyType({"arch": "cnn", "dataset": "fashion-mnist", "train_examples": 0})

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        values = super().validate_config(config)
        if values["arch"] not in ARCHITECTURES:
            raise TaskConfigError(f"unknown arch {values['arch']!r}; choose from {list(ARCHITECTURES)}")
        if values["dataset"] not in DATASETS:
            raise TaskConfigError(f"unknown dataset {values['dataset']!r}; choose from {list(DATASETS)}")
        if values["train_examples"] < 0:
            raise TaskConfigError(f"train_examples must be 0 (all) or positive, got {values['train_examples']}")
        return values

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        info = DATASETS[config["dataset"]]
        return build_model(config["arch"], in_channels=info.in_channels, num_classes=info.num_classes,
                           image_size=info.image_size)

    def load_data(self, config: Mapping[str, Any], request: DataRequest) -> DeviceData:
        name = config["dataset"]
        wanted = request.options.get("dataset")
        if wanted and wanted != name:  # the worker's --dataset: refuse to join a run on other data
            raise TaskDataError(f"the run trains on {name!r}, not --dataset {wanted!r}")
        try:
            x, y = load_dataset(name, root=request.root, train=True, download=request.download)
        except DatasetNotFound as err:
            raise TaskDataError(
                f"dataset {name!r} not found ({err}).\n  Get it with --download (needs internet), or point "
                f"--data at the dataset file or directory (e.g. --data /usr/share/datasets/{name})."
            ) from err
        except (ValueError, OSError) as err:  # corrupt files, a failed download
            raise TaskDataError(f"cannot read {name}: {err}") from err
        if config.get("train_examples", 0):
            keep = training_subset(len(y), config["train_examples"], request.seed)
            x, y = x[keep], y[keep]
        train_idx, eval_idx = device_indices(y, request)
        info = DATASETS[name]
        train = TensorSplit(*to_tensors(x[train_idx], y[train_idx], info))
        held_out = TensorSplit(*to_tensors(x[eval_idx], y[eval_idx], info))
        return DeviceData(train, held_out, description=describe(request, name, len(train), len(held_out)))

    def test_data(self, config: Mapping[str, Any], *, root: Path | None = None) -> TensorSplit | None:
        name = config["dataset"]
        try:
            x, y = load_dataset(name, root=root, train=False)
        except DatasetNotFound:
            return None
        return TensorSplit(*to_tensors(x, y, DATASETS[name]))

    def example_input(self, config: Mapping[str, Any]) -> torch.Tensor:
        info = DATASETS[config["dataset"]]
        return torch.zeros(1, info.in_channels, info.image_size, info.image_size)


image_classification = ImageClassification()
