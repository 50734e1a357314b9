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


def request_tick(run_id: int, *, coalesce: bool = False) -> None:
    """Ask the engine to look at a run: one conditional UPDATE, and one task per burst of requests.

    ``coalesce``: for devices joining or coming back, which arrive by the hundred a second and can
    only let a round open: the tick runs ``COALESCE_SECONDS`` later and covers every such request
    until it starts (with a thousand devices joining, ticks went from one per request the engine
    could serve to a few a second). Other requests (an update, a departure) want the round moved on
    now: they bring a coalesced tick forward.

    On PostgreSQL the mark waits for the caller's transaction to commit. The engine locks a run's
    row before its clients' (opening a round), while a request that moves a client holds that
    client's row when it asks for a tick: marking the run inside would lock the two rows in the
    opposite order, and PostgreSQL would end one of them as a deadlock. SQLite's one write lock
    is taken whole at BEGIN, so there the mark stays in the caller's transaction (one write
    transaction, not two). A mark lost between commit and mark is found by the sweep.
    """
    coalesce = coalesce and not HUEY.immediate
    if connection.vendor == "postgresql" and not HUEY.immediate:
        transaction.on_commit(lambda: _mark_due(run_id, coalesce))
    else:
        _mark_due(run_id, coalesce)


# The queue's scheduler looks for due tasks once a second, so a coalesced tick runs 0.5 to 1.5 s
# after the first request it covers.
COALESCE_SECONDS = 0.5

# The mark is when the requested tick runs: now, or COALESCE_SECONDS ahead for a coalesced one.
# Conditional UPDATEs, compiled once (fedplatform.prepared): every state change that may let a
# run move on asks for a tick. A request for now also takes a mark that lies in the future.
_mark_now = PreparedUpdate(
    lambda pk, now, stale, later: (
        Run.objects.filter(
            Q(tick_requested_at__isnull=True) | Q(tick_requested_at__lt=stale) | Q(tick_requested_at__gt=later), pk=pk,
        ),
        {"tick_requested_at": now},
    ),
    int, datetime, datetime, datetime,
)
_mark_later = PreparedUpdate(
    lambda pk, at, stale: (
        Run.objects.filter(Q(tick_requested_at__isnull=True) | Q(tick_requested_at__lt=stale), pk=pk),
        {"tick_requested_at": at},
    ),
    int, datetime, datetime,
)


def _mark_due(run_id: int, coalesce: bool = False) -> None:
    from .tasks import tick  # noqa: PLC0415 - tasks import the engine, which imports this

    now = timezone.now()
    stale = now - TICK_REQUEST_TTL
    if coalesce:
        if _mark_later.run(run_id, now + timedelta(seconds=COALESCE_SECONDS), stale):
            _after_commit(lambda: tick.schedule((run_id,), delay=COALESCE_SECONDS))
    elif _mark_now.run(run_id, now, stale, now):
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
