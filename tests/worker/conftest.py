"""Fixtures for the worker tests.

The helpers live in worker_stubhttp.py beside this file; pytest imports test modules and conftest
files with their own folder on sys.path (there is no tests/__init__.py), so they import it by name.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from worker_stubhttp import FASHION_DIR, Route, StubServer


@pytest.fixture
def stub_server():
    servers: list[StubServer] = []

    def make(routes: dict[tuple[str, str], Route] | None = None) -> StubServer:
        server = StubServer(routes).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    if not (FASHION_DIR / "train-labels-idx1-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST is not installed at {FASHION_DIR}")
    return FASHION_DIR
