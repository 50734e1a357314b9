"""worker.session: the one HTTP helper, exercised over real HTTP."""
from __future__ import annotations

import threading
import time

import pytest
import requests
from worker_stubhttp import Reply, StubServer, error, free_port

from worker.session import ApiError, ApiSession, ServerUnreachable, api_root, retry_after


def fast_session(url: str, **kwargs) -> ApiSession:
    kwargs.setdefault("max_retry_seconds", 10.0)
    return ApiSession(url, backoff_base=0.05, backoff_cap=0.2, **kwargs)


def test_503_answers_are_retried_until_the_server_answers(stub_server):
    answers = iter([Reply(503), Reply(503), Reply(200, {"ok": True})])
    server = stub_server({("GET", "/api/v1/ping/"): lambda request: next(answers)})
    retries = []
    session = fast_session(server.url, on_retry=lambda what, delay: retries.append(what))

    assert session.json_call("GET", "ping/") == {"ok": True}
    assert len(server.calls("GET", "/api/v1/ping/")) == 3
    assert len(retries) == 2 and "503" in retries[0]


def test_a_429_is_waited_out_for_its_retry_after_and_tried_again(stub_server):
    answers = iter([Reply(429, {"code": "throttled", "detail": "slow down"}, headers={"Retry-After": "1"}),
                    Reply(201, {"id": 1})])
    server = stub_server({("POST", "/api/v1/clients/"): lambda request: next(answers)})
    delays = []
    session = ApiSession(server.url, backoff_base=0.05, backoff_cap=5.0,
                         on_retry=lambda what, delay: delays.append(delay))

    assert session.json_call("POST", "clients/", {"name": "d"}) == {"id": 1}
    assert len(server.calls("POST", "/api/v1/clients/")) == 2
    assert delays and delays[0] >= 1.0  # the server's Retry-After, not the short backoff


def test_a_refused_connection_is_retried_until_the_server_comes_up():
    port = free_port()
    server = StubServer({("GET", "/api/v1/ping/"): lambda request: Reply(200, {"up": True})}, port=port)
    # Nothing listens on the port yet: the first attempts are refused at the TCP level.
    starter = threading.Timer(0.5, server.start)
    starter.start()
    try:
        session = fast_session(f"http://127.0.0.1:{port}")
        started = time.monotonic()
        assert session.json_call("GET", "ping/") == {"up": True}
        assert time.monotonic() - started >= 0.4  # it really had to wait for the server
    finally:
        starter.join()
        server.stop()


def test_the_session_gives_up_after_max_retry_seconds(stub_server):
    server = stub_server({("GET", "/api/v1/ping/"): lambda request: Reply(503)})
    session = fast_session(server.url, max_retry_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(ServerUnreachable, match="503"):
        session.request("GET", "ping/")
    assert time.monotonic() - started < 2.0
    assert len(server.calls("GET", "/api/v1/ping/")) >= 2


def test_without_retry_the_first_failure_raises_at_once(stub_server):
    server = stub_server({("POST", "/api/v1/beat/"): lambda request: Reply(503)})
    with pytest.raises(ServerUnreachable):
        fast_session(server.url).request("POST", "beat/", json={}, retry=False)
    assert len(server.calls("POST", "/api/v1/beat/")) == 1


def test_a_json_error_body_becomes_an_api_error_with_status_code_and_detail(stub_server):
    server = stub_server({
        ("PUT", "/api/v1/rounds/3/updates/5/"):
            lambda request: error(409, "round_closed", "round 3 closed at 10:00"),
    })
    with pytest.raises(ApiError) as caught:
        fast_session(server.url).request("PUT", "/api/v1/rounds/3/updates/5/", data=b"x")
    assert (caught.value.status, caught.value.code, caught.value.detail) == (
        409, "round_closed", "round 3 closed at 10:00")
    # 4xx is the caller's fault: never retried.
    assert len(server.calls("PUT", "/api/v1/rounds/3/updates/5/")) == 1


def test_an_error_without_a_json_body_still_gets_a_code(stub_server):
    server = stub_server({("GET", "/api/v1/x/"): lambda request: Reply(500, b"Internal Server Error")})
    with pytest.raises(ApiError) as caught:
        fast_session(server.url).request("GET", "x/")
    assert caught.value.status == 500
    assert caught.value.code == "http_500"
    assert caught.value.detail == "Internal Server Error"


def test_the_token_is_sent_as_an_authorization_header(stub_server):
    server = stub_server({("GET", "/api/v1/me/"): lambda request: Reply(204)})
    fast_session(server.url, token="s3cret").request("GET", "me/")
    assert server.requests[0].headers["Authorization"] == "Token s3cret"


def test_relative_and_absolute_paths_resolve_against_the_api_root():
    assert api_root("http://h:8000") == "http://h:8000/api/v1/"
    assert api_root("http://h:8000/api/v1/") == "http://h:8000/api/v1/"
    session = ApiSession("http://h:8000/")
    assert session.url("clients/") == "http://h:8000/api/v1/clients/"
    assert session.url("/api/v1/runs/1/model/?version=2") == "http://h:8000/api/v1/runs/1/model/?version=2"


def test_retry_after_is_read_from_a_204(stub_server):
    server = stub_server({("GET", "/api/v1/task/"): lambda request: Reply(204, headers={"Retry-After": "7"})})
    response = fast_session(server.url).request("GET", "task/")
    assert response.status_code == 204
    assert retry_after(response, 1.0) == 7.0
    assert retry_after(requests.Response(), 1.5) == 1.5  # absent: the caller's default
