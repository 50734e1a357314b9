"""Global versions as standard files (safetensors, ONNX): asked for by a request, rendered by the
engine, kept in storage.

The first request for a (version, format) records a pending ``ModelExport`` row and enqueues its
task; an engine worker claims the row with a conditional UPDATE (``pending -> running``), renders
the file outside any transaction and marks it done; every later request downloads the stored file.
The claim is a lease: a worker killed mid-render leaves a ``running`` row whose claim ages, and the
next request for it hands it back to the queue, as one whose task was lost is asked for again.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.utils import timezone

from fedcore import export
from fedcore.tasks import TaskError, canonical_config
from fedplatform.errors import Invalid

from . import blobs, dispatch, runtask
from .models import ExportFormat, ExportStatus, ModelExport, ModelVersion

log = logging.getLogger("fedplatform.engine")

FORMATS = tuple(ExportFormat.values)
# A running claim older than this is a dead worker's: a ResNet-50 renders in well under a minute.
EXPORT_LEASE = timedelta(minutes=5)
# A pending row whose task has not run for this long is presumed lost (the queue was down, the
# process died before enqueueing) and its task is enqueued again; a duplicate finds it claimed.
REQUEST_TTL = timedelta(seconds=30)


def download_name(version: ModelVersion, fmt: str) -> str:
    return f"run-{version.run_id}-v{version.number}{export.FILE_SUFFIX[fmt]}"


def _check_exportable(version: ModelVersion, fmt: str) -> None:
    if fmt not in FORMATS:
        raise Invalid(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}", "bad_format")
    if fmt != ExportFormat.ONNX:
        return
    run = version.run
    try:
        export.example_inputs(runtask.task_of(run), run.task_config)
    except TaskError as err:
        raise Invalid(str(err), "task_unavailable") from err
    except export.NotExportable as err:
        raise Invalid(str(err), "not_exportable") from err


def export_request(*, version: ModelVersion, fmt: str) -> ModelExport:
    """The version's export in ``fmt`` as it stands, asking the engine for it when it is new, when
    its task looks lost, or when its worker died. A 400 ``not_exportable`` at once for ONNX of a
    task that gives no example input (nothing is recorded)."""
    found = ModelExport.objects.filter(version=version, format=fmt).first()
    if found is None:
        _check_exportable(version, fmt)
        # Race-safe: of two requests that both found nothing, the unique constraint lets one
        # create the row, and get_or_create hands the other that row.
        found, created = ModelExport.objects.get_or_create(version=version, format=fmt)
        if created:
            dispatch.export_later(found.pk)
        return found
    now = timezone.now()
    if found.status == ExportStatus.RUNNING and found.claimed_at and found.claimed_at < now - EXPORT_LEASE:
        # Conditional, so of many polls (or a worker that just finished) one hands it back, once.
        if ModelExport.objects.filter(pk=found.pk, status=ExportStatus.RUNNING, claimed_at=found.claimed_at).update(
            status=ExportStatus.PENDING, claimed_at=None, requested_at=now
        ):
            log.warning("export %s: its worker went silent; rendering it again", found.pk)
            dispatch.export_later(found.pk)
            found.status = ExportStatus.PENDING
    elif found.status == ExportStatus.PENDING and found.requested_at < now - REQUEST_TTL:
        if ModelExport.objects.filter(pk=found.pk, status=ExportStatus.PENDING, requested_at=found.requested_at).update(
            requested_at=now
        ):
            dispatch.export_later(found.pk)
    return found


def render_version(version: ModelVersion, fmt: str) -> bytes:
    """The file itself: the heavy part, for engine workers and ``manage.py export_model`` only."""
    run = version.run
    arrays = blobs.decoded_version(version.blob.name, version.sha256)
    # Free text in the safetensors header: which model these tensors are, for whoever finds the file.
    metadata = {
        "run": str(run.pk), "version": str(version.number), "task": run.task,
        "task_config": canonical_config(run.task_config),
    }
    return export.render(fmt, runtask.task_of(run), run.task_config, arrays, metadata)


def export_render(*, export_id: int) -> str | None:
    """Render a pending export, exactly once however many tasks run for it; returns the outcome
    (``done`` or ``failed``), or None when another worker has it or it is already finished."""
    claimed_at = timezone.now()
    if not ModelExport.objects.filter(pk=export_id, status=ExportStatus.PENDING).update(
        status=ExportStatus.RUNNING, claimed_at=claimed_at
    ):
        return None
    row = ModelExport.objects.select_related("version__run").get(pk=export_id)
    started = time.perf_counter()
    try:
        data = render_version(row.version, row.format)
    except Exception as exc:  # recorded for the operator: a broken export must not break the engine
        log.exception("run %s: exporting version %s as %s failed", row.version.run_id, row.version.number, row.format)
        result: dict[str, Any] = {"status": ExportStatus.FAILED, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    else:
        digest = blobs.sha256(data)
        # Outside any transaction: a slow storage write must not hold the database's write lock.
        name = blobs.store(f"runs/{row.version.run_id}/exports", data, digest, suffix=export.FILE_SUFFIX[row.format])
        result = {"status": ExportStatus.DONE, "blob": name, "sha256": digest, "size_bytes": len(data), "error": ""}
    # Only the current claim may finish it: a worker whose lease was taken back finds nothing to update.
    if not ModelExport.objects.filter(pk=export_id, status=ExportStatus.RUNNING, claimed_at=claimed_at).update(
        finished_at=timezone.now(), **result
    ):
        log.warning("export %s: claim lost while rendering; another worker renders it", export_id)
        return None
    log.info(
        "run %s: version %s exported as %s (%s, %.2f s)", row.version.run_id, row.version.number, row.format,
        result["status"], time.perf_counter() - started,
    )
    return result["status"]
