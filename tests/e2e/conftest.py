"""Fixtures of the end-to-end tests: servers as real processes (processes.py) on the services
that back them (backings.py)."""
from collections.abc import Iterator
from typing import Any

import pytest

from backings import BACKINGS, backing_for, postgres_database
from processes import Server


@pytest.fixture
def postgres_url():
    with postgres_database() as url:
        yield url


@pytest.fixture(params=BACKINGS)
def backing(request) -> Iterator[dict[str, Any]]:
    with backing_for(request.param) as options:
        yield options


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path)
    srv.start()
    yield srv
    srv.kill()
