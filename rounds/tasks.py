"""The engine's tasks on the Huey queue. Each is a thin call into ``rounds.engine``, which claims
its work with conditional UPDATEs, so a task that runs twice, or on two workers at once, is safe."""
import threading

from django.conf import settings
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task
from huey.exceptions import RetryTask

from . import engine, exports


@db_task(name="fedplatform.tick")
def tick(run_id: int) -> None:
    engine.run_tick(run_id=run_id)


# One model pass at a time per engine worker (an evaluation or an export): its other threads stay
# free for ticks and closes, which must never queue behind a test-set pass or an ONNX trace.
_torch_slot = threading.Semaphore(1)


@db_task(name="fedplatform.evaluate")
def evaluate(version_id: int) -> None:
    if not _torch_slot.acquire(blocking=False):
        raise RetryTask(delay=1)
    try:
        engine.version_evaluate(version_id=version_id)
    finally:
        _torch_slot.release()


@db_task(name="fedplatform.export")
def model_export(export_id: int) -> None:
    if not _torch_slot.acquire(blocking=False):
        raise RetryTask(delay=1)
    try:
        exports.export_render(export_id=export_id)
    finally:
        _torch_slot.release()


@db_task(name="fedplatform.sweep")
def sweep() -> None:
    engine.sweep_all()


@db_periodic_task(crontab(), name="fedplatform.schedule_sweeps")
def schedule_sweeps() -> None:
    """Huey's periodic tasks run once a minute; the sweep runs every SWEEP_SECONDS, so each minute
    schedules that minute's sweeps on the queue's scheduler."""
    every = max(1, int(settings.FEDPLATFORM["SWEEP_SECONDS"]))
    for delay in range(0, 60, every):
        sweep.schedule(delay=delay)
