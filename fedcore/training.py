"""Local training and evaluation loops used by the worker (and by tests/simulations)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

OnBatch = Callable[[int, int, int, float], None]

# A cross-entropy this large means the weights blew up (a sane classifier's is a few units even when
# it is confidently wrong); an update from there would wreck the global model, finite or not.
DIVERGED_LOSS = 1e6


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available else cpu; "cuda[:N]" fails loudly without CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {name!r} requested but CUDA is not available "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use 'cpu' or 'auto'"
            )
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda[:N]'")


def _model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _check_data(x: torch.Tensor, y: torch.Tensor) -> None:
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"need the same non-zero number of inputs and labels, got {len(x)} and {len(y)}")


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    device: torch.device | str,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    on_batch: OnBatch | None = None,
    drop_last: bool = False,
) -> dict:
    """Train in place with SGD; return last-epoch {"loss", "accuracy", "examples"}.

    ``drop_last`` skips each epoch's final partial batch (BatchNorm cannot train on one row).
    Batches come from a seeded per-epoch shuffle (weight init and dropout are the
    caller's business). The data stays where it is and is moved one batch at a time,
    so large datasets need not fit in GPU memory. Afterwards the model is back on its
    original device and in eval() mode, ready to be serialised or evaluated.
    Raises FloatingPointError if the loss becomes NaN/inf or passes DIVERGED_LOSS (training
    diverged: the update would be useless, or worse).
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    _check_data(x, y)
    device = torch.device(device)
    original = _model_device(model)
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = len(x)
    num_batches = n // batch_size if drop_last and n >= batch_size else math.ceil(n / batch_size)
    try:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            loss_sum, correct, seen = 0.0, 0, 0
            for b in range(num_batches):
                idx = order[b * batch_size : (b + 1) * batch_size]
                xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                loss.backward()
                optimizer.step()
                value = loss.item()
                if not math.isfinite(value) or value > DIVERGED_LOSS:
                    raise FloatingPointError(
                        f"loss became {value:.4g} at epoch {epoch}, batch {b}; lower the learning rate"
                    )
                loss_sum += value * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
                seen += len(idx)
                if on_batch is not None:
                    on_batch(epoch, b, num_batches, value)
    finally:
        model.to(original).eval()
    return {"loss": loss_sum / seen, "accuracy": correct / seen, "examples": n}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    device: torch.device | str,
    batch_size: int = 512,
) -> dict:
    """Mean cross-entropy and accuracy over (x, y); model left in eval() on its original device."""
    _check_data(x, y)
    device = torch.device(device)
    original = _model_device(model)
    model.to(device).eval()
    loss_sum, correct = 0.0, 0
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(device, non_blocking=True)
            yb = y[start : start + batch_size].to(device, non_blocking=True)
            logits = model(xb)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    finally:
        model.to(original)
    return {"loss": loss_sum / len(x), "accuracy": correct / len(x), "examples": len(x)}
