"""Conversions between torch state dicts and numpy arrays, plus per-tensor arithmetic.

Numpy is the exchange format because the codec and the server's aggregation work on
plain arrays; torch only appears at the edges (the worker's model).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


def state_to_arrays(model_or_state_dict: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Detached CPU numpy copies of every tensor, in state-dict order.

    bfloat16 tensors become float32 because numpy has no bfloat16 dtype.
    """
    state = (
        model_or_state_dict.state_dict()
        if isinstance(model_or_state_dict, torch.nn.Module)
        else model_or_state_dict
    )
    out: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        t = tensor.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        # clone() so the array never aliases live parameters.
        out[name] = t.to("cpu").clone().contiguous().numpy()
    return out


def _writable(a: np.ndarray) -> np.ndarray:
    # torch.from_numpy warns on read-only arrays and would share memory with the caller.
    return np.array(a, copy=True, order="C")


def arrays_to_state(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """CPU tensors (copies) for each array, keeping names and order."""
    return {name: torch.from_numpy(_writable(np.asarray(a))) for name, a in arrays.items()}


def load_arrays(model: torch.nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Load arrays into model in place: names and shapes must match exactly.

    Each array is cast to the dtype and device of the tensor it replaces, so float32
    arrays from the codec can be loaded into, e.g., a float16 model.
    """
    target = model.state_dict()
    missing = [k for k in target if k not in arrays]
    unexpected = [k for k in arrays if k not in target]
    if missing or unexpected:
        raise ValueError(f"state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    new_state = {}
    for name, current in target.items():
        a = np.asarray(arrays[name])
        if tuple(a.shape) != tuple(current.shape):
            raise ValueError(f"tensor {name!r} has shape {tuple(a.shape)}, model expects {tuple(current.shape)}")
        new_state[name] = torch.from_numpy(_writable(a)).to(dtype=current.dtype, device=current.device)
    model.load_state_dict(new_state, strict=True)


def _check_same_keys(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> None:
    if set(a) != set(b):
        raise ValueError(f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}")
    for name in a:
        if np.shape(a[name]) != np.shape(b[name]):
            raise ValueError(f"tensor {name!r} shapes differ: {np.shape(a[name])} vs {np.shape(b[name])}")


def subtract(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """a - b per tensor, result in a's dtype (integers stay integers, wrapping like numpy).

    Bool tensors use XOR so that add(b, subtract(a, b)) == a still holds.
    """
    _check_same_keys(a, b)
    out = {}
    for name, x in a.items():
        x, y = np.asarray(x), np.asarray(b[name])
        if x.dtype == np.bool_:
            out[name] = np.logical_xor(x, y)
        else:
            out[name] = np.subtract(x, y.astype(x.dtype, copy=False))
    return out


def add(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """a + b per tensor, result in a's dtype (bool tensors use XOR, see subtract)."""
    _check_same_keys(a, b)
    out = {}
    for name, x in a.items():
        x, y = np.asarray(x), np.asarray(b[name])
        if x.dtype == np.bool_:
            out[name] = np.logical_xor(x, y)
        else:
            out[name] = np.add(x, y.astype(x.dtype, copy=False))
    return out


def buffer_names(model: torch.nn.Module) -> frozenset[str]:
    """State-dict names of the model's buffers (BatchNorm statistics and the like): statistics,
    not trained weights, so uploads send them losslessly (see ``codec.encode``'s ``exact``)."""
    state = model.state_dict()
    return frozenset(name for name, _ in model.named_buffers() if name in state)
