"""One-statement writes on the hot paths: queued on SQLite, no extra round trips elsewhere."""
from contextlib import nullcontext

import pytest
from django.db import connection, transaction

from fedplatform.writes import one_statement

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_one_statement_write_is_a_transaction_only_where_sqlites_writers_queue_for_it():
    if connection.vendor == "sqlite":
        assert isinstance(one_statement(), transaction.Atomic)  # BEGIN is where writers queue
    else:
        assert isinstance(one_statement(), nullcontext)  # autocommit: one round trip, not three
    with transaction.atomic():
        assert isinstance(one_statement(), nullcontext)  # no savepoint inside a caller's transaction
