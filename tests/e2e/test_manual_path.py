"""The README's "Running the pieces yourself", run as a new user would: its code block's commands
in order, as real processes, on a fresh SQLite database, with devices that reach the server by
this machine's network address as a device on another machine would."""
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import requests

from processes import ROOT, free_port, wait_until

PASSWORD = "manual-pass-123"
LIMIT = 200  # training examples per device: the rounds take moments, the path is what is tested
SECTION = "## Running the pieces yourself"
# What each line of the block must be, in order; a line the README gains or loses fails the test.
EXPECTED = [
    ("setup", r"^bin/setup\b"),
    ("migrate", r"manage\.py migrate\b"),
    ("operator", r"manage\.py createsuperuser .*--username (?P<user>\S+)"),
    ("server", r"ALLOWED_HOSTS=\S+ .*manage\.py runserver 0\.0\.0\.0:8000\b"),
    ("engine", r"manage\.py engine\b"),
    ("create_run", r"^curl -u (?P<user>\S+) .*-d '(?P<body>[^']+)' http://127\.0\.0\.1:8000/api/v1/runs/$"),
    ("start_run", r"^curl -u (?P<user>\S+) -X POST http://127\.0\.0\.1:8000/api/v1/runs/1/start/$"),
    ("worker", r"-m worker --server http://SERVER:8000 .*--partition-index 0$"),
]


def manual_commands() -> dict[str, re.Match]:
    section = (ROOT / "README.md").read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines()
             if line.strip() and not line.startswith("#")]
    assert len(lines) == len(EXPECTED), lines
    matches = {}
    for line, (kind, pattern) in zip(lines, EXPECTED):
        match = re.search(pattern, line)
        assert match, f"README line {line!r} is not the expected {kind} command"
        matches[kind] = match
    return matches


def lan_address() -> str | None:
    """This machine's address on its network, as another machine would reach it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # UDP connect sends nothing: it only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


class Shell:
    """The README's lines run through bash from the repository root, as pasted into a terminal."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",  # the queue file follows it
            "FEDPLATFORM_MEDIA_ROOT": str(workdir / "media"),
            "FEDPLATFORM_EVAL_LIMIT": "500",  # the engine's evaluations share two cores with everything
            "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
            "PYTHONUNBUFFERED": "1",
        }
        # Nothing from the caller's environment may make the README's commands work by accident.
        for name in ("ALLOWED_HOSTS", "DEBUG", "DJANGO_SETTINGS_MODULE", "FEDPLATFORM_QUEUE_FILE", "REDIS_URL",
                     "DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_EMAIL"):
            self.env.pop(name, None)
        self.background: list[subprocess.Popen] = []

    def line(self, command: str) -> str:
        command = command.replace(":8000", f":{self.port}")
        if not (ROOT / ".venv/bin/python").exists():  # a suite run from another environment
            command = command.replace(".venv/bin/python", sys.executable)
        return command

    def run(self, command: str, timeout: float = 120) -> str:
        done = subprocess.run(["bash", "-c", self.line(command)], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def start(self, command: str, log: str) -> subprocess.Popen:
        # Its own process group: runserver's autoreloader runs the server in a child process.
        proc = subprocess.Popen(["bash", "-c", self.line(command)], cwd=ROOT, env=self.env,
                                stdout=(self.workdir / log).open("ab"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.background.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in self.background:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.e2e
def test_the_readme_manual_path_trains_a_run_with_devices_reaching_the_server_by_its_address(tmp_path):
    commands = manual_commands()
    user = commands["operator"]["user"]
    assert commands["create_run"]["user"] == commands["start_run"]["user"] == user
    address = lan_address()
    if address is None:  # no network at all: the rest of the path still runs, on loopback
        warnings.warn("no non-loopback address: the devices reach the server on 127.0.0.1", stacklevel=1)
        address = "127.0.0.1"
    shell = Shell(tmp_path, free_port())
    workers: list[subprocess.Popen] = []  # also in shell.background, which stops them all
    # commands["setup"] made the environment this test runs in; it is not run again here.
    try:
        shell.run(commands["migrate"].string)
        shell.run(commands["operator"].string + " --noinput")  # the password comes from the environment
        server = shell.start(commands["server"].string, "server.log")
        engine = shell.start(commands["engine"].string, "engine.log")
        operator = requests.Session()
        operator.auth = (user, PASSWORD)
        base = f"http://127.0.0.1:{shell.port}"

        def up() -> bool:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                return operator.get(f"{base}/api/v1/runs/", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, timeout=90, interval=0.3, what="the server")

        def with_password(kind: str) -> str:
            # curl's -u USER asks for the password at a terminal; here it is given inline.
            return commands[kind].string.replace(f"-u {user} ", f"-u {user}:{PASSWORD} ", 1)

        run = json.loads(shell.run(with_password("create_run")))
        asked = json.loads(commands["create_run"]["body"])
        assert run["id"] == 1, run  # the README starts run 1: a fresh database's first
        assert {field: run[field] for field in asked} == asked
        assert run["status"] == "draft" and run["upload_encoding"] == "int4"
        assert json.loads(shell.run(with_password("start_run")))["status"] == "running"

        worker_line = commands["worker"].string.replace("SERVER", address)
        for index in range(2):
            line = worker_line.replace("--partition-index 0", f"--partition-index {index}")
            workers.append(shell.start(
                f"{line} --name manual-{index} --limit {LIMIT} --threads 1 --device cpu --quiet", f"worker-{index}.log",
            ))

        def logs() -> dict[str, str]:
            return {p.name: p.read_text() for p in tmp_path.glob("*.log")}

        def shown() -> str:
            return "\n".join(f"== {name}\n{text[-2000:]}" for name, text in logs().items())

        try:
            codes = [worker.wait(timeout=240) for worker in workers]
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the devices did not finish the run:\n{shown()}") from None
        assert codes == [0, 0], shown()

        rounds = operator.get(f"{base}/api/v1/runs/1/rounds/", timeout=30).json()
        clients = {c["id"]: c for c in operator.get(f"{base}/api/v1/clients/", timeout=30).json()}
        assert sorted(c["name"] for c in clients.values()) == ["manual-0", "manual-1"]
        # min_clients is 2 by default: every round waits for both devices, and both deliver.
        assert [(r["number"], r["status"], sorted(r["received"])) for r in rounds] == [
            (n, "closed", sorted(clients)) for n in (1, 2, 3)
        ]
        assert operator.get(f"{base}/api/v1/runs/1/", timeout=30).json()["status"] == "finished"
        assert engine.poll() is None and server.poll() is None
        assert not any("Traceback" in text for text in logs().values()), shown()
    finally:
        shell.stop_all()


def test_a_device_at_an_address_missing_from_allowed_hosts_is_told_so_in_json(client, settings):
    # Without the README's ALLOWED_HOSTS, a device on another machine meets the defaults.
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
    response = client.post(
        "/api/v1/clients/", {"name": "far", "num_examples": 10}, content_type="application/json",
        HTTP_HOST="192.0.2.50:8000",
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "disallowed_host"
    assert "'192.0.2.50:8000'" in body["detail"] and "ALLOWED_HOSTS" in body["detail"]
