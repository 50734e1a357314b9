"""Updates folded in as they arrive (rounds.prefold): the close only adds the last ones, and the
version is bit for bit what folding every update at the close, and the audit, give."""
import numpy as np
import pytest
from django.core.management import call_command

from fedcore import codec
from protocol_helpers import Device, base_arrays, delta_body
from rounds import engine, prefold
from rounds.lifecycle import run_control, run_create
from rounds.models import Round, RoundStatus

pytestmark = pytest.mark.django_db


def _run(**config):
    created = run_create(name="prefold run", rounds=2, min_clients=3, clients_per_round=3, min_updates=1,
                         round_timeout=300, **config)
    return run_control(run=created, action="start")


def _upload_all(run, devices, shifts, examples):
    tasks = [d.task().json() for d in devices]
    for dev, task, shift, n in zip(devices, tasks, shifts, examples):
        assert dev.upload(task, delta_body(run, task, shift)[0], num_examples=n).status_code == 201
    return Round.objects.get(pk=tasks[0]["round"])


def _same_bits(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a
    )


def test_a_close_folds_only_the_last_update_and_gives_the_same_bits_as_folding_all(capsys):
    run = _run()
    devices = [Device(run.pk, name, n) for name, n in (("a", 100), ("b", 300), ("c", 7))]
    rnd = _upload_all(run, devices, (0.01, -0.03, 0.2), (100, 300, 7))

    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.CLOSED
    assert rnd.metrics["folded_ahead"] == 2  # each upload's tick folded it; the close added the third
    from_scratch = engine.aggregate_round(rnd, list(rnd.updates.order_by("pk"))).model
    assert _same_bits(base_arrays(run, 1), from_scratch)
    call_command("audit_run", str(run.pk))
    assert "every version reproduced exactly" in capsys.readouterr().out


def test_updates_folded_ahead_that_are_not_the_rounds_first_are_set_aside():
    run = _run()
    a, b, c = (Device(run.pk, name) for name in "abc")
    tasks = [d.task().json() for d in (a, b, c)]
    assert a.upload(tasks[0], delta_body(run, tasks[0], 0.01)[0]).status_code == 201  # folded ahead
    a_client = run.clients.get(pk=a.id)
    a_client.delete()  # its update goes with it: what was folded is no longer the round's
    assert b.upload(tasks[1], delta_body(run, tasks[1], -0.02)[0]).status_code == 201
    assert c.upload(tasks[2], delta_body(run, tasks[2], 0.05)[0]).status_code == 201

    rnd = Round.objects.get(pk=tasks[0]["round"])
    assert rnd.status == RoundStatus.CLOSED and rnd.metrics["participants"] == 2
    assert rnd.metrics["folded_ahead"] == 0
    assert _same_bits(base_arrays(run, 1), engine.aggregate_round(rnd, list(rnd.updates.order_by("pk"))).model)


def test_robust_rules_are_not_folded_ahead():
    run = _run(strategy="median")
    devices = [Device(run.pk, name) for name in "abc"]
    rnd = _upload_all(run, devices, (0.01, -0.03, 0.2), (100, 100, 100))
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.CLOSED and rnd.metrics["folded_ahead"] == 0


def test_folding_ahead_can_be_turned_off(settings):
    settings.FEDPLATFORM = {**settings.FEDPLATFORM, "PREFOLD_ROUNDS": 0}
    run = _run()
    devices = [Device(run.pk, name) for name in "abc"]
    rnd = _upload_all(run, devices, (0.01, -0.03, 0.2), (100, 100, 100))
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.CLOSED and rnd.metrics["folded_ahead"] == 0


def test_an_abandoned_round_leaves_nothing_folded_behind():
    run = _run()
    a, b, c = (Device(run.pk, name) for name in "abc")
    task = a.task().json()
    b.task(), c.task()
    assert a.upload(task, delta_body(run, task, 0.01)[0]).status_code == 201
    rnd = Round.objects.get(pk=task["round"])
    assert prefold.take(rnd, list(rnd.updates.order_by("pk")))[0] is not None  # it was folded
    prefold.fold_arrivals(rnd)  # fold again, then abandon
    assert engine.round_abandon(round_id=rnd.pk, reason="test")
    assert prefold.take(rnd, [])[0] is None


def test_the_mean_of_updates_folded_ahead_and_at_the_close_is_their_weighted_mean():
    run = _run()
    devices = [Device(run.pk, name, n) for name, n in (("a", 100), ("b", 300), ("c", 100))]
    base = base_arrays(run, 0)
    tasks = [d.task().json() for d in devices]
    sent = []
    for dev, task, shift, n in zip(devices, tasks, (0.01, -0.03, 0.02), (100, 300, 100)):
        body, _ = delta_body(run, task, shift)
        assert dev.upload(task, body, num_examples=n).status_code == 201
        sent.append(codec.decode(body).arrays)  # int4: the server averages what it decodes
    new = base_arrays(run, 1)
    for name, a in base.items():
        if a.dtype == np.float32:
            expected = a + (100 * sent[0][name] + 300 * sent[1][name] + 100 * sent[2][name]) / 500
            np.testing.assert_allclose(new[name], expected, rtol=0, atol=1e-6)
