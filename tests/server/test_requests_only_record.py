"""Device requests record and answer; the engine does the rest."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from protocol_helpers import delta_body
from rounds.models import Round, RoundStatus, Run

pytestmark = pytest.mark.django_db

WRITES = ("INSERT", "UPDATE", "DELETE")


def _writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(WRITES)]


def test_an_idle_poll_reads_a_few_rows_and_writes_nothing(device):
    alpha = device("alpha")  # alone, below min_clients: nothing to do
    assert alpha.task().status_code == 204  # the first poll makes it ready (a real change)
    with CaptureQueriesContext(connection) as queries:
        assert alpha.task().status_code == 204
    assert _writes(queries.captured_queries) == []
    assert len(queries.captured_queries) <= 4


def test_the_last_upload_asks_for_a_tick_and_does_not_close_the_round(device, run, monkeypatch):
    alpha, beta = device("alpha"), device("beta")
    task_a, task_b = alpha.task().json(), beta.task().json()
    ticks: list[int] = []
    monkeypatch.setattr("rounds.tasks.tick", lambda run_id: ticks.append(run_id))
    assert alpha.upload(task_a, delta_body(run, task_a, 0.01)[0]).status_code == 201
    assert beta.upload(task_b, delta_body(run, task_b, 0.01)[0]).status_code == 201
    assert Round.objects.get(pk=task_a["round"]).status == RoundStatus.OPEN  # closing is the engine's
    assert ticks == [run.pk]  # two uploads, one tick: the request is coalesced with the first
    assert Run.objects.get(pk=run.pk).tick_requested_at is not None


def test_joins_share_one_later_tick_and_an_upload_brings_it_forward(run, monkeypatch):
    from rounds import dispatch

    enqueued: list[tuple] = []

    class Tick:  # the queue's task, recording how it was enqueued
        def __call__(self, run_id: int) -> None:
            enqueued.append(("now", run_id))

        def schedule(self, args: tuple, delay: float) -> None:
            enqueued.append(("later", *args, delay))

    monkeypatch.setattr("rounds.tasks.tick", Tick())
    Run.objects.filter(pk=run.pk).update(tick_requested_at=None)
    for _ in range(3):  # devices joining: one tick, a little later, covers them all
        dispatch._mark_due(run.pk, coalesce=True)
    assert enqueued == [("later", run.pk, dispatch.COALESCE_SECONDS)]
    for _ in range(2):  # an upload must not wait for it: one tick now, and only one
        dispatch._mark_due(run.pk)
    assert enqueued[1:] == [("now", run.pk)]
    dispatch._mark_due(run.pk, coalesce=True)  # a tick is already due now: nothing more
    assert len(enqueued) == 2


def test_a_poll_woken_by_its_round_answers_without_a_write_and_its_download_records_it_seen(device, run):
    from datetime import timedelta

    from django.utils import timezone

    from clients.models import Client
    from rounds import protocol

    alpha, _beta = device("alpha"), device("beta")  # two ready devices: the round is open
    assert alpha.task().status_code == 200
    # Parked long enough for last_seen to be due again, then woken by the round's opening.
    stale = timezone.now() - timedelta(seconds=20)
    Client.objects.filter(pk=alpha.id).update(last_seen=stale)
    client = Client.objects.select_related("run").get(pk=alpha.id)
    with CaptureQueriesContext(connection) as queries:
        task = protocol.task_for(client=client, seen=False)  # the woken look (rounds.longpoll)
    assert task is not None and task["round_number"] == 1
    assert _writes(queries.captured_queries) == []
    assert alpha.api.get(task["model_url"]).status_code == 200  # the download that follows the task
    assert Client.objects.get(pk=alpha.id).last_seen > stale


def test_a_model_download_is_three_reads_and_one_transaction_of_two_writes(device):
    """A round's devices all download at the moment it opens: the token's client, the version
    with its broadcast, the round it is for; then the client's counters and the Download row."""
    alpha, _beta = device("alpha"), device("beta")
    task = alpha.task().json()
    assert alpha.api.get(task["model_url"]).status_code == 200  # the first moves it to "update"
    with CaptureQueriesContext(connection) as queries:
        assert alpha.api.get(task["model_url"]).status_code == 200
    statements = [q["sql"].lstrip().upper() for q in queries.captured_queries]
    writes = [q for q in statements if q.startswith(WRITES)]
    reads = [q for q in statements if q.startswith("SELECT")]
    assert len(reads) == 3
    assert [w.split()[0] + " " + w.split()[1 if w.startswith("UPDATE") else 2] for w in writes] == [
        'UPDATE "CLIENTS_CLIENT"', 'INSERT "ROUNDS_DOWNLOAD"'
    ]
