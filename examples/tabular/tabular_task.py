"""A fedplatform task on tabular data: breast-cancer diagnosis from 30 cell measurements with a
small MLP, on the Wisconsin dataset that scikit-learn ships (nothing is downloaded).

Every device holds a copy of the 455 training rows and keeps its own partition of them (the
worker's --num-partitions / --partition-index / --partition flags); the server holds the 114
test rows. A real deployment would read each device's own file in ``load_data`` instead.
"""
from types import MappingProxyType

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn

from fedcore.tasks import DeviceData, Task, TaskConfigError, TensorSplit, device_indices

FEATURES = 30


def rows(train: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    # Measurements span five orders of magnitude; log1p brings them to one scale without
    # statistics that only the union of the devices' data would give.
    x = np.log1p(x).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return (x_train, y_train) if train else (x_test, y_test)


def _split(x: np.ndarray, y: np.ndarray) -> TensorSplit:
    return TensorSplit(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))


class BreastCancerMLP(Task):
    title = "Breast-cancer diagnosis: an MLP on 30 tabular features (scikit-learn's Wisconsin data)"
    config_defaults = MappingProxyType({"hidden": 32})
    drop_last_batch = True  # BatchNorm cannot train on a last batch of one row

    def validate_config(self, config):
        values = super().validate_config(config)
        if not 1 <= values["hidden"] <= 4096:
            raise TaskConfigError("hidden must be between 1 and 4096")
        return values

    def build_model(self, config):
        return nn.Sequential(
            # Learns the features' scales from the devices' batches; FedAvg averages its running
            # statistics like any other tensor, so no one needs the union of the data.
            nn.BatchNorm1d(FEATURES),
            nn.Linear(FEATURES, config["hidden"]),
            nn.ReLU(),
            nn.Linear(config["hidden"], 2),
        )

    def load_data(self, config, request):
        x, y = rows(train=True)
        train, held_out = device_indices(y, request)
        return DeviceData(
            train=_split(x[train], y[train]), eval=_split(x[held_out], y[held_out]),
            description=f"{len(train)} train + {len(held_out)} eval rows, "
                        f"{int(y[train].sum())} benign / {int(len(train) - y[train].sum())} malignant",
        )

    def test_data(self, config, *, root=None):
        return _split(*rows(train=False))

    def example_input(self, config):
        return torch.zeros(1, FEATURES)  # one row; the exported model takes any batch size


task = BreastCancerMLP()
