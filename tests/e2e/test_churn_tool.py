"""The churn tool against a real server: it crashes and restarts workers, and the run still ends."""
import subprocess
import sys

import pytest

from processes import ROOT, Server

pytestmark = pytest.mark.e2e


def test_the_churn_tool_crashes_and_returns_workers_while_the_run_completes(tmp_path):
    server = Server(tmp_path)
    server.start()
    try:
        run = server.create_run(
            name="churn tool", rounds=4, min_clients=2, clients_per_round=3, min_updates=2, round_timeout=20,
            offline_after=10,
        )
        result = subprocess.run(
            [sys.executable, "-m", "worker.churn", "--server", server.url, "--run", str(run["id"]), "--workers", "3",
             "--max-workers", "4", "--crash-every", "4", "--leave-every", "0", "--join-every", "0",
             "--return-after", "2", "--limit", "600", "--duration", "240", "--seed", "3",
             "--log-dir", str(tmp_path / "workers")],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        said = result.stdout + result.stderr
        assert result.returncode == 0, said
        assert "] crash " in said and "] back " in said, said  # crashed, then came back
        assert "the run is over and every worker has exited" in said, said
        assert server.get(f"/api/v1/runs/{run['id']}/")["status"] == "finished"
        closed = [r for r in server.rounds(run["id"]) if r["status"] == "closed"]
        assert [r["number"] for r in closed] == [1, 2, 3, 4]
    finally:
        server.kill()
