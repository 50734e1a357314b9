"""The dashboard's websocket: only logged-in staff from an allowed origin get a socket, and the
platform's state changes arrive on it as events once their transaction commits."""
import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client as HttpClient

from clients.services import client_pause
from dashboard_helpers import join, running_run, train_one_round
from fedplatform.asgi import application
from rounds.lifecycle import run_configure

# The consumer reads the session from another thread, so the data must really be committed.
pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED_ORIGIN = "http://localhost"


@pytest.fixture(autouse=True)
def _fresh_channel_layer(settings):
    # A new in-memory layer per test: its queues belong to the event loop that first used them.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def staff_cookie(django_user_model) -> str:
    return _session_cookie(django_user_model.objects.create_user("olivia", password="pw-olivia-123", is_staff=True))


def _session_cookie(user) -> str:
    browser = HttpClient()
    browser.force_login(user)
    return f"sessionid={browser.cookies['sessionid'].value}"


async def _connect(cookie: str | None = None, origin: str = ALLOWED_ORIGIN):
    headers = [(b"host", b"localhost"), (b"origin", origin.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    socket = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)
    connected, _code = await socket.connect(timeout=5)
    return socket, connected


async def _next_event(socket, name: str, match=lambda data: True, timeout: float = 10) -> dict:
    """The first ``name`` event whose data matches, skipping the others the services publish."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"no {name} event within {timeout}s"
        message = await socket.receive_json_from(timeout=left)
        if message["event"] == name and match(message["data"]):
            return message["data"]


def test_a_socket_without_a_session_is_refused():
    async def scenario():
        socket, connected = await _connect()
        await socket.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def test_a_logged_in_user_who_is_not_staff_is_refused(django_user_model):
    cookie = _session_cookie(django_user_model.objects.create_user("eve", password="pw-eve-12345"))

    async def scenario():
        socket, connected = await _connect(cookie)
        await socket.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def test_viewers_and_operators_get_a_socket_and_its_events(role_user):
    run = running_run()
    client = join(run, "alpha")
    cookies = [_session_cookie(role_user("vera", "viewer")), _session_cookie(role_user("oscar", "operator"))]

    async def scenario():
        sockets = []
        for cookie in cookies:
            socket, connected = await _connect(cookie)
            assert connected
            sockets.append(socket)
        await database_sync_to_async(client_pause)(client=client, actor="olivia")
        seen = [await _next_event(socket, "client.status", lambda d: d["id"] == client.pk) for socket in sockets]
        for socket in sockets:
            await socket.disconnect()
        return seen

    assert [data["status"] for data in async_to_sync(scenario)()] == ["paused", "paused"]


def test_the_socket_takes_nothing_from_the_browser(role_user):
    cookie = _session_cookie(role_user("vera", "viewer"))

    async def scenario():
        socket, connected = await _connect(cookie)
        assert connected
        await socket.send_json_to({"action": "kick", "client": 1})
        output = await socket.receive_output(timeout=5)
        await socket.disconnect()
        return output

    assert async_to_sync(scenario)() == {"type": "websocket.close", "code": 4405}


def test_a_staff_session_from_another_origin_is_refused(staff_cookie):
    async def scenario():
        results = []
        for origin in ("http://evil.example", "http://localhost.evil.example"):
            socket, connected = await _connect(staff_cookie, origin=origin)
            await socket.disconnect()
            results.append(connected)
        socket, connected = await _connect(staff_cookie)  # the same session from the right origin
        await socket.disconnect()
        return results, connected

    refused, accepted = async_to_sync(scenario)()
    assert refused == [False, False]
    assert accepted is True


def test_pausing_a_client_arrives_as_a_client_status_event(staff_cookie):
    run = running_run()
    client = join(run, "alpha")

    async def scenario():
        socket, connected = await _connect(staff_cookie)
        assert connected
        await database_sync_to_async(client_pause)(client=client, actor="olivia")
        data = await _next_event(socket, "client.status", lambda d: d["id"] == client.pk)
        await socket.disconnect()
        return data

    data = async_to_sync(scenario)()
    assert data["status"] == "paused"
    assert data["run"] == run.pk
    assert data["name"] == "alpha"


def test_a_closed_round_arrives_with_its_metrics(staff_cookie):
    run = running_run()

    async def scenario():
        socket, connected = await _connect(staff_cookie)
        assert connected
        client = await database_sync_to_async(join)(run, "alpha")  # a round opens for it at once
        task = await database_sync_to_async(train_one_round)(run, client)
        opened = await _next_event(socket, "round.opened", lambda d: d["id"] == task["round"])
        received = await _next_event(socket, "round.update_received", lambda d: d["round"] == task["round"])
        closed = await _next_event(socket, "round.closed", lambda d: d["id"] == task["round"])
        await socket.disconnect()
        return client, opened, received, closed

    client, opened, received, closed = async_to_sync(scenario)()
    assert opened["expected"] == [client.pk]
    assert received["client"] == client.pk and received["bytes"] > 0
    assert closed["status"] == "closed"
    assert closed["number"] == 1
    assert closed["metrics"]["participants"] == 1
    assert closed["metrics"]["bytes_up"] == received["bytes"]


def test_a_configuration_change_arrives_with_its_new_version(staff_cookie):
    run = running_run(learning_rate=0.05)

    async def scenario():
        socket, connected = await _connect(staff_cookie)
        assert connected
        await database_sync_to_async(run_configure)(run=run, changes={"learning_rate": 0.01}, author="olivia")
        data = await _next_event(socket, "run.changed", lambda d: d["id"] == run.pk)
        await socket.disconnect()
        return data

    data = async_to_sync(scenario)()
    assert data["config_version"] == 2
    assert data["config"]["learning_rate"] == 0.01


def test_a_change_that_rolls_back_sends_nothing(staff_cookie):
    run = running_run(min_clients=2)  # no round opens for one client: its status is its own
    client = join(run, "alpha")

    def pause_then_fail() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            client_pause(client=client, actor="olivia")
            raise RuntimeError("the request failed after the pause")

    async def scenario():
        socket, connected = await _connect(staff_cookie)
        assert connected
        await database_sync_to_async(pause_then_fail)()
        nothing = await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()
        return nothing

    assert async_to_sync(scenario)() is True
    client.refresh_from_db()
    assert client.status == "join"
