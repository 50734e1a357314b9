"""The packages depend on each other one way, checked on the source: every ``.py`` file's imports
(``import``, ``from ... import``, and ``importlib.import_module`` / ``__import__`` with a literal
name), wherever in the file they are, functions included.

    fedcore  <-  worker                                  (the device side: no Django)
    fedcore  <-  fedplatform's plumbing  <-  clients  <-  rounds  <-  dashboard  <-  fedplatform's
                                                                      urls, asgi (the composition)

Migrations are left out: Django names other apps' migrations there as strings, and the one
reference that stays against the arrow, ``Client.run`` (a foreign key to ``"rounds.Run"``), is a
string too (docs/architecture.md).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_APPS = {"fedplatform", "clients", "rounds", "dashboard"}
# The server's frameworks: none of them is a dependency of the device side.
SERVER_LIBRARIES = {"django", "rest_framework", "drf_spectacular", "drf_spectacular_sidecar", "channels",
                    "channels_redis", "daphne", "huey", "uvicorn", "whitenoise"}
# The composition root: the URLs and the ASGI application put every app together.
COMPOSITION = {"fedplatform/urls.py", "fedplatform/asgi.py"}

# package -> the top-level packages none of its modules may import
FORBIDDEN = {
    "fedcore": SERVER_APPS | SERVER_LIBRARIES | {"worker"},
    "worker": SERVER_APPS | SERVER_LIBRARIES,
    "fedplatform": {"clients", "rounds", "dashboard"},
    "clients": {"rounds", "dashboard"},
    "rounds": {"dashboard"},
}


def _sources(package: str) -> list[Path]:
    return sorted(
        path for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.relative_to(ROOT).parts
        and path.relative_to(ROOT).as_posix() not in COMPOSITION
    )


def imported(source: str) -> set[str]:
    """The top-level package of every absolute import in ``source`` (relative ones stay inside
    their own package)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names.add(node.args[0].value)
    return {name.split(".")[0] for name in names}


def violations(package: str) -> list[str]:
    found = []
    for path in _sources(package):
        for name in sorted(imported(path.read_text()) & FORBIDDEN[package]):
            found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_the_package_imports_nothing_its_layer_must_not(package):
    assert _sources(package), f"no sources found under {package}/"
    assert violations(package) == []


@pytest.mark.parametrize("source, package, expected", [
    ("from rounds.models import Run", "clients", "rounds"),
    ("import rounds.models", "clients", "rounds"),
    ("def f():\n    from dashboard import snapshot", "rounds", "dashboard"),
    ("import importlib\nimportlib.import_module('rounds.models')", "clients", "rounds"),
    ("from importlib import import_module\nimport_module('django.conf')", "fedcore", "django"),
    ("__import__('clients')", "worker", "clients"),
    ("from django.db import models", "worker", "django"),
    ("from fedplatform.events import emit", "fedcore", "fedplatform"),
    ("from worker import trainer", "fedcore", "worker"),
])
def test_the_check_sees_each_form_of_import(source, package, expected):
    assert expected in imported(source) & FORBIDDEN[package]


@pytest.mark.parametrize("source, package", [
    ("from . import services", "clients"),
    ("from .models import Client", "clients"),
    ("from clients.models import Client", "rounds"),
    ("from fedplatform.errors import Conflict", "clients"),
    ("from fedcore import codec", "worker"),
    ("import numpy", "fedcore"),
    ("run = models.ForeignKey('rounds.Run', on_delete=models.CASCADE)", "clients"),
])
def test_the_check_allows_what_runs_the_right_way(source, package):
    assert not imported(source) & FORBIDDEN[package]
