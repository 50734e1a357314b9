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
