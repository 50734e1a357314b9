"""SQLite with writers queued in the process, not in SQLite's busy handler.

SQLite lets one writer in at a time. Django opens a write transaction with ``BEGIN IMMEDIATE``
(see settings), and a thread that finds the lock taken sleeps in SQLite's busy handler, in steps
of up to 100 ms, and tries again. With hundreds of device requests in flight, the lock is free
most of the time while its waiters sleep: throughput collapses. Here the threads of one process
queue on a Python lock first, so at most one per process waits inside SQLite, and the next one
starts the moment the lock is released. Other processes (engine workers) still meet the busy
handler, but they are few.
"""
import threading

from django.db import OperationalError
from django.db.backends.sqlite3 import base

WAIT_SECONDS = 60


# The methods below extend private hooks of Django's SQLite backend, which django-stubs does not
# declare: hence the ignores.
class DatabaseWrapper(base.DatabaseWrapper):
    _writers = threading.Lock()  # one per process, shared by every connection

    def _take(self) -> None:
        if not self._writers.acquire(timeout=WAIT_SECONDS):
            raise OperationalError("database is locked (waited for the other writers of this process)")
        self._holding = True

    def _give_back(self) -> None:
        if getattr(self, "_holding", False):
            self._holding = False
            self._writers.release()

    def _start_transaction_under_autocommit(self):
        self._take()
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._give_back()
            raise

    def _commit(self):
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._give_back()

    def _rollback(self):
        try:
            return super()._rollback()  # type: ignore[misc]
        finally:
            self._give_back()

    def _close(self):
        try:
            return super()._close()  # type: ignore[misc]
        finally:
            self._give_back()
