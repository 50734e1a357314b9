"""Which events wake parked long-polls, and what a woken poll learns without asking the database."""
import asyncio
import time

from rounds.longpoll import Waker


def _waker() -> Waker:
    waker = Waker()

    async def no_listener() -> None:  # the events are dispatched by hand here
        return None

    waker.start = no_listener
    return waker


def _park(waker: Waker, run_id: int, client_id: int, timeout: float = 2.0):
    return asyncio.ensure_future(waker.wait(run_id, client_id, timeout, since=time.monotonic()))


def test_a_round_opening_wakes_only_the_selected_clients():
    async def scenario():
        waker = _waker()
        selected, other = _park(waker, 1, 10), _park(waker, 1, 11, timeout=0.3)
        await asyncio.sleep(0.01)
        waker.dispatch("round.opened", {"run": 1, "expected": [10], "open_places": 0})
        return await selected, await other

    assert asyncio.run(scenario()) == (True, False)


def test_a_run_ending_wakes_every_parked_poll_with_its_status():
    async def scenario():
        waker = _waker()
        looked = time.monotonic()
        polls = [_park(waker, 2, client) for client in (20, 21, 22)]
        await asyncio.sleep(0.01)
        waker.dispatch("run.changed", {"id": 2, "status": "finished"})
        return await asyncio.gather(*polls), waker.ended(2, since=looked), waker.ended(2, since=time.monotonic() + 1)

    woken, ended, later = asyncio.run(scenario())
    assert woken == [True, True, True]
    assert ended == "finished"
    assert later is None  # a poll that looked after the end learnt it from the database itself


def test_a_paused_run_leaves_idle_polls_parked():
    async def scenario():
        waker = _waker()
        poll = _park(waker, 3, 30, timeout=0.3)
        await asyncio.sleep(0.01)
        waker.dispatch("run.changed", {"id": 3, "status": "paused"})
        return await poll, waker.ended(3, since=0.0)

    assert asyncio.run(scenario()) == (False, None)


def test_a_kicked_client_is_woken_alone():
    async def scenario():
        waker = _waker()
        kicked, other = _park(waker, 4, 40), _park(waker, 4, 41, timeout=0.3)
        await asyncio.sleep(0.01)
        waker.dispatch("client.status", {"id": 40, "run": 4, "status": "kicked"})
        return await kicked, await other

    assert asyncio.run(scenario()) == (True, False)


# Each event with whether it can wake a parked poll: the long-polls hear only the wake group,
# so an event the rule leaves out must be one dispatch would ignore anyway.
EVENTS = [
    ("round.opened", {"run": 5, "expected": [], "open_places": 3}, True),
    ("client.status", {"id": 50, "run": 5, "status": "kicked"}, True),
    ("client.status", {"id": 50, "run": 5, "status": "left"}, True),
    ("run.changed", {"id": 5, "status": "stopped"}, True),
    ("client.status", {"id": 50, "run": 5, "status": "training"}, False),
    ("run.changed", {"id": 5, "status": "paused"}, False),
    ("round.closed", {"run": 5, "round": 1}, False),
    ("update.received", {"run": 5, "client": 50}, False),
]


def test_only_the_events_sent_to_the_wake_group_wake_anyone():
    from rounds.longpoll import wakes_devices

    async def woken_by(kind: str, data: dict) -> bool:
        waker = _waker()
        poll = _park(waker, 5, 50, timeout=0.2)
        await asyncio.sleep(0.01)
        waker.dispatch(kind, data)
        return await poll

    for kind, data, wakes in EVENTS:
        assert wakes_devices(kind, data) is wakes, kind
        assert asyncio.run(woken_by(kind, data)) is wakes, (kind, data)


def test_an_event_records_whether_it_wakes_devices(db, settings):
    from django.db import transaction

    from fedplatform.events import emit
    from fedplatform.models import OutboxEvent

    settings.REDIS_URL = ""  # one process: events leave through the outbox table
    with transaction.atomic():
        for kind, data, _ in EVENTS:
            emit(kind, data)
    assert [(e.kind, e.wakes) for e in OutboxEvent.objects.order_by("id")] == [(k, w) for k, _, w in EVENTS]
