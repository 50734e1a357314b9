"""Server optimizers: how the combined delta of a round moves the global model (pure functions).

The combined delta ``d`` is the negative of a pseudo-gradient (Reddi et al., 2021, "Adaptive
Federated Optimization", Algorithm 2). With ``x`` the global model:

- ``sgd``:      x += lr * d                                    (lr = 1 is FedAvg)
- ``momentum``: v = beta * v + d;  x += lr * v                 (FedAvgM, Hsu et al., 2019)
- ``adagrad``:  m = b1 * m + (1 - b1) * d;  v = v + d^2
- ``adam``:     m as above;  v = b2 * v + (1 - b2) * d^2
- ``yogi``:     m as above;  v = v - (1 - b2) * d^2 * sign(v - d^2)
  and for the three adaptive ones x += lr * m / (sqrt(v) + tau), with v starting at tau^2, as
  in the paper (no bias correction).

The state (``m``, ``v``) is kept in float32 named ``"m:" + tensor`` and ``"v:" + tensor``: what the
server stores beside each version is exactly what the next round reads, so a restart or an audit
reproduces every version bit for bit. Arithmetic is float64, rounded once into the model's dtype.
Tensors in ``plain`` (BatchNorm statistics, integer counters) skip the optimizer: they take
``x + d`` like FedAvg, since a running variance moved by Adam is no statistic of anything.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fedcore.aggregation import Arrays

OPTIMIZERS = ("sgd", "momentum", "adagrad", "adam", "yogi")
State = dict[str, np.ndarray]


def _plain_step(base: np.ndarray, delta: np.ndarray) -> np.ndarray:
    if np.issubdtype(base.dtype, np.floating):
        total = base.astype(np.float64)
        total += delta  # widened as it is added: the same sum as adding its float64 copy
        return total.astype(base.dtype)
    return (base + delta).astype(base.dtype)


def step(
    optimizer: str,
    base: Arrays,
    delta: Arrays,
    state: Mapping[str, np.ndarray],
    params: Mapping[str, float],
    *,
    plain: frozenset[str] = frozenset(),
) -> tuple[dict[str, np.ndarray], State]:
    """The next model and optimizer state from ``base``, the round's combined ``delta`` and the state
    the previous round left (empty at the start)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown server optimizer {optimizer!r}; choose from {OPTIMIZERS}")
    if list(base) != list(delta):
        raise ValueError("delta and base disagree on tensor names")
    model: dict[str, np.ndarray] = {}
    new_state: State = {}
    lr = float(params.get("server_lr", 1.0))
    for name in base:
        x, d = base[name], delta[name]
        if name in plain or not np.issubdtype(x.dtype, np.floating):
            model[name] = _plain_step(x, d)
            continue
        if optimizer == "sgd":
            # In place, with one float64 temporary at most: the largest tensor's copies were the
            # peak of a ResNet-18 close. The same arithmetic as (x + lr * d) in float64.
            total = x.astype(np.float64)
            total += d if lr == 1.0 else np.multiply(d, lr, dtype=np.float64)
            model[name] = total.astype(x.dtype)
            continue
        d64 = np.asarray(d, dtype=np.float64)
        if optimizer == "momentum":
            v = _state(state, f"v:{name}", x.shape, 0.0) * float(params["server_momentum"]) + d64
            new_state[f"v:{name}"] = v.astype(np.float32)
            move = lr * v.astype(np.float32).astype(np.float64)
        else:
            move = _adaptive(optimizer, name, x.shape, d64, state, params, new_state) * lr
        model[name] = (x.astype(np.float64) + move).astype(x.dtype)
    return model, new_state


def _adaptive(
    optimizer: str, name: str, shape: tuple, d: np.ndarray, state: Mapping[str, np.ndarray],
    params: Mapping[str, float], new_state: State,
) -> np.ndarray:
    b1, b2, tau = float(params["beta1"]), float(params.get("beta2", 0.0)), float(params["tau"])
    m = b1 * _state(state, f"m:{name}", shape, 0.0) + (1.0 - b1) * d
    v = _state(state, f"v:{name}", shape, tau * tau)
    squared = d * d
    if optimizer == "adagrad":
        v = v + squared
    elif optimizer == "adam":
        v = b2 * v + (1.0 - b2) * squared
    else:  # yogi: v moves towards d^2 additively, so it grows slowly where gradients are sparse
        v = v - (1.0 - b2) * squared * np.sign(v - squared)
    m32, v32 = m.astype(np.float32), v.astype(np.float32)
    new_state[f"m:{name}"], new_state[f"v:{name}"] = m32, v32
    # The stored (float32) moments drive the step, so a replay from storage takes the same step.
    return m32.astype(np.float64) / (np.sqrt(v32.astype(np.float64)) + tau)


def _state(state: Mapping[str, np.ndarray], key: str, shape: tuple, initial: float) -> np.ndarray:
    value = state.get(key)
    if value is None:
        return np.full(shape, initial, dtype=np.float64)
    if value.shape != shape:
        raise ValueError(f"strategy state {key} has shape {value.shape}, the model {shape}")
    return np.asarray(value, dtype=np.float64)
