"""Tasks by import path: loading one, listing the installed ones, and a model's manifest digest."""
from __future__ import annotations

import functools
import hashlib
import importlib
import json
import re
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

import torch

from fedcore.tasks.base import Task, TaskNotFound

BUILTIN_TASK = "fedcore.tasks.vision:image_classification"
BUILTIN_TASKS = (BUILTIN_TASK,)
ENTRY_POINT_GROUP = "fedplatform.tasks"  # how an installed package announces its tasks
_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_REQUIRED = ("build_model", "load_data", "validate_config", "train", "evaluate")


def check_path(path: str) -> str:
    if not isinstance(path, str) or len(path) > 200 or not _PATH.match(path):
        raise TaskNotFound(f"{path!r} is not a task path; write it as package.module:attribute")
    return path


@functools.cache
def load_task(path: str) -> Task:
    """The task at ``package.module:attribute`` (a Task instance, or a class built with no arguments)."""
    module_name, _, attribute = check_path(path).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise TaskNotFound(
            f"cannot import task {path!r} ({err}); install the package that provides it on this "
            "machine, or put its folder on PYTHONPATH"
        ) from err
    try:
        task = getattr(module, attribute)
    except AttributeError as err:
        raise TaskNotFound(f"module {module_name!r} has no attribute {attribute!r}") from err
    if isinstance(task, type):
        task = task()
    missing = [name for name in _REQUIRED if not callable(getattr(task, name, None))]
    if missing:
        raise TaskNotFound(f"{path!r} is not a task: it lacks {missing} (subclass fedcore.tasks.Task)")
    return task


def installed_tasks(extra: Iterable[str] = ()) -> list[str]:
    """Task paths this machine offers: the built-ins, those installed packages declare in the
    ``fedplatform.tasks`` entry-point group, and ``extra`` (the server's FEDPLATFORM_TASKS)."""
    declared = [ep.value.strip() for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    seen: dict[str, None] = {}
    for path in (*BUILTIN_TASKS, *declared, *extra):
        if path:
            seen.setdefault(path, None)
    return list(seen)


def canonical_config(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def seeded_model(task: Task, config: Mapping[str, Any], seed: int) -> torch.nn.Module:
    """The task's model with initial weights fixed by ``seed``; callers' RNG state is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return task.build_model(config)


def manifest_digest(manifest: Mapping[str, tuple[str, tuple[int, ...]]]) -> str:
    """A short fingerprint of a model's tensor names, dtypes and shapes: devices and server
    compare it to know they build the same model, whatever import path each calls the task."""
    rows = [[name, dtype, list(shape)] for name, (dtype, shape) in sorted(manifest.items())]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()[:32]
