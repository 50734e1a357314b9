"""Handing work to the engine: the only place that enqueues tasks.

Tasks are enqueued after the transaction that asked for them commits, so an engine worker never
looks for rows it cannot see yet. An enqueue that fails (the queue is down, the process dies) is
not lost work: the database says what is due, and the engine's sweep finds it.
With Huey's ``immediate`` mode (the unit tests) a task runs at once, in the caller.
"""
import logging
import threading
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from huey.contrib.djhuey import HUEY

from fedplatform.prepared import PreparedUpdate

from .models import Run

log = logging.getLogger("fedplatform.engine")

# A tick request older than this is presumed lost (its task never ran) and may be made again.
TICK_REQUEST_TTL = timedelta(seconds=10)


_immediate = threading.local()


def _after_commit(enqueue) -> None:
    if HUEY.immediate:
        # Run each task after the one that asked for it, never nested inside it, as a queue would.
        pending = getattr(_immediate, "pending", None)
        if pending is not None:
            pending.append(enqueue)
            return
        _immediate.pending = [enqueue]
        try:
            while _immediate.pending:
                _immediate.pending.pop(0)()
        finally:
            _immediate.pending = None
        return

    def send() -> None:
        try:
            enqueue()
        except Exception:  # the sweep finds what is due; a request must not fail over this
            log.exception("could not enqueue an engine task; the sweep will pick the work up")

    transaction.on_commit(send)


def request_tick(run_id: int) -> None:
    """Ask the engine to look at a run: one conditional UPDATE, and one task per burst of requests.

    On PostgreSQL the mark waits for the caller's transaction to commit. The engine locks a run's
    row before its clients' (opening a round), while a request that moves a client holds that
    client's row when it asks for a tick: marking the run inside would lock the two rows in the
    opposite order, and PostgreSQL would end one of them as a deadlock. SQLite's one write lock
    is taken whole at BEGIN, so there the mark stays in the caller's transaction (one write
    transaction, not two). A mark lost between commit and mark is found by the sweep.
    """
    if connection.vendor == "postgresql" and not HUEY.immediate:
        transaction.on_commit(lambda: _mark_due(run_id))
    else:
        _mark_due(run_id)


# One conditional UPDATE, compiled once (fedplatform.prepared): every state change that may let a
# run move on asks for a tick.
_mark = PreparedUpdate(
    lambda pk, now, stale: (
        Run.objects.filter(Q(tick_requested_at__isnull=True) | Q(tick_requested_at__lt=stale), pk=pk),
        {"tick_requested_at": now},
    ),
    int, datetime, datetime,
)


def _mark_due(run_id: int) -> None:
    now = timezone.now()
    if _mark.run(run_id, now, now - TICK_REQUEST_TTL):
        from .tasks import tick  # noqa: PLC0415 - tasks import the engine, which imports this

        _after_commit(lambda: tick(run_id))


def tick_at(run_id: int, when) -> None:
    """A tick at ``when`` (a round's deadline), on the queue's scheduler."""
    if HUEY.immediate:
        return  # nothing in the unit tests waits for a deadline to pass by itself
    from .tasks import tick  # noqa: PLC0415

    _after_commit(lambda: tick.schedule((run_id,), eta=when))


def evaluate_later(version_id: int) -> None:
    from .tasks import evaluate  # noqa: PLC0415

    _after_commit(lambda: evaluate(version_id))


def export_later(export_id: int) -> None:
    from .tasks import model_export  # noqa: PLC0415

    _after_commit(lambda: model_export(export_id))
