"""FedProx's proximal term, applied around any training loop.

FedProx (Li et al., 2020) has each client minimise ``loss(w) + (mu/2) * ||w - w_global||^2``. The
term's gradient, ``mu * (w - w_global)``, is added to every parameter's gradient by a hook, so it
works with a task's own training loop as well as the built-in one: whatever calls ``backward()``
on the model's parameters gets the proximal gradient.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def proximal_term(model: nn.Module, mu: float) -> Iterator[None]:
    """Within the block, gradients of ``model``'s parameters include ``mu * (w - w_at_entry)``."""
    if mu <= 0:
        yield
        return
    handles = []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        anchor = param.detach().clone()

        def hook(grad: torch.Tensor, param: torch.Tensor = param, anchor: torch.Tensor = anchor) -> torch.Tensor:
            return grad + mu * (param.detach() - anchor.to(param.device))

        handles.append(param.register_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
