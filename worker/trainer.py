"""One round of local work: evaluate the base model, train it with the task, compute the delta."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from fedcore.state import load_arrays, state_to_arrays, subtract
from fedcore.strategies.proximal import proximal_term
from fedcore.tasks import DeviceData, OnBatch, Task, TrainParams
from worker.task import Hyperparameters


@dataclass(frozen=True)
class RoundResult:
    delta: dict[str, np.ndarray]
    num_examples: int
    metrics: dict[str, float | int]  # the X-Metrics header's content


def _prefixed(prefix: str, metrics: dict) -> dict[str, float]:
    # Only finite numbers travel: the server refuses anything else in X-Metrics.
    return {f"{prefix}_{name}": float(value) for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def local_round(
    task: Task,
    model: torch.nn.Module,
    base: dict[str, np.ndarray],
    data: DeviceData,
    hp: Hyperparameters,
    *,
    seed: int,
    device: torch.device,
    on_batch: OnBatch | None = None,
) -> RoundResult:
    """Evaluate ``base`` on the held-out split, train from it, and return trained - base.

    The evaluation is of the *base* (global) model, before any local training: that is what
    federated evaluation measures, and it is comparable across workers.
    """
    load_arrays(model, base)
    metrics: dict[str, float | int] = {"eval_examples": data.num_eval}
    if data.num_eval:
        eval_started = time.perf_counter()
        metrics.update(_prefixed("eval", task.evaluate(model, data.eval, device=device)))
        # Timed so the dashboard's round timeline can show where a straggler spends its round.
        metrics["eval_seconds"] = round(time.perf_counter() - eval_started, 3)
        model.eval()
    started = time.perf_counter()
    params = TrainParams(epochs=hp.local_epochs, batch_size=hp.batch_size, learning_rate=hp.learning_rate,
                         momentum=hp.momentum, weight_decay=hp.weight_decay, seed=seed)
    with proximal_term(model, hp.proximal_mu):  # FedProx; a no-op at mu = 0
        trained = task.train(model, data, params, device=device, on_batch=on_batch)
    metrics.update(_prefixed("train", trained or {}))
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)
    delta = subtract(state_to_arrays(model), base)
    return RoundResult(delta=delta, num_examples=data.num_train, metrics=metrics)
