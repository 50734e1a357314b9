"""Long-polling that holds no thread: ``GET clients/{id}/task/?wait=S``.

The answer itself comes from an ordinary DRF view (authentication, permissions, errors and the
schema stay DRF's), run on the shared thread pool for a moment. When it says "nothing yet" (204)
and the device asked to wait, the request parks on an asyncio event of this process: no thread,
no database connection. One channel-layer subscription per process (``fedplatform.events``)
wakes the parked polls of a run when a round opens or the run changes, and each asks the view again.
"""
from __future__ import annotations

import asyncio
import logging
import time

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIRequest
from django.http import JsonResponse

from fedplatform.errors import Invalid
from fedplatform.events import WAKE_GROUP, relay
from fedplatform.handlers import release_connection

from clients.models import GONE_STATUSES

from . import device_input
from .models import TERMINAL_RUN_STATUSES

log = logging.getLogger("fedplatform.longpoll")
# Channel-layer group memberships expire (a day, by default): renew well before.
RESUBSCRIBE_SECONDS = 600


def wakes_devices(kind: str, data: dict) -> bool:
    """Whether an event can give a parked device something to do (``Waker.dispatch`` acts on
    exactly these): every process that emits events asks this (``RoundsConfig.ready``)."""
    if kind == "round.opened":
        return True
    if kind == "client.status":
        return data.get("status") in GONE_STATUSES
    if kind == "run.changed":
        return data.get("status") in TERMINAL_RUN_STATUSES
    return False


