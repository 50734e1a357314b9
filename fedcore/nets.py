"""Model zoo: the architectures a federated task may train."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18, resnet50

ARCHITECTURES = ("cnn", "resnet18", "resnet50")


class SmallCNN(nn.Module):
    """Two conv blocks + two linear layers (~422k parameters on 28x28x1 input)."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 4  # two floor-halving max-pools
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _cifar_resnet(factory, in_channels: int, num_classes: int) -> nn.Module:
    # CIFAR form: a 3x3 stride-1 stem and no max-pool keep 32x32 inputs from being
    # downsampled to 8x8 before the first residual stage. weights=None: nothing is downloaded.
    model = factory(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def _build(arch: str, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    if arch == "cnn":
        return SmallCNN(in_channels, num_classes, image_size)
    if arch == "resnet18":
        return _cifar_resnet(resnet18, in_channels, num_classes)
    return _cifar_resnet(resnet50, in_channels, num_classes)


def build_model(
    arch: str,
    *,
    in_channels: int,
    num_classes: int = 10,
    image_size: int = 28,
    seed: int | None = None,
) -> nn.Module:
    """Build a fresh model; the same seed gives identical initial weights.

    Seeding happens inside fork_rng so callers' global RNG state is left untouched.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHITECTURES}")
    if in_channels < 1 or num_classes < 1:
        raise ValueError("in_channels and num_classes must be >= 1")
    if arch == "cnn" and image_size < 4:
        raise ValueError("the cnn needs image_size >= 4")
    if seed is None:
        return _build(arch, in_channels, num_classes, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(arch, in_channels, num_classes, image_size)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameter elements (buffers such as BatchNorm stats excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
