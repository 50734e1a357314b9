"""A server SIGKILLed mid-round and restarted loses nothing it acknowledged (SQLite; PostgreSQL + Redis)."""
import signal

import pytest

from processes import Server, Worker, stop_all, wait_until

pytestmark = pytest.mark.e2e


def test_a_killed_and_restarted_server_completes_the_round_with_every_acknowledged_update(tmp_path, backing):
    server = Server(tmp_path, **backing)
    workers: list[Worker] = []
    try:
        server.start()
        run = server.create_run(
            name="crash", rounds=2, min_clients=3, clients_per_round=3, min_updates=3, round_timeout=300,
            offline_after=300,
        )
        workers = [Worker(server, run["id"], i, partitions=3, limit=600) for i in range(2)]
        workers.append(Worker(server, run["id"], 0, partitions=1, limit=30000, name="slow"))  # ~7 s an epoch

        def round_2_partly_delivered():
            rounds = server.rounds(run["id"])
            if len(rounds) < 2 or rounds[1]["status"] != "open":
                return None
            return rounds[1] if 1 <= len(rounds[1]["updates"]) < 3 else None

        before = wait_until(round_2_partly_delivered, timeout=300, what="round 2 with some updates in")
        acknowledged = {u["sha256"] for u in before["updates"]}
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        server.start()  # same port, same database and blobs
        codes = [w.wait(timeout=300) for w in workers]
        stop_all(workers)
        assert codes == [0, 0, 0], "\n".join(w.output()[-1500:] for w in workers)
        rounds = server.rounds(run["id"])
        assert [(r["number"], r["status"]) for r in rounds] == [(1, "closed"), (2, "closed")]
        round_2 = rounds[1]
        assert len(round_2["updates"]) == 3
        assert acknowledged <= {u["sha256"] for u in round_2["updates"]}
        versions = server.get(f"/api/v1/runs/{run['id']}/versions/")
        assert [v["number"] for v in versions] == [0, 1, 2]
        audit = server.manage("audit_run", str(run["id"]))
        assert "every version reproduced exactly" in audit
    finally:
        stop_all(workers)
        server.kill()
