"""ASGI handlers that keep a request's synchronous work off per-request threads.

Django's own ASGI handler opens a ``ThreadSensitiveContext`` per request: the request's
synchronous middleware, view and ``response.close()`` run in a thread created for that request
and joined after it. Each request then pays for a thread, and for a database connection opened
on it (SQLite's file and pragmas, a pool checkout on PostgreSQL): a few milliseconds of a
device's cheapest requests. Here a request's synchronous part runs in one call on the event
loop's shared pool (``ASGI_THREADS`` sizes it), whose threads, and their SQLite connections,
live on. On PostgreSQL the connection goes back to the pool at the end of each call.

Bodies are bounded here, while they arrive: Django's handler reads a whole body (into memory,
then a temporary file) before any view runs, so a view's limit would come too late. A declared
``Content-Length`` over the path's limit is answered 413 without reading the body, and a body
without one (chunked) is cut off with a 413 at the limit. The limit of a path is its view's
``max_body_bytes(**url_kwargs)`` when it has one (an update upload: its model's size), else
``FEDPLATFORM["MAX_REQUEST_BYTES"]``.
"""
import asyncio
import json
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.db import close_old_connections, connection
from django.urls import resolve, set_script_prefix

from .errors import error_response

log = logging.getLogger("fedplatform.requests")
# Requests that carry a body worth resolving a limit for; others get the default bound.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def release_connection() -> None:
    """Hand this thread's PostgreSQL connection back to the pool; SQLite's (cheap to keep,
    costly to reopen) stays with its thread, one per pool thread."""
    if connection.vendor != "sqlite":
        close_old_connections()


# Threads for synchronous request work, per process. All of them share one interpreter lock, so
# more threads do not buy more CPU; they overlap waits (PostgreSQL's round trips), and each one
# more makes every other wait longer for the lock again after its wait. On SQLite a request's
# waits are short, except for the write lock, which is handed from thread to thread: with 16
# threads, a round's 50 downloads at 1,000 devices each waited 40-60 ms for a lock that was free
# nine tenths of the time (the next writer waiting for the interpreter behind 15 other threads),
# and downloads' p99 was 180-330 ms; with 4 it is 93-151 ms, and every other request's tail
# shortened with it. PostgreSQL's requests wait for the database, and 6 threads did best there
# (5,000 devices on two processes: downloads' p99 200-238 ms, against 415 with 16).
DEFAULT_POOL_THREADS = {"sqlite": 4, "postgresql": 6}


def pool_threads() -> int:
    """``ASGI_THREADS``, or the default for the database this process uses."""
    configured = os.environ.get("ASGI_THREADS", "").strip()
    if configured:
        return int(configured)
    return DEFAULT_POOL_THREADS.get(connection.vendor, 6)


_pools: dict[int, ThreadPoolExecutor] = {}


def _ensure_pool() -> None:
    loop = asyncio.get_running_loop()
    if id(loop) not in _pools:
        _pools[id(loop)] = ThreadPoolExecutor(max_workers=pool_threads(), thread_name_prefix="request")
        loop.set_default_executor(_pools[id(loop)])


class BodyTooLarge(Exception):
    pass


class _BoundedReceive:
    """``receive`` for Django's body reader that gives up once the body passes ``limit``."""

    def __init__(self, receive, limit: int) -> None:
        self._receive, self.limit, self.received, self._done = receive, limit, 0, False

    async def __call__(self) -> dict:
        message = await self._receive()
        if message.get("type") == "http.request" and not self._done:
            self.received += len(message.get("body", b""))
            self._done = not message.get("more_body", False)
            if self.received > self.limit:
                raise BodyTooLarge()
        return message


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() and len(value) <= 20 else None
    return None


def _call_released(hook, kwargs: dict) -> int:
    try:
        return int(hook(**kwargs))
    finally:
        release_connection()


async def body_limit(scope) -> int:
    """The largest body this request may carry (see the module docstring)."""
    default = settings.FEDPLATFORM["MAX_REQUEST_BYTES"]
    if scope.get("method", "").upper() not in _BODY_METHODS:
        return default
    try:
        match = resolve(scope["path"].removeprefix(get_script_prefix(scope)))
    except Exception:  # Resolver404: the 404 is the view layer's to answer
        return default
    hook = getattr(getattr(match.func, "cls", None), "max_body_bytes", None)
    if hook is None:
        return default
    try:
        return await sync_to_async(_call_released, thread_sensitive=False)(hook, match.kwargs)
    except Exception:
        log.exception("body limit for %s failed; using the global upload limit", scope["path"])
        return settings.FEDPLATFORM["MAX_UPLOAD_BYTES"]


