"""Dynamic membership with real processes: crashes, a late joiner and a live configuration change.

One run is played once per backing (module fixture: SQLite; PostgreSQL + Redis) and each test
checks one thing it must show.
5 workers start (a round needs all 5); in round 2 two of them are SIGKILLed while training, a sixth worker starts, and
the operator changes the learning rate, clients per round and minimum clients.
"""
import pytest

from backings import BACKINGS, backing_for
from processes import Server, Worker, stop_all, wait_until

pytestmark = pytest.mark.e2e
ROUND_TIMEOUT = 30


@pytest.fixture(scope="module", params=BACKINGS)
def churned(request, tmp_path_factory):
    with backing_for(request.param) as backing:
        yield from _play(Server(tmp_path_factory.mktemp("churn"), **backing))


def _play(server: Server):
    server.start()
    run = server.create_run(
        name="churn", rounds=3, min_clients=5, clients_per_round=6, min_updates=3, round_timeout=ROUND_TIMEOUT,
        offline_after=300, learning_rate=0.05,
    )
    workers = [Worker(server, run["id"], i, partitions=6, limit=600) for i in range(3)]
    # The two that crash train on half the training set (~7 s an epoch alone), so they are surely
    # mid-training when killed.
    workers += [Worker(server, run["id"], 0, partitions=1, limit=30000, name=f"worker-{i}") for i in (3, 4)]
    late = None
    try:
        def round_2_training():
            rounds = server.rounds(run["id"])
            if len(rounds) < 2 or rounds[1]["status"] != "open":
                return None
            clients = {c["name"]: c for c in server.get("/api/v1/clients/")}
            slow = [clients.get("worker-3"), clients.get("worker-4")]
            return all(c and c["status"] == "training" and c["progress"] > 0 for c in slow) and rounds[1]

        round_2 = wait_until(round_2_training, timeout=240, what="round 2 with the slow workers training")
        workers[3].kill()
        workers[4].kill()
        late = Worker(server, run["id"], 5, partitions=6, limit=600, name="late-joiner")
        server.patch(f"/api/v1/runs/{run['id']}/", {"learning_rate": 0.03, "clients_per_round": 4, "min_clients": 3})
        survivors = [workers[0], workers[1], workers[2], late]
        codes = [w.wait(timeout=300) for w in survivors]
        stop_all(workers + [late])
        yield {
            "server": server, "run": run, "round_2": round_2, "codes": codes, "rounds": server.rounds(run["id"]),
            "clients": {c["name"]: c for c in server.get("/api/v1/clients/")},
        }
    finally:
        stop_all(workers + ([late] if late else []))
        server.kill()


def _closed(rounds):
    return {r["number"]: r for r in rounds if r["status"] == "closed"}


def test_the_run_completes_all_its_rounds_and_survivors_exit_cleanly(churned):
    assert churned["server"].get(f"/api/v1/runs/{churned['run']['id']}/")["status"] == "finished"
    assert sorted(_closed(churned["rounds"])) == [1, 2, 3]
    assert churned["codes"] == [0, 0, 0, 0]


def test_round_2_closes_at_its_deadline_with_the_three_survivors_updates(churned):
    round_2 = _closed(churned["rounds"])[2]
    assert len(round_2["updates"]) == 3
    names = {u["client_name"] for u in round_2["updates"]}
    assert names == {"worker-0", "worker-1", "worker-2"}
    assert round_2["closed_at"] >= round_2["deadline"]


def test_a_worker_that_starts_during_round_2_trains_from_round_3(churned):
    late_id = churned["clients"]["late-joiner"]["id"]
    rounds = _closed(churned["rounds"])
    assert late_id not in rounds[2]["expected"]
    assert late_id in rounds[3]["expected"]
    assert "late-joiner" in {u["client_name"] for u in rounds[3]["updates"]}


def test_a_configuration_change_during_round_2_is_what_round_3_carries(churned):
    rounds = _closed(churned["rounds"])
    assert [rounds[n]["config_version"] for n in (1, 2, 3)] == [1, 1, 2]
    assert rounds[2]["hyperparameters"]["learning_rate"] == 0.05
    assert rounds[3]["hyperparameters"]["learning_rate"] == 0.03
    assert len(rounds[3]["expected"]) == 4  # the new clients_per_round, with 4 ready
