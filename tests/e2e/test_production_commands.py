"""The README's production section, run as written: two ASGI server processes (uvicorn) and two
engine workers on PostgreSQL and Redis, DEBUG off, devices spread over both servers, and an
operator's dashboard socket on one server hearing what happens through the other."""
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from processes import OPERATOR, ROOT, Worker, free_port, stop_all, wait_until

pytestmark = pytest.mark.e2e
PG_ADMIN_URL = os.environ.get("FEDPLATFORM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FEDPLATFORM_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _services_or_skip() -> str:
    psycopg = pytest.importorskip("psycopg")
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("FEDPLATFORM_REQUIRE_SERVICES") == "1":
            raise
        pytest.skip(f"PostgreSQL and Redis are needed: {exc}")
    name = f"fedprod_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    admin.close()
    return name


@pytest.fixture
def production_env(tmp_path):
    name = _services_or_skip()
    env = {
        **os.environ,
        # What the README's production section exports (hosts: this machine's loopback).
        "DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}",
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": "production-test-" + uuid.uuid4().hex,
        "ALLOWED_HOSTS": "127.0.0.1",
        "FEDPLATFORM_MEDIA_ROOT": str(tmp_path / "shared-media"),
        "FEDPLATFORM_QUEUE_NAME": f"prodtest-{name}",  # this test's queue on the shared Redis
        "DJANGO_SUPERUSER_USERNAME": OPERATOR[0],
        "DJANGO_SUPERUSER_PASSWORD": OPERATOR[1],
        "DJANGO_SUPERUSER_EMAIL": "operator@example.com",
        "PYTHONUNBUFFERED": "1",
    }
    for unset in ("DEBUG", "DJANGO_SETTINGS_MODULE", "FEDPLATFORM_QUEUE_FILE"):
        env.pop(unset, None)
    yield env
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class _Endpoint:
    """What a Worker needs to know of a server."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir


def _started(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _dashboard_socket(url: str):
    """The dashboard's websocket, as a browser opens it after logging in at /login/."""
    from websockets.sync.client import connect

    browser = requests.Session()
    browser.get(f"{url}/login/", timeout=10)
    form = {"username": OPERATOR[0], "password": OPERATOR[1], "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
    answer = browser.post(f"{url}/login/", data=form, headers={"Referer": f"{url}/login/"}, timeout=30,
                          allow_redirects=False)
    assert answer.status_code == 302, answer.text[:500]
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    ws_url = url.replace("http://", "ws://") + "/ws/dashboard/"
    return connect(ws_url, additional_headers={"Cookie": cookie, "Origin": url}, open_timeout=10)


def _wait_for_event(socket, kind: str, timeout: float = 30, **fields) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["event"] == kind and all(message["data"].get(k) == v for k, v in fields.items()):
            return message["data"]


def test_two_servers_and_two_engines_on_postgres_and_redis(tmp_path, production_env):
    env, bin_dir = production_env, Path(sys.executable).parent
    subprocess.run([sys.executable, "manage.py", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "manage.py", "createsuperuser", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    ports = [free_port(), free_port()]
    procs = [
        _started([str(bin_dir / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--no-proxy-headers",
                  "fedplatform.asgi:application"], env, tmp_path / f"server-{port}.log")
        for port in ports
    ] + [_started([sys.executable, "manage.py", "engine"], env, tmp_path / f"engine-{i}.log") for i in range(2)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    workers: list[Worker] = []
    try:
        operator = requests.Session()
        operator.auth = OPERATOR

        def up(url: str) -> bool:
            try:
                return operator.get(f"{url}/api/v1/runs/", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        for url in urls:
            wait_until(lambda url=url: up(url), timeout=60)
        # DEBUG is off: the dashboard and its assets are still served by each process.
        page = operator.get(f"{urls[1]}/", timeout=10)
        assert page.status_code in (200, 302)
        # An operator's dashboard socket on the second process hears what the first one does.
        with _dashboard_socket(urls[1]) as dashboard:
            response = operator.post(f"{urls[0]}/api/v1/runs/", timeout=30, json=dict(
                name="production", rounds=2, min_clients=4, clients_per_round=4, min_updates=4, round_timeout=300,
            ))
            assert response.status_code == 201, response.text
            run = response.json()
            assert operator.post(f"{urls[0]}/api/v1/runs/{run['id']}/start/", timeout=30).status_code == 200
            _wait_for_event(dashboard, "run.changed", id=run["id"], status="running")
        workers = [Worker(_Endpoint(urls[i % 2], tmp_path), run["id"], i, partitions=4, limit=500) for i in range(4)]
        codes = [w.wait(timeout=400) for w in workers]
        assert codes == [0, 0, 0, 0], "\n".join(w.output()[-1500:] for w in workers)
        rounds = operator.get(f"{urls[1]}/api/v1/runs/{run['id']}/rounds/", timeout=30).json()
        assert [(r["number"], r["status"], len(r["updates"])) for r in rounds] == [(1, "closed", 4), (2, "closed", 4)]
        contributors = {
            c["id"] for c in operator.get(f"{urls[0]}/api/v1/clients/", timeout=30).json() if c["bytes_sent"] > 0
        }
        assert len(contributors) == 4  # every device, whichever server it talked to, contributed
        audit = subprocess.run([sys.executable, "manage.py", "audit_run", str(run["id"])], cwd=ROOT, env=env,
                               check=True, capture_output=True, text=True).stdout
        assert "every version reproduced exactly" in audit
        logs = "".join((tmp_path / f"server-{port}.log").read_text() for port in ports)
        assert "Traceback" not in logs and "Internal Server Error" not in logs
    finally:
        stop_all(workers)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
