"""Compressed downloads with real processes: workers train from the int4 broadcast replica."""
import pytest

from processes import Worker

pytestmark = pytest.mark.e2e


def test_two_workers_train_four_rounds_from_int4_broadcasts_and_the_run_audits_clean(server):
    run = server.create_run(
        name="int4 down", arch="cnn", dataset="fashion-mnist", rounds=4, min_clients=2, clients_per_round=2,
        min_updates=2, local_epochs=1, batch_size=32, learning_rate=0.05, round_timeout=300,
        upload_encoding="int4", download_encoding="int4",
    )
    workers = [Worker(server, run["id"], index, partitions=2, limit=1000) for index in range(2)]
    try:
        codes = [w.wait(timeout=600) for w in workers]
    finally:
        for w in workers:
            w.stop()
    assert codes == [0, 0], "\n".join(w.output()[-2000:] for w in workers)
    assert server.get(f"/api/v1/runs/{run['id']}/")["status"] == "finished"

    closed = [r for r in server.rounds(run["id"]) if r["status"] == "closed"]
    assert [r["number"] for r in closed] == [1, 2, 3, 4]
    for rnd in closed:
        m = rnd["metrics"]
        # Counted by the server as it answered, per device.
        assert set(m["bytes_down_by_client"]) == {str(c) for c in rnd["expected"]}
        assert m["bytes_down"] == sum(m["bytes_down_by_client"].values())
        assert m["bytes_up"] == sum(m["bytes_up_by_client"].values()) == sum(u["bytes_wire"] for u in rnd["updates"])
        if rnd["number"] > 1:
            # Each device holds the previous replica: it is sent the one int4 broadcast delta.
            assert all(size < m["float32_bytes_per_update"] / 5 for size in m["bytes_down_by_client"].values()), m
    assert all("(delta)" in w.output() for w in workers)

    audit = server.manage("audit_run", str(run["id"]))
    assert "every version reproduced exactly" in audit and "5 broadcast(s), every replica rebuilt exactly" in audit
