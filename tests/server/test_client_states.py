"""Client status transitions: legal moves happen and are recorded; illegal ones are refused."""
import pytest

from clients.models import Client, ClientEvent, ClientStatus
from clients.services import client_register, client_transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(run) -> Client:
    return client_register(run=run, name="dev", num_examples=10, device_info={}, accepts=[])[0]


def test_a_legal_move_changes_the_status_and_records_a_history_row(client):
    assert client_transition(client=client, to=ClientStatus.READY, reason="idle")
    assert client.status == ClientStatus.READY
    event = ClientEvent.objects.filter(client=client).last()
    assert (event.from_status, event.to_status, event.reason) == ("join", "ready", "idle")


def test_an_illegal_move_is_refused_and_leaves_no_trace(client):
    before = ClientEvent.objects.count()
    assert not client_transition(client=client, to=ClientStatus.FINISH)
    assert Client.objects.get(pk=client.pk).status == ClientStatus.JOIN
    assert ClientEvent.objects.count() == before


def test_a_client_that_left_can_never_come_back(client):
    assert client_transition(client=client, to=ClientStatus.LEFT)
    for status in (ClientStatus.READY, ClientStatus.TRAINING, ClientStatus.PAUSED, ClientStatus.OFFLINE):
        assert not client_transition(client=client, to=status)
    assert Client.objects.get(pk=client.pk).status == ClientStatus.LEFT


def test_a_kicked_client_cannot_be_resumed_by_a_later_request(client):
    assert client_transition(client=client, to=ClientStatus.KICKED)
    assert not client_transition(client=client, to=ClientStatus.READY)


def test_an_offline_client_may_come_back_as_ready(client):
    assert client_transition(client=client, to=ClientStatus.OFFLINE)
    assert client_transition(client=client, to=ClientStatus.READY)


def test_a_move_decided_on_a_stale_copy_uses_the_database_status(client):
    stale = Client.objects.get(pk=client.pk)
    assert client_transition(client=client, to=ClientStatus.LEFT)
    assert not client_transition(client=stale, to=ClientStatus.READY)
    assert stale.status == ClientStatus.LEFT
