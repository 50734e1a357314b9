"""Real processes: a server on a free port (daphne via runserver) and worker processes."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ("operator", "operator-pass-123")


class OperatorSession(requests.Session):
    """An operator's API session, logged in once through the dashboard's login form on its first
    request. Basic auth would make the server hash the password (PBKDF2, about a quarter of a
    core-second here) on every request, and the tests poll while devices train beside them."""

    def __init__(self, user: str, password: str):
        super().__init__()
        self._credentials = (user, password)

    def request(self, method, url, *args, **kwargs):
        if "sessionid" not in self.cookies:
            self._login(url.split("/api/", 1)[0].split("/login/", 1)[0].rstrip("/"))
        return super().request(method, url, *args, **kwargs)

    def _login(self, base: str) -> None:
        super().request("GET", f"{base}/login/", timeout=10)
        form = {"username": self._credentials[0], "password": self._credentials[1],
                "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}
        answer = super().request("POST", f"{base}/login/", data=form, timeout=30, allow_redirects=False)
        if answer.status_code != 302 or "sessionid" not in self.cookies:
            raise requests.HTTPError(f"operator login at {base} failed: {answer.status_code} {answer.text[:300]}")
        # Logging in rotates the CSRF token; the API's session authentication checks it on writes.
        self.headers["X-CSRFToken"] = self.cookies["csrftoken"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One server process and its engine workers (``engines``, 1 by default; 0 leaves rounds to
    whoever sweeps). Several may share a workdir (database, queue and blob storage); only the
    first one (``prepare=True``) migrates and creates the operator."""

    def __init__(
        self, workdir: Path, *, database_url: str | None = None, prepare: bool = True,
        env_extra: dict | None = None, engines: int = 1,
    ):
        self.workdir = workdir
        self.engines = engines
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url or f"sqlite:///{workdir / 'db.sqlite3'}",
            "FEDPLATFORM_MEDIA_ROOT": str(workdir / "media"),
            "FEDPLATFORM_EVAL_LIMIT": "2000",
            "FEDPLATFORM_POLL_INTERVAL": "0.5",
            "FEDPLATFORM_QUEUE_FILE": str(workdir / "queue.sqlite3"),
            "FEDPLATFORM_SWEEP_SECONDS": "1",
            "SECRET_KEY": "e2e-secret",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SUPERUSER_USERNAME": OPERATOR[0],
            "DJANGO_SUPERUSER_PASSWORD": OPERATOR[1],
            "DJANGO_SUPERUSER_EMAIL": "operator@example.com",
            **(env_extra or {}),
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.proc: subprocess.Popen | None = None
        self.engine_procs: list[subprocess.Popen] = []
        self.log = workdir / f"server-{self.port}.log"
        if prepare:
            self.manage("migrate", "--verbosity", "0")
            self.manage("createsuperuser", "--noinput")
        self.api = OperatorSession(*OPERATOR)

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def start_engine(self) -> subprocess.Popen:
        """One more engine worker (the task queue's consumer) for this server's database."""
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "engine"],
            cwd=ROOT, env=self.env, stdout=(self.workdir / f"engine-{self.port}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.engine_procs.append(proc)
        return proc

    def kill_engines(self) -> None:
        for proc in self.engine_procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.engine_procs = []

    def start(self) -> None:
        for _ in range(self.engines - len([p for p in self.engine_procs if p.poll() is None])):
            self.start_engine()
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
            cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/api/schema/", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.3)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """A crash of the whole server: its process and its engine workers."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.kill_engines()

    def create_run(self, **config) -> dict:
        response = self.api.post(f"{self.url}/api/v1/runs/", json=config, timeout=60)
        response.raise_for_status()
        run = response.json()
        self.api.post(f"{self.url}/api/v1/runs/{run['id']}/start/", timeout=30).raise_for_status()
        return run

    def patch(self, path: str, body: dict) -> dict:
        response = self.api.patch(f"{self.url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def rounds(self, run_id: int) -> list[dict]:
        return self.get(f"/api/v1/runs/{run_id}/rounds/")

    def get(self, path: str):
        response = self.api.get(f"{self.url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()


class Worker:
    def __init__(self, server: Server, run_id: int, index: int, partitions: int, limit: int, name: str | None = None):
        self.name = name or f"worker-{index}"
        self.log = server.workdir / f"{self.name}.log"
        self.url = server.url
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "--server", server.url, "--run", str(run_id), "--name", self.name,
             "--num-partitions", str(partitions), "--partition-index", str(index), "--limit", str(limit),
             "--threads", "1", "--device", "cpu", "--quiet"],
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        """A crash: no goodbye, the server must notice by itself."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def stop_all(workers: list["Worker"]) -> None:
    for worker in workers:
        worker.stop()


def wait_until(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
