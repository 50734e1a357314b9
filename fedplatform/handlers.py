"""ASGI handlers that keep a request's synchronous work off per-request threads.

Django's own ASGI handler opens a ``ThreadSensitiveContext`` per request: the request's
synchronous middleware, view and ``response.close()`` run in a thread created for that request
and joined after it. Each request then pays for a thread, and for a database connection opened
on it (SQLite's file and pragmas, a pool checkout on PostgreSQL): a few milliseconds of a
device's cheapest requests. Here a request's synchronous part runs in one call on the event
loop's shared pool (``ASGI_THREADS`` sizes it), whose threads, and their SQLite connections,
live on. On PostgreSQL the connection goes back to the pool at the end of each call.
"""
import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.db import close_old_connections, connection


def release_connection() -> None:
    """Hand this thread's PostgreSQL connection back to the pool; SQLite's (cheap to keep,
    costly to reopen) stays with its thread, one per pool thread."""
    if connection.vendor != "sqlite":
        close_old_connections()


# Threads for synchronous request work, per process. Requests waiting for SQLite's one writer
# hold theirs while they wait, so reads need threads beyond the writers'.
POOL_THREADS = int(os.environ.get("ASGI_THREADS", 16))
_pools: dict[int, ThreadPoolExecutor] = {}


def _ensure_pool() -> None:
    loop = asyncio.get_running_loop()
    if id(loop) not in _pools:
        _pools[id(loop)] = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="request")
        loop.set_default_executor(_pools[id(loop)])


class _NoRequestThread(ASGIHandler):
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP here, not {scope['type']}")
        _ensure_pool()
        await self.handle(scope, receive, send)  # no ThreadSensitiveContext: no thread per request


class PooledASGIHandler(_NoRequestThread):
    """Django with its full middleware stack, each request in one call on the shared pool."""

    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def get_response_async(self, request):
        return await sync_to_async(self._respond, thread_sensitive=False)(request)

    def _respond(self, request):
        try:
            return self.get_response(request)
        finally:
            release_connection()


class BareASGIHandler(_NoRequestThread):
    """Django without middleware, for the device long-poll: sessions, CSRF and messages are for
    browsers, a device authenticates with its token in the view, and classic middleware would
    pin a held poll to a thread for its whole wait."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async if is_async else self._get_response
        )
