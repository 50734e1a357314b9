"""The transaction a hot path's one-statement write runs in.

On SQLite every write runs in a transaction: its ``BEGIN`` is where the writers of a process queue
(``fedplatform.sqlite``) rather than in SQLite's busy handler. On PostgreSQL one statement in
autocommit is already atomic, and wrapping it costs two more round trips (``BEGIN``, ``COMMIT``);
inside a caller's transaction a nested ``atomic()`` costs two as well (a savepoint and its
release). A device's poll writes ``last_seen`` about once a long-poll: at 5,000 devices those
round trips were as much of the poll's time in the database as the write itself.
"""
from contextlib import AbstractContextManager, nullcontext

from django.db import connection, transaction


def one_statement() -> AbstractContextManager:
    """Where a write of exactly one statement runs: a transaction on SQLite outside one, else nothing."""
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        return transaction.atomic()
    return nullcontext()