class Waker:
    """Per process: parked polls by run and client, woken by the run's events."""

    def __init__(self) -> None:
        self._parked: dict[int, dict[int, asyncio.Event]] = {}
        self._last_event: dict[int, float] = {}  # run -> when its last waking event arrived
        self._ended: dict[int, tuple[str, float]] = {}  # run -> (terminal status, when seen)
        self._listener: asyncio.Task | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None:  # a new event loop (tests): start afresh
            self._loop, self._listener, self._lock = loop, None, asyncio.Lock()
        async with self._lock:
            if self._listener is not None and not self._listener.done():
                return
            layer = get_channel_layer()
            if layer is None:
                raise ImproperlyConfigured("long polls wait on the channel layer: set CHANNEL_LAYERS")
            channel = await layer.new_channel()
            await layer.group_add(WAKE_GROUP, channel)
            self._listener = loop.create_task(self._listen(layer, channel))
        relay.ensure_started()

    async def _listen(self, layer, channel: str) -> None:
        renewed = time.monotonic()
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=RESUBSCRIBE_SECONDS / 2)
            except asyncio.TimeoutError:
                message = None
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("long-poll listener: receive failed")
                await asyncio.sleep(1)
                continue
            if time.monotonic() - renewed > RESUBSCRIBE_SECONDS:
                await layer.group_add(WAKE_GROUP, channel)
                renewed = time.monotonic()
            if message is not None:
                self.dispatch(message.get("event", ""), message.get("data") or {})

    def dispatch(self, kind: str, data: dict) -> None:
        if kind == "round.opened":
            # Only the selected clients have work now, unless newcomers may fill free places.
            self.wake(data.get("run"), None if data.get("open_places") else set(data.get("expected") or []))
        elif kind == "client.status" and data.get("status") in GONE_STATUSES:
            # A kicked or departed device hears it at once (its next look is refused), not
            # when its wait runs out.
            client_id = data.get("id")
            self.wake(data.get("run"), {client_id} if client_id is not None else set())
        elif kind == "run.changed" and data.get("status") in TERMINAL_RUN_STATUSES:
            # Every parked device of the run is told at once, from the event: a thousand devices
            # asking the database again in the same second would cost seconds of CPU. Other run
            # changes give no idle device work by themselves; a round they let open wakes its own.
            run_id = data.get("id")
            if run_id is not None:
                self._ended[run_id] = (data["status"], time.monotonic())
                self.wake(run_id, None)

    def ended(self, run_id: int, since: float) -> str | None:
        """The terminal status of a run this process saw end after ``since``, or None."""
        status, at = self._ended.get(run_id, (None, -1.0))
        return status if at >= since else None

    def wake(self, run_id: int | None, clients: set[int] | None) -> None:
        if run_id is None:  # an event of no run parks nobody
            return
        self._last_event[run_id] = time.monotonic()
        parked = self._parked.get(run_id)
        if not parked:
            return
        for client_id in list(parked) if clients is None else [c for c in clients if c in parked]:
            parked.pop(client_id).set()

    async def wait(self, run_id: int, client_id: int, timeout: float, *, since: float = 0.0) -> bool:
        """Park until the run's next event, or ``timeout``; True when woken. An event that came
        after ``since`` (when the caller last looked) counts as a wake at once: it may have been
        the one the caller waits for, arriving between its look and this call."""
        await self.start()
        if self._last_event.get(run_id, -1.0) >= since:
            return True
        event = self._parked.setdefault(run_id, {}).setdefault(client_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            parked = self._parked.get(run_id)
            if parked is not None and parked.get(client_id) is event:
                del parked[client_id]
                if not parked:
                    del self._parked[run_id]


waker = Waker()


def _requested_wait(request) -> float:
    try:
        return device_input.parse_wait(request.GET.get("wait"), longest=settings.FEDPLATFORM["LONG_POLL_MAX"])
    except Invalid:
        return 0.0  # not parked: the view itself answers a malformed wait with a 400


# Set on a request once it has been parked and woken: its view's next look (``was_woken``) need
# not record the device as seen again.
_WOKEN = "fedplatform_woken_from_park"


def was_woken(request) -> bool:
    """Whether this look at a device's task follows a park that an event or the timeout ended."""
    return getattr(request, _WOKEN, False)


def long_poll(view_class):
    """An async view around a DRF view that answers 204 when there is nothing to do."""
    sync_view = view_class.as_view()

    def answer(request, args, kwargs):
        try:
            response = sync_view(request, *args, **kwargs)
            if hasattr(response, "render"):
                response.render()
            return response
        finally:
            if isinstance(request, ASGIRequest):
                release_connection()

    async def view(request, *args, **kwargs):
        # Under ASGI the view runs on the shared pool (a request holds no thread of its own);
        # under WSGI, and Django's test client, a request owns its thread: use that one.
        ask = sync_to_async(answer, thread_sensitive=not isinstance(request, ASGIRequest))
        started = time.monotonic()
        give_up = started + _requested_wait(request)
        parked = 0.0
        if give_up > started:
            await waker.start()  # listening before the first look, so no event falls between

        def held(response):
            response["X-Poll-Held"] = f"{parked:.3f}"  # seconds parked, for load measurements
            return response

        while True:
            looked = time.monotonic()
            response = await ask(request, args, kwargs)
            park = getattr(response, "park", None)  # (run, client, longest wait) on a 204
            if response.status_code != 204 or park is None:
                return held(response)
            run_id, client_id, longest = park
            give_up = min(give_up, started + longest)
            remaining = give_up - time.monotonic()
            if remaining <= 0.05:
                return held(response)
            since = time.monotonic()
            woken = await waker.wait(run_id, client_id, remaining, since=looked)
            setattr(request, _WOKEN, True)
            parked += time.monotonic() - since
            ended = waker.ended(run_id, since=looked)
            if ended is not None:
                return held(JsonResponse({"code": f"run_{ended}", "detail": f"run {run_id} is {ended}"}, status=410))
            if not woken:
                # Nothing happened: the first answer still holds, and looking again would double
                # the cost of every idle poll. A round that opened at this very instant is seen
                # by the device's next poll, which follows at once.
                return held(response)

    # Function attributes (as Django's as_view sets them), which the type system cannot declare.
    view.cls = view_class  # type: ignore[attr-defined]  # drf-spectacular documents the DRF view this wraps
    view.initkwargs = {}  # type: ignore[attr-defined]
    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view
