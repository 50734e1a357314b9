"""A run's task on the server: which tasks are offered, checking a run's choice, and the model
the task builds (its initial weights, its manifest, its test data)."""
from __future__ import annotations

import functools
import json
import logging
from typing import Any

import numpy as np
from django.conf import settings

from fedcore import codec
from fedcore.state import buffer_names, state_to_arrays
from fedcore.tasks import (
    Task, TaskConfigError, TaskError, canonical_config, installed_tasks, load_task, manifest_digest, seeded_model,
)
from fedplatform.errors import Invalid

log = logging.getLogger("fedplatform.tasks")


def offered_tasks() -> list[str]:
    return installed_tasks(settings.FEDPLATFORM["TASKS"])


def preload() -> None:
    """Import every offered task's code now, at start-up (PyTorch with it), not in the first
    request that names it: what start-up loads is then frozen out of the garbage collector's way
    (``fedplatform.runtime.settle_heap``). A task that fails to load is reported when it is used."""
    for path in offered_tasks():
        try:
            load_task(path)
        except TaskError:
            pass


def describe(path: str) -> dict[str, Any]:
    """What the API and the new-run dialog show of one offered task."""
    try:
        task = load_task(path)
    except TaskError as err:
        return {"path": path, "title": "", "config_defaults": {}, "available": False, "error": str(err)}
    return {"path": path, "title": task.title, "config_defaults": dict(task.config_defaults), "available": True,
            "error": ""}


def resolve(path: str, config: Any) -> tuple[dict[str, Any], str]:
    """The full configuration and the manifest digest of a run on ``path``; a 400 naming what is
    valid when the task is not offered, cannot be loaded, or refuses the configuration."""
    offered = offered_tasks()
    if path not in offered:
        raise Invalid(f"unknown task {path!r}; offered tasks: {', '.join(offered)}", "unknown_task")
    try:
        task = load_task(path)
    except TaskError as err:
        raise Invalid(str(err), "task_unavailable") from err
    try:
        values = task.validate_config(config if config is not None else {})
    except TaskConfigError as err:
        raise Invalid(f"invalid configuration for {path}: {err}", "invalid_task_config") from err
    return values, manifest_digest(manifest(path, canonical_config(values)))


def task_of(run) -> Task:
    return load_task(run.task)


@functools.lru_cache(maxsize=32)
def manifest(path: str, config_json: str) -> codec.Manifest:
    """Names, dtypes and shapes every upload for this model must match exactly."""
    model = seeded_model(load_task(path), json.loads(config_json), seed=0)
    return codec.manifest_of(state_to_arrays(model))


def run_manifest(run) -> codec.Manifest:
    return manifest(run.task, canonical_config(run.task_config))


@functools.lru_cache(maxsize=32)
def lossless_names(path: str, config_json: str) -> frozenset[str]:
    """The model's buffers: statistics, not trained weights, which every upload sends as float32
    whatever the round's encoding (``codec.encode``'s ``exact``; the worker's ``buffer_names``)."""
    return buffer_names(seeded_model(load_task(path), json.loads(config_json), seed=0))


def run_lossless(run) -> frozenset[str]:
    return lossless_names(run.task, canonical_config(run.task_config))


def initial_arrays(run) -> dict[str, np.ndarray]:
    return state_to_arrays(seeded_model(task_of(run), run.task_config, seed=run.seed))
