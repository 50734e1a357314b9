"""One round of local work: evaluate the base model, train it, and compute the delta."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fedcore.state import load_arrays, state_to_arrays, subtract
from fedcore.training import evaluate, train
from worker.localdata import LocalData
from worker.task import Hyperparameters


@dataclass(frozen=True)
class RoundResult:
    delta: dict[str, np.ndarray]
    num_examples: int
    metrics: dict[str, float | int]  # the X-Metrics header's content


def local_round(
    model: torch.nn.Module,
    base: dict[str, np.ndarray],
    data: LocalData,
    hp: Hyperparameters,
    *,
    seed: int,
    device: torch.device,
    on_batch: Callable[[int, int, int, float], None] | None = None,
) -> RoundResult:
    """Evaluate ``base`` on the held-out split, train from it, and return trained - base.

    The evaluation is of the *base* (global) model, before any local training: that is what
    federated evaluation measures, and it is comparable across workers.
    """
    load_arrays(model, base)
    metrics: dict[str, float | int] = {"eval_examples": data.num_eval}
    if data.num_eval:
        eval_started = time.perf_counter()
        ev = evaluate(model, data.eval_x, data.eval_y, device=device)
        # Timed so the dashboard's round timeline can show where a straggler spends its round.
        metrics.update(eval_loss=float(ev["loss"]), eval_accuracy=float(ev["accuracy"]),
                       eval_seconds=round(time.perf_counter() - eval_started, 3))
    started = time.perf_counter()
    tr = train(
        model, data.train_x, data.train_y,
        epochs=hp.local_epochs, batch_size=hp.batch_size, lr=hp.learning_rate, device=device,
        momentum=hp.momentum, weight_decay=hp.weight_decay, seed=seed, on_batch=on_batch,
    )
    metrics.update(
        train_loss=float(tr["loss"]),
        train_accuracy=float(tr["accuracy"]),
        train_seconds=round(time.perf_counter() - started, 3),
    )
    delta = subtract(state_to_arrays(model), base)
    return RoundResult(delta=delta, num_examples=data.num_train, metrics=metrics)
