"""The server's task JSON (docs/api.md), parsed once so the rest of the worker uses attributes."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class BadTask(ValueError):
    """The task JSON lacks a field or has the wrong type: the server speaks another protocol."""


@dataclass(frozen=True)
class Hyperparameters:
    local_epochs: int
    batch_size: int
    learning_rate: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    proximal_mu: float = 0.0  # FedProx: the weight of the proximal term (0: none)


@dataclass(frozen=True)
class Task:
    round: int  # the round's id (used in URLs and heartbeats)
    round_number: int  # its position in the run (for people)
    run: int
    task: str  # the run's task, package.module:attribute
    task_config: dict[str, Any]
    manifest_digest: str
    base_version: int
    model_url: str
    upload_url: str
    upload_encoding: str
    seed: int
    hyperparameters: Hyperparameters
    deadline: str | None = None

    @classmethod
    def from_json(cls, body: Any) -> "Task":
        if not isinstance(body, dict):
            raise BadTask(f"task is not a JSON object: {body!r:.200}")
        try:
            hp = body["hyperparameters"]
            return cls(
                round=int(body["round"]),
                round_number=int(body["round_number"] if "round_number" in body else body["round"]),
                run=int(body["run"]),
                task=str(body["task"]),
                task_config=dict(body.get("task_config") or {}),
                manifest_digest=str(body.get("manifest_digest") or ""),
                base_version=int(body["base_version"]),
                model_url=str(body["model_url"]),
                upload_url=str(body["upload_url"]),
                upload_encoding=str(body.get("upload_encoding") or "float32"),
                seed=int(body.get("seed") or 0),
                deadline=body.get("deadline"),
                hyperparameters=Hyperparameters(
                    local_epochs=int(hp["local_epochs"]),
                    batch_size=int(hp["batch_size"]),
                    learning_rate=float(hp["learning_rate"]),
                    momentum=float(hp.get("momentum", 0.9)),
                    weight_decay=float(hp.get("weight_decay", 0.0)),
                    proximal_mu=_proximal_mu(hp.get("proximal_mu", 0.0)),
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadTask(f"malformed task ({type(exc).__name__}: {exc}): {body!r:.300}") from exc


def _proximal_mu(value: Any) -> float:
    mu = float(value)
    if not math.isfinite(mu) or mu < 0:
        raise ValueError(f"proximal_mu must be a finite number >= 0, got {value!r}")
    return mu
