"""The round engine as separate processes: exactly one aggregation per round whatever dies or
races, and long-polls woken across processes; on SQLite and on PostgreSQL + Redis."""
import threading
import time

import pytest

from devices import HttpDevice
from backings import server_options
from processes import Server, wait_until

pytestmark = pytest.mark.e2e


def _versions(server: Server, run_id: int) -> list[int]:
    return [v["number"] for v in server.get(f"/api/v1/runs/{run_id}/versions/")]


def test_an_engine_worker_killed_mid_aggregation_leaves_the_round_to_be_closed_exactly_once(tmp_path, backing):
    # ResNet-18 updates take seconds to fold in: long enough to kill the worker in the middle.
    server = Server(tmp_path, **server_options(backing, FEDPLATFORM_CLOSE_LEASE="4"))
    server.start()
    try:
        run = server.create_run(
            name="kill the engine", arch="resnet18", dataset="cifar10", rounds=1, min_clients=6,
            clients_per_round=6, min_updates=6, round_timeout=600, offline_after=600,
        )
        devices = [HttpDevice(server.url, run["id"], f"d{i}") for i in range(6)]
        for device in devices:  # a device's first poll is what makes it selectable
            device.poll()
        tasks = [wait_until(lambda d=d: d.poll().status_code == 200 and d.poll().json(), 60, what="a task")
                 for d in devices]
        for device, task in zip(devices[:-1], tasks[:-1]):
            assert device.upload_synthetic(task).status_code == 201
        server.kill_engines()  # so the last upload's close waits for the worker we will kill
        assert devices[-1].upload_synthetic(tasks[-1]).status_code == 201
        doomed = server.start_engine()

        def closing():
            rounds = server.rounds(run["id"])
            return rounds and rounds[0]["status"] == "closing"

        wait_until(closing, timeout=120, interval=0.05, what="the round to be claimed")
        doomed.kill()  # SIGKILL, mid-aggregation
        doomed.wait()
        assert server.rounds(run["id"])[0]["status"] == "closing"
        server.start_engine()  # its sweep takes the dead claim back once the lease runs out
        wait_until(lambda: server.rounds(run["id"])[0]["status"] == "closed", timeout=180, what="the round to close")
        assert _versions(server, run["id"]) == [0, 1]
        assert len(server.rounds(run["id"])[0]["updates"]) == 6
        assert "every version reproduced exactly" in server.manage("audit_run", str(run["id"]))
    finally:
        server.kill()


def test_fifty_devices_long_polling_through_a_close_see_exactly_one_aggregation(tmp_path, backing):
    server = Server(tmp_path, engines=2, **backing)  # two engine workers race for every round
    server.start()
    try:
        run = server.create_run(name="fifty", rounds=2, min_clients=2, clients_per_round=2, min_updates=2,
                                round_timeout=300)
        devices = [HttpDevice(server.url, run["id"], f"d{i}") for i in range(50)]
        statuses: list[int] = []
        stop = threading.Event()

        def keep_polling(device: HttpDevice) -> None:
            while not stop.is_set():
                response = device.poll(wait=5)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    task = response.json()
                    statuses.append(device.upload_synthetic(task).status_code)
                elif response.status_code == 410:
                    return

        threads = [threading.Thread(target=keep_polling, args=(d,), daemon=True) for d in devices]
        for thread in threads:
            thread.start()
        wait_until(lambda: server.get(f"/api/v1/runs/{run['id']}/")["status"] == "finished", timeout=180,
                   what="the run to finish")
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        rounds = server.rounds(run["id"])
        assert [(r["number"], r["status"], len(r["updates"])) for r in rounds] == [(1, "closed", 2), (2, "closed", 2)]
        assert _versions(server, run["id"]) == [0, 1, 2]
        assert not [s for s in statuses if s >= 500], "a poll or upload failed"
        engine_log = "".join(p.read_text() for p in tmp_path.glob("engine-*.log"))
        for number in (1, 2):
            assert engine_log.count(f"round {number} closed") == 1, engine_log[-3000:]
        assert "every version reproduced exactly" in server.manage("audit_run", str(run["id"]))
    finally:
        server.kill()


def test_a_long_poll_is_woken_by_a_round_that_opens_through_another_server_process(tmp_path, backing):
    first = Server(tmp_path, **backing)
    second = Server(tmp_path, prepare=False, engines=0, **backing)
    first.start()
    second.start()
    try:
        run = first.create_run(name="wake", rounds=1, min_clients=2, clients_per_round=2, min_updates=1,
                               round_timeout=300)
        waiting = HttpDevice(first.url, run["id"], "waiting")
        answers: dict = {}

        def hold() -> None:
            started = time.monotonic()
            response = waiting.poll(wait=25)
            answers.update(status=response.status_code, at=time.monotonic(), held=time.monotonic() - started)

        holder = threading.Thread(target=hold)
        holder.start()
        time.sleep(2)  # the poll is parked now
        joined_at = time.monotonic()
        # Through the other process: its first poll proves it alive, and the round opens.
        HttpDevice(second.url, run["id"], "newcomer").poll()
        holder.join(timeout=40)
        assert answers["status"] == 200
        assert answers["at"] - joined_at < 3, answers  # woken, not timed out after 25 s
        assert answers["held"] > 1.5  # and it really was held
    finally:
        first.kill()
        second.kill()
