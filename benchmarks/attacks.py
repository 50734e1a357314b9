"""Poisoning attacks for the simulated federation: what an attacking device does to its contribution.

``experiments.simulate`` applies these to the first ``attackers`` clients of a run in every round
(clients 0 and 1 of 10 in the ``poisoning-fmnist`` grid), after their local training and before
their update goes through error feedback and the codec, so an attack reaches the strategy exactly
as an upload that the server accepted would: in the run's upload encoding, with finite values and
an example count the server lets the device claim. Each attack is a pure function:

- ``sign_flip``: the device sends the negation of the delta it trained (a step up the loss).
- ``scale1000``: it sends its trained delta times 1000 (a boosted update that swamps a mean).
- ``gaussian``: it sends noise instead of its delta: independent N(0, sigma^2) per coordinate of
  every float tensor, with sigma = GAUSSIAN_FACTOR * ||delta|| / sqrt(d) (``d`` the number of
  float coordinates), so the noise's norm is about GAUSSIAN_FACTOR times that of the honest delta
  it replaces: ten times larger than an honest update, yet a thousandth of the scaling attack.
- ``label_flip``: it trains, through the task's own data path and training loop, on its share
  with every training label ``y`` replaced by ``9 - y``, and sends that delta as it is.
- ``max_weight``: it sends the sign-flipped delta and claims the largest example count the server
  accepts (``max_weight_claim``). The count alone, on an honest delta, would only reweight honest
  work; paired with a harmful delta it shows what the weight buys against each rule.

Only float tensors are touched: integer buffers travel raw and carry no learning signal.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from fedplatform.limits import MAX_NUM_EXAMPLES

if TYPE_CHECKING:  # the grids import ATTACKS from here without loading torch
    import torch

    from fedcore.tasks import DeviceData

Arrays = Mapping[str, np.ndarray]

SCALE = 1000.0
GAUSSIAN_FACTOR = 10.0
NUM_CLASSES = 10  # Fashion-MNIST and CIFAR-10: label flipping maps y to NUM_CLASSES - 1 - y

ATTACKS = ("sign_flip", "scale1000", "gaussian", "label_flip", "max_weight")


def _floats(delta: Arrays) -> list[str]:
    return [name for name, array in delta.items() if np.issubdtype(array.dtype, np.floating)]


def sign_flip(delta: Arrays) -> dict[str, np.ndarray]:
    """The negated delta (float tensors; the rest as they are)."""
    floats = set(_floats(delta))
    return {name: (-array if name in floats else array) for name, array in delta.items()}


def scale(delta: Arrays, factor: float = SCALE) -> dict[str, np.ndarray]:
    """The delta times ``factor`` (float tensors, in their own dtype)."""
    floats = set(_floats(delta))
    return {name: ((array.astype(np.float64) * factor).astype(array.dtype) if name in floats else array)
            for name, array in delta.items()}


def gaussian_sigma(delta: Arrays, factor: float = GAUSSIAN_FACTOR) -> float:
    """The noise's standard deviation: ``factor * ||delta|| / sqrt(d)`` over the float coordinates."""
    names = _floats(delta)
    coordinates = sum(delta[name].size for name in names)
    if not coordinates:
        return 0.0
    norm = math.sqrt(sum(float(np.square(delta[name], dtype=np.float64).sum()) for name in names))
    return factor * norm / math.sqrt(coordinates)


def gaussian(delta: Arrays, rng: np.random.Generator, factor: float = GAUSSIAN_FACTOR) -> dict[str, np.ndarray]:
    """Noise in place of the delta's float tensors: N(0, sigma^2) each coordinate (``gaussian_sigma``)."""
    sigma = gaussian_sigma(delta, factor)
    floats = set(_floats(delta))
    return {name: (rng.normal(0.0, sigma, size=array.shape).astype(array.dtype) if name in floats else array)
            for name, array in delta.items()}


def flip_labels(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """``num_classes - 1 - y`` for every label."""
    return (num_classes - 1) - labels


def label_flip(data: DeviceData, num_classes: int = NUM_CLASSES) -> DeviceData:
    """The device's data with its training labels flipped; its held-out split as it is (what it
    reports about the global model stays honest)."""
    from fedcore.tasks import TensorSplit

    train = data.train
    if not isinstance(train, TensorSplit):
        raise TypeError("label flipping needs a TensorSplit training split")
    return dataclasses.replace(data, train=TensorSplit(train.x, flip_labels(train.y, num_classes)))


def max_weight_claim(num_examples: int) -> int:
    """The largest example count the server lets a device claim for an update, whatever it holds.

    An update's weight is its ``X-Num-Examples``, which the server bounds by the count the device
    registered (``rounds.device_input.parse_num_examples``: more is refused with
    ``too_many_examples``), and registration bounds that count by ``MAX_NUM_EXAMPLES`` (10^9,
    ``clients/serializers.py``) and nothing else: the server cannot see a device's data. A device
    that registers with 10^9 examples may therefore claim 10^9 for every update. Approval
    (``FEDPLATFORM_REQUIRE_APPROVAL``) shows an operator the registered count, but no rule refuses it.
    """
    return MAX_NUM_EXAMPLES


def poison_data(attack: str | None, data: DeviceData) -> DeviceData:
    """What an attacking device trains on."""
    if attack is not None and attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    return label_flip(data) if attack == "label_flip" else data


def poison_update(
    attack: str | None, delta: Arrays, num_examples: int, *, rng: np.random.Generator,
) -> tuple[Arrays, int]:
    """What an attacking device uploads, as (delta, claimed example count), given what it trained."""
    if attack is None or attack == "label_flip":  # label flipping is done to the data, before training
        return delta, num_examples
    if attack == "sign_flip":
        return sign_flip(delta), num_examples
    if attack == "scale1000":
        return scale(delta, SCALE), num_examples
    if attack == "gaussian":
        return gaussian(delta, rng), num_examples
    if attack == "max_weight":
        return sign_flip(delta), max_weight_claim(num_examples)
    raise ValueError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
