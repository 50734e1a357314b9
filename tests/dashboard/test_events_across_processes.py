"""With REDIS_URL set, an event published by one server process reaches dashboards connected to
another: the scale-out path, through a real Redis."""
import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from channels.layers import get_channel_layer
from django.test import Client as HttpClient

from fedplatform.asgi import application
from fedplatform.channel_layers import channel_layers

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("FEDPLATFORM_TEST_REDIS", "redis://127.0.0.1:6379/0")
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_layer(settings):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        if os.environ.get("FEDPLATFORM_REQUIRE_SERVICES") == "1":
            raise
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    settings.CHANNEL_LAYERS = channel_layers(REDIS_URL)


def test_an_event_from_another_process_reaches_a_dashboard_socket_that_sat_quiet(redis_layer, django_user_model):
    browser = HttpClient()
    browser.force_login(django_user_model.objects.create_user("olivia", password="pw-olivia-123", is_staff=True))
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    marker = uuid.uuid4().hex
    publisher = (
        "import django; django.setup()\n"
        "from fedplatform.events import emit\n"
        f"emit('run.changed', {{'marker': '{marker}'}})\n"
    )

    async def scenario():
        headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", cookie.encode())]
        socket = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)
        connected, _ = await socket.connect(timeout=5)
        assert connected
        # Quiet for longer than one blocking wait on Redis, as a dashboard is between rounds.
        await asyncio.sleep(get_channel_layer().brpop_timeout + 1)
        env = {**os.environ, "REDIS_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "fedplatform.settings"}
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-c", publisher, cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(done.communicate(), timeout=120)
        assert done.returncode == 0, stderr.decode()
        while True:
            message = await socket.receive_json_from(timeout=10)
            if message["data"].get("marker") == marker:
                await socket.disconnect()
                return message

    assert async_to_sync(scenario)()["event"] == "run.changed"
