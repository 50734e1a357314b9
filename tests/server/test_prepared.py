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


def test_a_parameter_the_query_does_not_use_is_refused(db):
    unused = Prepared(lambda h: Client.objects.filter(name="x"), str)
    with pytest.raises(ValueError, match="each parameter must appear once"):
        unused.first("a")