async def send_error(send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"code": code, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _NoRequestThread(ASGIHandler):
    # A body goes to the server in one message, whatever its size (a model is megabytes): Django's
    # 64 KiB steps cost an await each on the event loop, and the server buffers and paces the
    # socket anyway. One message is also no copy: slicing a whole bytes object returns the object
    # itself, while each smaller slice copies its part on the event loop (a ResNet-18 snapshot,
    # 45 MB, held every parked poll up for tens of milliseconds).
    chunk_size = sys.maxsize

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP here, not {scope['type']}")
        _ensure_pool()
        limit = await body_limit(scope)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await send_error(send, 413, "too_large",
                             f"body of {declared} bytes exceeds this request's limit of {limit}")
            return
        try:
            # No ThreadSensitiveContext: no thread per request.
            await self.handle(scope, _BoundedReceive(receive, limit), send)
        except BodyTooLarge:
            # Raised while Django reads the body, before it has sent anything.
            await send_error(send, 413, "too_large", f"body exceeds this request's limit of {limit} bytes")

    async def handle(self, scope, receive, send):
        """Django's first steps (the body, the script prefix, ``request_started``, the request),
        then ``serve``; a malformed request is answered here."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            await signals.request_started.asend(sender=self.__class__, scope=scope)
            request, error = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error, send)
                await sync_to_async(error.close, thread_sensitive=False)()
                return
            await self.serve(request, receive, send)
        finally:
            body_file.close()

    async def serve(self, request, receive, send) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def create_request(self, scope, body_file):
        request, response = super().create_request(scope, body_file)
        if request is None:  # Django's plain-text answers, in the API's shape
            assert response is not None  # Django answers whenever it makes no request
            if response.status_code == 413:
                response = error_response(413, "too_large", "the body is too large")
            else:
                response = error_response(400, "bad_request", "the request is malformed (e.g. not UTF-8)")
        return request, response


class PooledASGIHandler(_NoRequestThread):
    """Django with its full middleware stack, each request in one call on the shared pool.

    Django's own ``handle`` runs a task that listens for the client going away beside the one that
    answers, and closes the response (``request_finished``) in a second trip to a thread. A
    synchronous view cannot be stopped when the client leaves, so the listener buys nothing
    here; a response whose body is in memory is closed in the same call that made it. Only a
    streaming response is closed after its body is sent, as Django does.
    """

    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def serve(self, request, receive, send) -> None:
        response = await sync_to_async(self._respond, thread_sensitive=False)(request)
        response._handler_class = self.__class__
        try:
            await self.send_response(response, send)
        finally:
            if response.streaming:
                await sync_to_async(response.close, thread_sensitive=False)()

    def _respond(self, request):
        try:
            response = self.get_response(request)
            if not response.streaming:
                response.close()  # request_finished, on the thread that holds the connections
            return response
        finally:
            release_connection()


class BareASGIHandler(_NoRequestThread):
    """Django without middleware, for the device long-poll: sessions, CSRF and messages are for
    browsers, a device authenticates with its token in the view, and classic middleware would
    pin a held poll to a thread for its whole wait."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = convert_exception_to_response(
            # BaseHandler's own view-calling steps, which django-stubs does not declare.
            self._get_response_async if is_async else self._get_response  # type: ignore[attr-defined]
        )

    async def serve(self, request, receive, send) -> None:
        """As Django's ``handle`` (a held poll is cancelled when its device goes away), except that
        the response is closed on the shared pool: Django closes every response of an async view
        on one thread for the whole process, one after another."""

        async def answer():
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the device went away while it was sent
            return response

        listen = asyncio.create_task(self.listen_for_disconnect(receive))
        work = asyncio.create_task(answer())
        await asyncio.wait([listen, work], return_when=asyncio.FIRST_COMPLETED)
        for task in (listen, work):
            if not task.done():
                task.cancel()
            try:
                await task
            except (asyncio.CancelledError, RequestAborted):
                pass
        if work.cancelled():
            await signals.request_finished.asend(sender=self.__class__)
        else:
            await sync_to_async(work.result().close, thread_sensitive=False)()
