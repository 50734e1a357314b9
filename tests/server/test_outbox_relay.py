"""The outbox relay (one process, no Redis): every event made once it was asked to start arrives."""
import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from fedplatform.events import EVENTS_GROUP, emit, relay

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _one_process(settings):
    settings.REDIS_URL = ""  # events leave through the outbox table
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def _next(layer, channel: str, kind: str, timeout: float = 5) -> dict:
    async def receive() -> dict:
        while True:
            message = await asyncio.wait_for(layer.receive(channel), timeout)
            if message["event"] == kind:
                return message["data"]

    return receive()


def test_an_event_made_before_the_relays_first_read_is_still_relayed():
    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(EVENTS_GROUP, channel)
        await sync_to_async(emit)("test.before", {"n": 0})  # committed (autocommit) before the relay is asked for
        await asyncio.sleep(0.01)  # the clock moves past it
        relay.ensure_started()
        # The relay's task has not run yet: this one is made before its first look at the table.
        await sync_to_async(emit)("test.after", {"n": 1})
        data = await _next(layer, channel, "test.after")
        return data

    assert async_to_sync(scenario)() == {"n": 1}
