"""Fixtures for the worker tests.

The helpers live in worker_stubhttp.py; this directory is put on sys.path so test modules can
import them whatever pytest import mode the project uses (there is no tests/__init__.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker_stubhttp import FASHION_DIR, Route, StubServer  # noqa: E402


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
