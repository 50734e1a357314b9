"""Prepared reads give exactly what the ORM gives, for any parameters, on either database."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clients.models import Client
from fedplatform.prepared import Prepared
from rounds.models import ModelVersion

by_token = Prepared(lambda h: Client.objects.select_related("run").filter(token_hash=h), str)
version_numbered = Prepared(lambda run, number: ModelVersion.objects.filter(run_id=run, number=number), int, int)
newest_version = Prepared(lambda run: ModelVersion.objects.filter(run_id=run).order_by("-number")[:1], int)


def _fields(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if k != "_state"}


def test_a_prepared_read_builds_the_same_objects_as_the_orm(run, device):
    for name in ("alice", "bob"):
        d = device(name)
        Client.objects.filter(pk=d.id).update(device_info={"cores": 2, "name": name})
        client = Client.objects.select_related("run").get(pk=d.id)
        prepared = by_token.first(client.token_hash)
        assert _fields(prepared) == _fields(client)  # JSON, datetimes and all, converted alike
        assert _fields(prepared.run) == _fields(client.run)  # select_related filled in
        assert prepared._state.adding is False and prepared._state.db == "default"


def test_it_runs_one_query_with_each_calls_parameters(run, device):
    alice = Client.objects.get(pk=device("alice").id)
    by_token.first(alice.token_hash)  # compiled
    with CaptureQueriesContext(connection) as queries:
        assert by_token.first("no such hash") is None
        assert by_token.first(alice.token_hash).pk == alice.pk
    assert len(queries) == 2


def test_integer_parameters_and_ordering(run):
    assert [v.number for v in run.versions.all()] == [0]
    assert version_numbered.first(run.pk, 0).pk == run.versions.get(number=0).pk
    assert version_numbered.first(run.pk, 1) is None
    assert version_numbered.first(run.pk + 1, 0) is None
    assert newest_version.first(run.pk).number == 0


@pytest.mark.parametrize("made_up", [2**63, -(2**63) - 1, 46057044073805655310336])
def test_an_integer_no_column_can_hold_finds_and_changes_nothing(run, made_up):
    from fedplatform.prepared import PreparedUpdate

    assert version_numbered.first(made_up, 0) is None  # SQLite refuses to bind it; the ORM finds nothing
    rename = PreparedUpdate(lambda pk, name: (Client.objects.filter(pk=pk), {"name": name}), int, str)
    assert rename.run(made_up, "x") == 0


def test_a_parameter_the_query_does_not_use_is_refused(db):
    unused = Prepared(lambda h: Client.objects.filter(name="x"), str)
    with pytest.raises(ValueError, match="each parameter must appear once"):
        unused.first("a")


def test_a_prepared_update_changes_what_update_would_and_counts_rows(run, device):
    from datetime import datetime, timedelta, timezone

    from fedplatform.prepared import PreparedUpdate

    move = PreparedUpdate(
        lambda pk, current, to, at: (Client.objects.filter(pk=pk, status=current), {"status": to, "last_seen": at}),
        int, str, str, datetime,
    )
    alice = Client.objects.get(pk=device("alice", poll=False).id)
    at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    assert move.run(alice.pk, "ready", "paused", at) == 0  # not in that status: nothing changes
    assert move.run(alice.pk, alice.status, "paused", at) == 1
    alice.refresh_from_db()
    assert (alice.status, alice.last_seen) == ("paused", at)
    assert move.run(alice.pk, "paused", "ready", at + timedelta(days=1)) == 1
    assert Client.objects.filter(last_seen__gt=at).count() == 1


def test_a_prepared_insert_creates_what_create_would(run, device):
    from clients.models import ClientEvent
    from fedplatform.prepared import PreparedInsert

    alice = Client.objects.get(pk=device("alice", poll=False).id)
    made = PreparedInsert(ClientEvent).create(client=alice, from_status="join", to_status="ready", reason="r")
    stored = ClientEvent.objects.get(pk=made.pk)
    assert (stored.client_id, stored.to_status, stored.reason, stored.round_id) == (alice.pk, "ready", "r", None)
    assert stored.at is not None and made.at == stored.at  # auto_now_add, as create() sets it
    assert made._state.adding is False
