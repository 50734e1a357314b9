"""A run's strategy through the API and the engine: configured, validated, applied at every close,
its state stored beside each version and replayed by the audit."""
import numpy as np
import pytest
from django.core.management import call_command

from fedcore import codec
from protocol_helpers import base_arrays, delta_body
from rounds import blobs, runstrategy
from rounds.lifecycle import run_control, run_create
from rounds.models import Round, RoundStatus

pytestmark = pytest.mark.django_db


def _run(**config):
    created = run_create(name="strategy run", rounds=3, min_clients=2, clients_per_round=2, min_updates=1,
                         round_timeout=300, upload_encoding="float32", **config)
    return run_control(run=created, action="start")


def _task(dev) -> dict:
    """The device's task; after an upload its first poll makes it ready again (a 204)."""
    for _ in range(3):
        response = dev.task()
        if response.status_code == 200:
            return response.json()
    raise AssertionError(f"no task: {response.status_code}")


def _close_round(run, devices, shifts):
    """Every device uploads ``base + shift``; returns the closed round and the decoded deltas."""
    for dev in devices:  # each poll makes its device ready; the last one lets the round open
        dev.task()
    deltas = []
    for dev, shift in zip(devices, shifts):
        task = _task(dev)
        body, delta = delta_body(run, task, shift)
        assert dev.upload(task, body).status_code == 201
        deltas.append(delta)
    rnd = Round.objects.get(pk=task["round"])
    assert rnd.status == RoundStatus.CLOSED
    return rnd, deltas


def _device(run, name):
    from protocol_helpers import Device

    return Device(run.pk, name, 100)


def test_a_run_is_created_with_a_strategy_and_its_defaults_filled_in(staff_api):
    response = staff_api.post("/api/v1/runs/",
                              {"name": "adam", "strategy": "fedadam", "strategy_config": {"server_lr": 0.1}},
                              format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["strategy"] == "fedadam"
    assert body["strategy_config"] == {"server_lr": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 0.001, "clip_norm": 0.0}
    assert body["config"]["strategy_config"] == body["strategy_config"]


@pytest.mark.parametrize(
    "payload, code",
    [
        ({"strategy": "fedadam", "strategy_config": {"server_lr": -1}}, "invalid_strategy_config"),
        ({"strategy": "fedavg", "strategy_config": {"proximal_mu": 0.1}}, "invalid_strategy_config"),
        ({"strategy": "fedavg", "strategy_config": "fast"}, "invalid_strategy_config"),
        ({"strategy": "sgd"}, "invalid"),
    ],
)
def test_an_invalid_strategy_or_configuration_is_a_400_that_says_what_is_valid(staff_api, payload, code):
    response = staff_api.post("/api/v1/runs/", {"name": "bad", **payload}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code


def test_the_strategies_endpoint_lists_every_strategy_and_its_parameters(staff_api, client):
    body = staff_api.get("/api/v1/strategies/").json()
    names = [s["name"] for s in body]
    assert {"fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "median", "trimmed_mean",
            "krum"} <= set(names)
    prox = next(s for s in body if s["name"] == "fedprox")
    assert prox["params"]["proximal_mu"]["default"] == 0.01
    assert next(s for s in body if s["name"] == "median")["streaming"] is False
    assert client.get("/api/v1/strategies/").status_code in (401, 403)


def test_fedavgm_closes_rounds_with_server_momentum_stored_beside_each_version(db):
    run = _run(strategy="fedavgm", strategy_config={"server_momentum": 0.5})
    alpha, beta = _device(run, "alpha"), _device(run, "beta")
    base = base_arrays(run, 0)
    name = next(k for k, a in base.items() if a.dtype == np.float32 and k not in runstrategy.runtask.run_lossless(run))
    _, first = _close_round(run, (alpha, beta), (0.01, 0.03))
    mean1 = (first[0][name] + first[1][name]) / 2
    v1 = base_arrays(run, 1)
    np.testing.assert_allclose(v1[name], base[name] + mean1, atol=1e-6)
    state1 = runstrategy.load_state(run.versions.get(number=1))
    np.testing.assert_allclose(state1[f"v:{name}"], mean1, atol=1e-7)

    rnd2, second = _close_round(run, (alpha, beta), (0.02, 0.02))
    mean2 = (second[0][name] + second[1][name]) / 2
    np.testing.assert_allclose(base_arrays(run, 2)[name], v1[name] + 0.5 * mean1 + mean2, atol=1e-6)
    assert rnd2.metrics["strategy"] == "fedavgm"


def test_the_audit_replays_a_stateful_strategy_exactly_and_notices_a_tampered_state(db, capsys):
    run = _run(strategy="fedyogi")
    alpha, beta = _device(run, "alpha"), _device(run, "beta")
    _close_round(run, (alpha, beta), (0.01, -0.02))
    _close_round(run, (alpha, beta), (0.03, 0.01))
    call_command("audit_run", run.pk)
    assert "round 2: 2 updates -> v2: ok" in capsys.readouterr().out

    version = run.versions.get(number=1)
    state = {k: np.array(v) + 1e-4 for k, v in runstrategy.load_state(version).items()}
    data = codec.encode(state, encoding="float32", kind="full")
    version.strategy_state.name = blobs.store("tampered", data, blobs.sha256(data))
    version.strategy_state_sha256 = blobs.sha256(data)
    version.save()
    with pytest.raises(Exception, match="do not match"):
        call_command("audit_run", run.pk)


def test_fedprox_rounds_tell_devices_mu(db):
    run = _run(strategy="fedprox", strategy_config={"proximal_mu": 0.2})
    alpha, _beta = _device(run, "alpha"), _device(run, "beta")
    assert _task(alpha)["hyperparameters"]["proximal_mu"] == 0.2


def test_a_strategy_change_applies_from_the_next_round_and_the_strategy_itself_is_fixed(db, staff_api):
    run = _run(strategy="fedprox", strategy_config={"proximal_mu": 0.2})
    alpha, beta = _device(run, "alpha"), _device(run, "beta")
    assert _task(alpha)["hyperparameters"]["proximal_mu"] == 0.2
    response = staff_api.patch(f"/api/v1/runs/{run.pk}/", {"strategy_config": {"proximal_mu": 0.7}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["strategy_config"]["proximal_mu"] == 0.7
    assert _task(alpha)["hyperparameters"]["proximal_mu"] == 0.2  # the open round keeps its config
    _close_round(run, (alpha, beta), (0.01, 0.01))
    alpha.task(), beta.task()  # both ready again: the next round opens
    assert _task(alpha)["hyperparameters"]["proximal_mu"] == 0.7

    bad = staff_api.patch(f"/api/v1/runs/{run.pk}/", {"strategy_config": {"proximal_mu": 99}}, format="json")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_strategy_config")
    fixed = staff_api.patch(f"/api/v1/runs/{run.pk}/", {"strategy": "fedavg"}, format="json")
    assert fixed.status_code == 400


def test_a_robust_rule_closes_the_round_without_the_outlier(db):
    created = run_create(name="three", rounds=1, min_clients=3, clients_per_round=3, upload_encoding="float32",
                         strategy="median")
    run = run_control(run=created, action="start")
    devices = [_device(run, n) for n in ("a", "b", "c")]
    base = base_arrays(run, 0)
    _close_round(run, devices, (0.01, 0.02, 50.0))
    name = next(k for k, a in base.items() if a.dtype == np.float32 and k not in runstrategy.runtask.run_lossless(run))
    np.testing.assert_allclose(base_arrays(run, 1)[name], base[name] + 0.02, atol=1e-5)
