"""Domain events: the one way the domain says what changed; the dashboard and long-polls listen.

``emit(kind, payload)`` is called inside the transaction that made the change, and nothing is
announced that was rolled back. Every subscriber joins ``EVENTS_GROUP`` on the channel layer and
receives ``{"type": "fed.event", "event": kind, "data": payload}``. How an event gets there:

- with ``REDIS_URL`` the channel layer crosses processes: the event is sent after commit;
- without it the layer lives in one process's memory, and the process that made the change may
  be an engine worker, not a server. The event is then an ``OutboxEvent`` row, written in the same
  transaction, and each server process's relay reads new rows every ``RELAY_SECONDS`` and sends
  them on its own in-memory layer. Latency is that interval; nothing is lost across processes.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

EVENTS_GROUP = "fed.events"
# The few events that give a parked device something to do (a round opened, the device or its run
# is gone) also go to this group, which the long-polls of every server process listen to: they
# never read the stream of everyone's status changes, which a joining fleet makes by the thousand.
WAKE_GROUP = "fed.wake"
_wake_rule: Callable[[str, dict[str, Any]], bool] = lambda kind, payload: False  # noqa: E731


def set_wake_rule(rule: Callable[[str, dict[str, Any]], bool]) -> None:
    """Which events wake parked devices; the domain that parks them says (``rounds.longpoll``)."""
    global _wake_rule
    _wake_rule = rule


RELAY_SECONDS = 0.05
# Rows committed out of id order (PostgreSQL) are caught by re-reading this many seconds back.
RELAY_LOOKBACK_SECONDS = 3.0
RELAY_BATCH = 500
log = logging.getLogger("fedplatform.events")


def uses_outbox() -> bool:
    return not settings.REDIS_URL


def message(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "fed.event", "event": kind, "data": payload}


async def send_event(layer, kind: str, payload: dict[str, Any], wakes: bool) -> None:
    await layer.group_send(EVENTS_GROUP, message(kind, payload))
    if wakes:
        await layer.group_send(WAKE_GROUP, message(kind, payload))


class Publisher:
    """Per process: sends committed events on the channel layer from a thread of its own.

    A request that changed something does not wait for Redis. Sent from the request's thread,
    each event held it until the process's event loop found time for the group_send: 21 ms at
    the median with 2,500 devices joining one process, which then ran out of threads. Here events
    wait in a queue and one thread, with an event loop of its own, sends them in the order they
    were committed. At exit what is queued is still sent (a command emits and ends).
    """

    BATCH = 500

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._queued = 0
        self._sent = 0
        self._progress = threading.Condition()

    def put(self, kind: str, payload: dict[str, Any], wakes: bool = False) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
                self._thread.start()
                atexit.register(self.flush)
            self._queued += 1
        self._queue.put((kind, payload, wakes))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event put so far is sent (or failed and logged); False on timeout."""
        with self._progress:
            return self._progress.wait_for(lambda: self._sent >= self._queued, timeout=timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            loop.run_until_complete(self._send(batch))
            with self._progress:
                self._sent += len(batch)
                self._progress.notify_all()

    @staticmethod
    async def _send(batch: list[tuple[str, dict[str, Any], bool]]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        for kind, payload, wakes in batch:
            try:
                await send_event(layer, kind, payload, wakes)
            except Exception:  # a dashboard outage must never fail a device's request
                log.exception("could not publish %s", kind)


publisher = Publisher()


_outbox_insert = None


def emit(kind: str, payload: dict[str, Any]) -> None:
    """Announce ``kind`` once the current transaction commits (never on rollback)."""
    wakes = _wake_rule(kind, payload)
    if uses_outbox():
        global _outbox_insert
        if _outbox_insert is None:
            from .models import OutboxEvent  # noqa: PLC0415 - models load after settings
            from .prepared import PreparedInsert  # noqa: PLC0415

            _outbox_insert = PreparedInsert(OutboxEvent)
        _outbox_insert.create(kind=kind, payload=payload, wakes=wakes)
    else:
        transaction.on_commit(lambda: publisher.put(kind, payload, wakes))


def prune_outbox(*, older_than_seconds: float = 600) -> int:
    """Forget relayed events; a relay only ever looks a few seconds back."""
    from .models import OutboxEvent  # noqa: PLC0415

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    old = OutboxEvent.objects.filter(created_at__lt=cutoff)
    if not old.exists():  # read first: a DELETE takes SQLite's write lock even when it finds nothing
        return 0
    deleted, _ = old.delete()
    return deleted


def run_db(func, *args, **kwargs):
    """Run a short ORM call from async code on the shared thread pool (never a thread per
    request), and give its connection back afterwards."""

    def call():
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call, thread_sensitive=False)()


class OutboxRelay:
    """Per server process: sends the outbox's new rows on the process's channel layer."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def ensure_started(self) -> None:
        if not uses_outbox():
            return
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop  # a server has one loop for life; tests start a new one per test
            # From the moment it is asked for: an event made between this call and the relay's
            # first read (a socket that has just connected, then a change) is still relayed.
            self._task = loop.create_task(self._run(since=timezone.now()))

    @staticmethod
    def _last_before(moment) -> int:
        """The id of the newest event made before ``moment``: the relay starts after it."""
        from .models import OutboxEvent  # noqa: PLC0415

        older = OutboxEvent.objects.filter(created_at__lt=moment).order_by("-id")
        return older.values_list("id", flat=True).first() or 0

    @staticmethod
    def _rows_after(last: int) -> list[tuple[int, str, dict, bool]]:
        from .models import OutboxEvent  # noqa: PLC0415

        newer = OutboxEvent.objects.filter(id__gt=last).order_by("id")
        return list(newer.values_list("id", "kind", "payload", "wakes")[:RELAY_BATCH])

    @staticmethod
    def _late_rows(last: int, seen: set[int]) -> list[tuple[int, str, dict, bool]]:
        """Rows with an id below ones already relayed, committed after them (PostgreSQL hands out
        ids before commit; SQLite commits one writer at a time, in id order)."""
        from .models import OutboxEvent  # noqa: PLC0415

        if connection.vendor == "sqlite":
            return []
        recent = timezone.now() - timedelta(seconds=RELAY_LOOKBACK_SECONDS)
        window = OutboxEvent.objects.filter(id__lte=last, created_at__gte=recent)
        missing = [i for i in window.values_list("id", flat=True) if i not in seen]
        if not missing:
            return []
        rows = OutboxEvent.objects.filter(id__in=missing).order_by("id")
        return list(rows.values_list("id", "kind", "payload", "wakes"))

    async def _run(self, since) -> None:
        layer = get_channel_layer()
        if layer is None:  # as _send: with no channel layer there is nobody to tell
            log.error("no channel layer (CHANNEL_LAYERS): events are not relayed")
            return
        last = await run_db(self._last_before, since)
        seen: dict[int, float] = {}  # ids relayed in the last few seconds, for late commits
        looked_back = time.monotonic()
        while True:
            try:
                rows = await run_db(self._rows_after, last)
                now = time.monotonic()
                if now - looked_back > 1.0:
                    rows = await run_db(self._late_rows, last, set(seen)) + rows
                    looked_back = now
                for row_id, kind, payload, wakes in rows:
                    if row_id in seen:
                        continue
                    seen[row_id] = now
                    last = max(last, row_id)
                    await send_event(layer, kind, payload, wakes)
                for row_id in [i for i, at in seen.items() if now - at > 2 * RELAY_LOOKBACK_SECONDS]:
                    del seen[row_id]
                if len(rows) >= RELAY_BATCH:
                    continue  # more are waiting: no pause
            except asyncio.CancelledError:
                raise
            except Exception:  # keep relaying: a locked database or a bad row must not stop it
                log.exception("outbox relay failed; retrying")
            await asyncio.sleep(RELAY_SECONDS)


relay = OutboxRelay()
