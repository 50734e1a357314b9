"""The product's spine with real processes: a server and three workers training over HTTP."""
import pytest

from processes import Worker, wait_until

pytestmark = pytest.mark.e2e


def test_three_workers_train_three_rounds_of_fashion_mnist_over_rest(server):
    run = server.create_run(
        name="e2e", arch="cnn", dataset="fashion-mnist", rounds=3, min_clients=3, clients_per_round=3,
        min_updates=3, local_epochs=1, batch_size=32, learning_rate=0.05, round_timeout=300,
    )
    workers = [Worker(server, run["id"], index, partitions=3, limit=2000) for index in range(3)]
    try:
        codes = [w.wait(timeout=600) for w in workers]
    finally:
        for w in workers:
            w.stop()
    assert codes == [0, 0, 0], "\n".join(w.output()[-2000:] for w in workers)

    assert server.get(f"/api/v1/runs/{run['id']}/")["status"] == "finished"
    rounds = server.get(f"/api/v1/runs/{run['id']}/rounds/")
    closed = [r for r in rounds if r["status"] == "closed"]
    assert [r["number"] for r in closed] == [1, 2, 3]
    for rnd in closed:
        assert len(rnd["updates"]) == 3
        assert rnd["metrics"]["bytes_up"] == sum(u["bytes_wire"] for u in rnd["updates"]) > 0
        # The default wire: int4 deltas, about 15x smaller than float32 on this CNN.
        assert rnd["metrics"]["upload_encoding"] == "int4"
        assert rnd["metrics"]["compression_ratio"] > 10
        assert rnd["metrics"]["federated_base_accuracy"] is not None
    # Each version's evaluation is an engine task of its own: it may end after the run does.
    def evaluated() -> list[float] | None:
        found = [r["metrics"]["test_accuracy"] for r in server.rounds(run["id"]) if r["status"] == "closed"]
        return found if None not in found else None

    accuracies = wait_until(evaluated, timeout=120, what="every round's evaluation")
    assert accuracies[-1] >= 0.70, accuracies
    clients = server.get("/api/v1/clients/")
    assert all(c["bytes_received"] > 0 and c["bytes_sent"] > 0 for c in clients)
