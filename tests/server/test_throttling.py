"""Request rates: per address without credentials, per client for devices, per user for operators;
over the rate a caller gets 429 in the error shape, with Retry-After."""
import pytest
from rest_framework.test import APIClient

from protocol_helpers import Device

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    def set_rates(**rates):
        current = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {**current, **rates}}

    return set_rates


def _register(run, api=None):
    return (api or APIClient()).post("/api/v1/clients/", {"name": "d", "run": run.pk, "num_examples": 5}, format="json")


def _assert_throttled(response) -> None:
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1


def test_registrations_from_one_address_over_the_rate_get_429_with_retry_after(run, rates):
    rates(anonymous="3/min")
    assert [_register(run).status_code for _ in range(3)] == [201, 201, 201]
    _assert_throttled(_register(run))
    _assert_throttled(APIClient().get(f"/api/v1/clients/enrollment/?run={run.pk}"))  # the same scope
    assert _register(run, APIClient(REMOTE_ADDR="10.0.0.7")).status_code == 201  # another address


def test_a_device_over_its_rate_gets_429_and_other_devices_do_not(run, rates):
    rates(client="3/min")
    alpha = Device(run.pk, "alpha", poll=False)
    beta = Device(run.pk, "beta", poll=False)
    assert [alpha.task().status_code for _ in range(3)] == [204, 204, 204]
    _assert_throttled(alpha.task())
    _assert_throttled(alpha.api.post(f"/api/v1/clients/{alpha.id}/heartbeat/", {}, format="json"))
    assert beta.task().status_code == 200  # not throttled: its first poll opens a round for both


def test_an_operator_over_the_rate_gets_429(staff_api, rates):
    rates(operator="2/min")
    assert [staff_api.get("/api/v1/runs/").status_code for _ in range(2)] == [200, 200]
    _assert_throttled(staff_api.get("/api/v1/runs/"))


def test_an_empty_rate_turns_its_scope_off(run, rates):
    rates(anonymous=None)
    assert {_register(run).status_code for _ in range(20)} == {201}


def test_the_default_rates_come_from_the_environment():
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = ("import django; django.setup(); from django.conf import settings; "
              "print(settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'])")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "fedplatform.settings", "FEDPLATFORM_THROTTLE_CLIENT": "7/s",
           "FEDPLATFORM_THROTTLE_ANONYMOUS": "", "FEDPLATFORM_THROTTLE_OPERATOR": "9/hour"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "{'anonymous': None, 'client': '7/s', 'operator': '9/hour'}", done.stderr
