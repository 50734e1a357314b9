import pytest
from rest_framework.test import APIClient

from protocol_helpers import Device
from rounds.lifecycle import run_control, run_create


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user("olivia", password="pw-olivia-123", is_staff=True)


@pytest.fixture
def staff_api(operator) -> APIClient:
    api = APIClient()
    api.force_login(operator)
    return api


@pytest.fixture
def run(db):
    """A running two-round run that opens a round as soon as two clients are ready."""
    created = run_create(name="test run", rounds=2, min_clients=2, clients_per_round=2, min_updates=1,
                         round_timeout=300)
    return run_control(run=created, action="start")


@pytest.fixture
def device(run):
    def make(name: str, num_examples: int = 100, *, poll: bool = True) -> Device:
        return Device(run.pk, name, num_examples, poll=poll)

    return make
