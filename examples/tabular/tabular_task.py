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

# Each feature's range as the dataset's documentation publishes it (scikit-learn's DESCR), in
# the order of its columns. Scaling by a published range needs no statistics of the devices'
# data, which no one holds in one place.
RANGES = np.array([
    (6.981, 28.11), (9.71, 39.28), (43.79, 188.5), (143.5, 2501.0), (0.053, 0.163),
    (0.019, 0.345), (0.0, 0.427), (0.0, 0.201), (0.106, 0.304), (0.05, 0.097),
    (0.112, 2.873), (0.36, 4.885), (0.757, 21.98), (6.802, 542.2), (0.002, 0.031),
    (0.002, 0.135), (0.0, 0.396), (0.0, 0.053), (0.008, 0.079), (0.001, 0.03),
    (7.93, 36.04), (12.02, 49.54), (50.41, 251.2), (185.2, 4254.0), (0.071, 0.223),
    (0.027, 1.058), (0.0, 1.252), (0.0, 0.291), (0.156, 0.664), (0.055, 0.208),
])
FEATURES = len(RANGES)


def scale(x: np.ndarray) -> np.ndarray:
    """Each measurement to [-1, 1] over its published range, on a log scale (areas span 30x)."""
    low, high = np.log1p(RANGES[:, 0]), np.log1p(RANGES[:, 1])
    return (2 * (np.log1p(x) - low) / (high - low) - 1).astype(np.float32)


def rows(train: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    x = scale(x)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return (x_train, y_train) if train else (x_test, y_test)


def _split(x: np.ndarray, y: np.ndarray) -> TensorSplit:
    return TensorSplit(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))


class BreastCancerMLP(Task):
    title = "Breast-cancer diagnosis: an MLP on 30 tabular features (scikit-learn's Wisconsin data)"
    config_defaults = MappingProxyType({"hidden": 32})

    def validate_config(self, config):
        values = super().validate_config(config)
        if not 1 <= values["hidden"] <= 4096:
            raise TaskConfigError("hidden must be between 1 and 4096")
        return values

    def build_model(self, config):
        return nn.Sequential(
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
