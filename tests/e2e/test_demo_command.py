"""Command 1 (`bin/demo` runs `manage.py demo`): one command starts a server and local workers that
train a run to the end, and Ctrl-C stops every process it started."""
import os
import signal
import subprocess
import sys

import pytest
import requests

from processes import ROOT, OperatorSession, Server, wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "demo-pass-123"


def _finished_run(api: requests.Session, url: str) -> dict | None:
    try:
        runs = api.get(f"{url}/api/v1/runs/", timeout=10).json()
    except requests.RequestException:
        return None
    runs = runs["results"] if isinstance(runs, dict) else runs
    return next((run for run in runs if run["status"] == "finished"), None)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_trains_its_run_to_the_end_and_ctrl_c_stops_every_process(tmp_path):
    # The same database, media and polling settings as the other end-to-end servers; the demo
    # migrates and creates its operator itself.
    server = Server(tmp_path, prepare=False, env_extra={"FEDPLATFORM_ADMIN_PASSWORD": PASSWORD})
    port, url, env = server.port, server.url, server.env
    log = tmp_path / "demo.log"
    # Its own process group, as in a terminal: whatever the demo starts and leaves behind stays
    # findable after it exits.
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), "--workers", "2", "--rounds", "2",
         "--examples", "1000"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    api = OperatorSession("admin", PASSWORD)
    try:
        wait_until(lambda: "Dashboard:" in log.read_text(), timeout=120, what=f"the demo's banner:\n{log}")
        assert f"{url}/" in log.read_text() and PASSWORD in log.read_text()
        run = wait_until(lambda: _finished_run(api, url), timeout=300, what="the demo run to finish")
        # The last version's evaluation is the engine's own task: it may finish after the run.
        def evaluated_rounds():
            rounds = api.get(f"{url}/api/v1/runs/{run['id']}/rounds/", timeout=10).json()
            closed = [rnd for rnd in rounds if rnd["status"] == "closed"]
            return closed if closed and closed[-1]["metrics"].get("test_accuracy") is not None else None

        closed = wait_until(evaluated_rounds, timeout=120, what="the last round's evaluation")
        assert [rnd["number"] for rnd in closed] == [1, 2]
        assert all(len(rnd["updates"]) >= 1 for rnd in closed)
        assert closed[-1]["metrics"]["test_accuracy"] >= 0.5, [rnd["metrics"] for rnd in closed]
        assert api.get(f"{url}/", timeout=10).status_code == 200  # the dashboard (or its login page)

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, log.read_text()[-3000:]
        wait_until(lambda: not _group_alive(demo.pid), timeout=10, what="every process the demo started to exit")
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/api/schema/", timeout=2)
    finally:
        if _group_alive(demo.pid):
            os.killpg(demo.pid, signal.SIGKILL)
        demo.wait(timeout=10)
