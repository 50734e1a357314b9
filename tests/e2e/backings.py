"""What the end-to-end servers stand on: SQLite with the embedded queue (``bin/demo``), or
PostgreSQL with Redis for the engine's queue and the channel layer (the README's production
section). Tests that must hold on both take the ``backing`` fixture (conftest.py)."""
import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest


PG_ADMIN_URL = os.environ.get("FEDPLATFORM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FEDPLATFORM_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _unavailable(what: str, exc: Exception) -> None:
    if os.environ.get("FEDPLATFORM_REQUIRE_SERVICES") == "1":
        raise exc
    pytest.skip(f"{what} is not reachable: {exc}")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _unavailable(f"PostgreSQL at {PG_ADMIN_URL}", exc)
    name = f"fedtest_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _redis_env() -> dict[str, str]:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {REDIS_URL}", exc)
    # The test's own queue on the shared Redis.
    return {"REDIS_URL": REDIS_URL, "FEDPLATFORM_QUEUE_NAME": f"e2e-{uuid.uuid4().hex[:10]}"}


BACKINGS = ["sqlite", "postgres+redis"]


@contextlib.contextmanager
def backing_for(name: str) -> Iterator[dict[str, Any]]:
    """``Server`` keyword arguments for the services under it (``server_options`` adds to them)."""
    if name == "sqlite":
        yield {}
        return
    with postgres_database() as url:
        yield {"database_url": url, "env_extra": _redis_env()}


def server_options(backing: dict[str, Any], **env: str) -> dict[str, Any]:
    """``backing`` with more environment for the server and its engine workers."""
    return {**backing, "env_extra": {**backing.get("env_extra", {}), **env}}
