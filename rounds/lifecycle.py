"""Runs as operators see them: create, reconfigure, start, pause, resume, stop.

Each is a short transaction and a tick request: anything heavy (evaluating the initial model,
opening the first round) is the engine's work.
"""
from django.db import transaction
from django.utils import timezone

from fedplatform.audit import audit_record
from fedplatform.errors import Conflict, Invalid
from fedplatform.events import emit

from fedcore.tasks.registry import BUILTIN_TASK

from . import broadcast, dispatch, runstrategy, runtask
from .engine import store_version
from .models import TERMINAL_RUN_STATUSES, TUNABLE_FIELDS, RoundStatus, Run, RunConfig, RunStatus
from .shapes import run_shape


def _tunables(run: Run) -> dict:
    return {field: getattr(run, field) for field in TUNABLE_FIELDS}


def run_create(
    *, author: str = "", task: str = BUILTIN_TASK, task_config: dict | None = None,
    arch: str | None = None, dataset: str | None = None, **config,
) -> Run:
    """Create a run in ``draft`` with its initial global model (version 0) and config version 1.

    ``arch`` and ``dataset`` are shorthand for the built-in image task's configuration. The
    initial model's baseline evaluation is queued; the request does not wait for it.
    """
    task_config = dict(task_config or {})
    if arch is not None or dataset is not None:
        if task != BUILTIN_TASK:
            raise Invalid(f"arch and dataset configure the built-in task {BUILTIN_TASK}; put {task}'s "
                          "settings in task_config", "invalid_task_config")
        task_config.update({k: v for k, v in (("arch", arch), ("dataset", dataset)) if v is not None})
    values, digest = runtask.resolve(task, task_config)
    strategy = config.get("strategy", Run._meta.get_field("strategy").default)
    config["strategy_config"] = runstrategy.checked_config(strategy, config.get("strategy_config"))
    run = Run(task=task, task_config=values, manifest_digest=digest, **config)
    run.full_clean()
    arrays = runtask.initial_arrays(run)
    with transaction.atomic():
        run.save()
        RunConfig.objects.create(run=run, version=1, values=_tunables(run), changed=[], author=author)
        version = store_version(run=run, number=0, arrays=arrays)
        version.save()
        dispatch.evaluate_later(version.pk)
        audit_record(actor=author, action="run.create", target_type="run", target_id=run.pk, run_id=run.pk,
                     details={"name": run.name, "task": task, "task_config": values, **_tunables(run)})
        emit("run.changed", run_shape(run))
    broadcast.broadcast_ensure(version=version)  # version 0's replica is the exact initial model
    return run


def run_configure(*, run: Run, changes: dict, author: str) -> RunConfig:
    """Record a new configuration version; rounds that open from now on use it.

    The open round keeps the version it opened with (its tasks are already out).
    """
    changes = dict(changes)
    name = changes.pop("name", None)  # a label, not configuration: renaming makes no version
    if name is not None:
        with transaction.atomic():
            Run.objects.filter(pk=run.pk).update(name=name)
            audit_record(actor=author, action="run.rename", target_type="run", target_id=run.pk, run_id=run.pk,
                         details={"name": name})
    unknown = set(changes) - set(TUNABLE_FIELDS)
    if unknown:
        raise Invalid(f"cannot change {', '.join(sorted(unknown))} while a run exists", "immutable_field")
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.is_terminal:
            raise Conflict(f"run {run.pk} is {run.status}; its configuration is final", "run_closed")
        if "strategy_config" in changes:
            changes["strategy_config"] = runstrategy.checked_config(run.strategy, changes["strategy_config"])
        changed = sorted(f for f, v in changes.items() if getattr(run, f) != v)
        for field, value in changes.items():
            setattr(run, field, value)
        run.full_clean()
        run.save(update_fields=list(changes) or None)
        latest = run.configs.latest("version")
        if not changed:
            return latest
        config = RunConfig.objects.create(
            run=run, version=latest.version + 1, values=_tunables(run), changed=changed, author=author
        )
        audit_record(actor=author, action="run.configure", target_type="run", target_id=run.pk, run_id=run.pk,
                     details={"config_version": config.version, **{f: getattr(run, f) for f in changed}})
        emit("run.changed", run_shape(run))
        # Fewer rounds or clients may let the run finish or a round open now.
        dispatch.request_tick(run.pk)
    return config


RUN_MOVES = {
    "start": ({RunStatus.DRAFT}, RunStatus.RUNNING),
    "pause": ({RunStatus.RUNNING}, RunStatus.PAUSED),
    "resume": ({RunStatus.PAUSED}, RunStatus.RUNNING),
    "stop": ({RunStatus.DRAFT, RunStatus.RUNNING, RunStatus.PAUSED}, RunStatus.STOPPED),
}


def run_control(*, run: Run, action: str, actor: str = "") -> Run:
    """Start, pause, resume or stop a run; refuses moves its current status does not allow."""
    allowed_from, to = RUN_MOVES[action]
    now = timezone.now()
    changes: dict = {"status": to}
    if action == "start":
        changes["started_at"] = now
    if to in TERMINAL_RUN_STATUSES:
        changes["finished_at"] = now
    with transaction.atomic():
        if not Run.objects.filter(pk=run.pk, status__in=allowed_from).update(**changes):
            run.refresh_from_db()
            raise Conflict(f"cannot {action} a run that is {run.status}", "illegal_run_transition")
        run.refresh_from_db()
        audit_record(actor=actor, action=f"run.{action}", target_type="run", target_id=run.pk, run_id=run.pk)
        if to == RunStatus.STOPPED:
            # The open round will never be aggregated; its late uploads get 409 round_closed.
            run.round_set.filter(status=RoundStatus.OPEN).update(status=RoundStatus.ABANDONED, closed_at=now)
        emit("run.changed", run_shape(run))
        if to == RunStatus.RUNNING:
            dispatch.request_tick(run.pk)
    return run
