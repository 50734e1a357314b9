"""pyproject.toml and the pinned requirement lists describe one project: the package metadata reads
the lists, the device's list is the server's pins for the same packages, and every app of the
server is a package the install ships."""
import re
import tomllib
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert not line.startswith("-"), f"{name}: pip options cannot be read by pyproject.toml: {line}"
            package, version = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line).groups()
            pins[package.lower()] = version
    return pins


def test_the_metadata_reads_the_pinned_lists():
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"]["file"] == ["requirements.txt"]
    extras = dynamic["optional-dependencies"]
    assert (extras["worker"]["file"], extras["dev"]["file"]) == (["requirements-worker.txt"], ["requirements-dev.txt"])


def test_a_device_gets_the_servers_pins_for_the_packages_it_shares():
    server, device = _pins("requirements.txt"), _pins("requirements-worker.txt")
    assert {name: server.get(name) for name in device} == device


def test_every_local_app_is_a_package_the_install_ships():
    shipped = {pattern.rstrip("*") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    local = {app for app in settings.INSTALLED_APPS if (ROOT / app / "__init__.py").exists()}
    assert local and local <= shipped
    assert {"fedcore", "worker"} <= shipped
