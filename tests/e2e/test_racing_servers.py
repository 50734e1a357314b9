"""Several server processes on one database: no round is aggregated twice, no update is lost.

Each scenario runs on SQLite and on PostgreSQL.
"""
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from fedcore import codec
from processes import ROOT, Server, Worker, stop_all

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite3'}"
    return request.getfixturevalue("postgres_url")


def _audit(server: Server, run_id: int) -> str:
    return server.manage("audit_run", str(run_id))


def test_two_servers_share_one_run_without_double_aggregation(tmp_path, database_url):
    first = Server(tmp_path, database_url=database_url)
    second = Server(tmp_path, database_url=database_url, prepare=False)
    workers: list[Worker] = []
    try:
        first.start()
        second.start()
        run = first.create_run(name="two servers", rounds=2, min_clients=4, clients_per_round=4, min_updates=4,
                               round_timeout=300)
        workers = [Worker(first if i % 2 else second, run["id"], i, partitions=4, limit=600) for i in range(4)]
        codes = [w.wait(timeout=300) for w in workers]
        stop_all(workers)
        assert codes == [0, 0, 0, 0], "\n".join(w.output()[-1500:] for w in workers)
        rounds = second.rounds(run["id"])
        assert [(r["number"], r["status"], len(r["updates"])) for r in rounds] == [(n, "closed", 4) for n in (1, 2)]
        assert [v["number"] for v in first.get(f"/api/v1/runs/{run['id']}/versions/")] == [0, 1, 2]
        assert "every version reproduced exactly" in _audit(first, run["id"])
    finally:
        stop_all(workers)
        first.kill()
        second.kill()


def _one_update_then_silence(server: Server) -> tuple[int, int]:
    """Open a round for two devices, deliver one update, and let the deadline pass unnoticed."""
    run = server.create_run(name="stampede", rounds=1, min_clients=2, clients_per_round=2, min_updates=1,
                            round_timeout=2)
    devices = []
    for name in ("a", "b"):
        registration = {"name": name, "run": run["id"], "num_examples": 10}
        body = requests.post(f"{server.url}/api/v1/clients/", json=registration, timeout=30).json()
        devices.append(requests.Session())
        devices[-1].headers["Authorization"] = f"Token {body['token']}"
    first_id, second_id = (c["id"] for c in server.get("/api/v1/clients/"))
    # The second device's first poll makes it selectable; the first one's, held, gets the task.
    devices[1].get(f"{server.url}/api/v1/clients/{second_id}/task/", timeout=30)
    task = devices[0].get(f"{server.url}/api/v1/clients/{first_id}/task/?wait=20", timeout=60).json()
    server.kill_engines()  # from now on only the contenders act on the round
    base = codec.decode(devices[0].get(server.url + task["model_url"], timeout=30).content).arrays
    delta = {k: (np.full_like(a, 0.01) if a.dtype.kind == "f" else np.zeros_like(a)) for k, a in base.items()}
    body = codec.encode(delta, encoding=task["upload_encoding"], kind="delta", base_version=task["base_version"])
    response = devices[0].put(
        server.url + task["upload_url"], data=body,
        headers={"Content-Type": codec.CONTENT_TYPE, "X-Num-Examples": "10"}, timeout=30,
    )
    assert response.status_code == 201, response.text
    time.sleep(3)  # past the deadline; nobody asks the server anything
    return run["id"], task["round"]


def test_a_stampede_of_sweeps_closes_an_expired_round_exactly_once(tmp_path, database_url):
    server = Server(tmp_path, database_url=database_url)
    server.start()
    try:
        run_id, round_id = _one_update_then_silence(server)
        server.kill()  # only the contenders touch the database now
        start_at = time.time() + 8  # after every contender has imported Django and torch
        contenders = [
            subprocess.Popen([sys.executable, "tests/e2e/race_sweep.py", str(start_at)], cwd=ROOT, env=server.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(4)
        ]
        outputs = [c.communicate(timeout=120)[0] for c in contenders]
        assert all(c.returncode == 0 for c in contenders), outputs
        server.engines = 0  # look, without an engine of its own
        server.start()
        rounds = server.rounds(run_id)
        assert [(r["id"], r["status"], len(r["updates"])) for r in rounds] == [(round_id, "closed", 1)]
        assert [v["number"] for v in server.get(f"/api/v1/runs/{run_id}/versions/")] == [0, 1]
        assert server.get(f"/api/v1/runs/{run_id}/")["status"] == "finished"
        assert "every version reproduced exactly" in _audit(server, run_id)
    finally:
        server.kill()
