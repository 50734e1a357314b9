"""Every 4xx and 5xx is JSON ``{"code", "detail"}`` with a stable code (docs/api.md), from DRF,
from Django's own handlers and from the ASGI layer; every 5xx is logged with its traceback."""
import json
import logging

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.test import Client as DjangoClient
from django.test import RequestFactory
from rest_framework import exceptions
from rest_framework.test import APIClient

from clients.services import client_kick
from clients.models import Client
from fedplatform import errors
from fedplatform.asgi import http_app

pytestmark = pytest.mark.django_db


def shaped(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert body["code"] == code and isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.fixture
def alpha(device):
    return device("alpha")


@pytest.mark.parametrize("path", [
    "/api/v1/clients/null,null/", "/api/v1/clients/false/", "/api/v1/clients/null,null/task/",
    "/api/v1/clients/false/heartbeat/", "/api/v1/runs/false/model/", "/api/v1/runs/1.5/",
    "/api/v1/rounds/null/updates/1/", "/api/v1/rounds/1/updates/false/", "/api/v1/runs/" + "9" * 19 + "/",
    "/api/v1/clients/%C2%B2/", "/api/v1/no-such-thing/", "/runs/false/snapshot.json",
])
def test_an_id_that_is_not_one_or_a_path_that_is_nothing_is_a_json_404(staff_api, path):
    shaped(staff_api.get(path), 404, "not_found")


def test_a_missing_object_is_a_404_with_a_code(staff_api):
    shaped(staff_api.get("/api/v1/runs/999999/"), 404, "not_found")
    shaped(staff_api.get("/api/v1/rounds/999999/"), 404, "not_found")
    shaped(staff_api.get("/api/v1/clients/999999/"), 404, "not_found")


def test_a_model_error_is_json_even_where_the_tensor_renderer_answers(run, alpha):
    shaped(alpha.api.get(f"/api/v1/runs/{run.pk}/model/?version=77"), 404, "no_such_version")


def test_a_method_the_endpoint_does_not_have_is_a_405(staff_api, run):
    shaped(staff_api.delete(f"/api/v1/runs/{run.pk}/"), 405, "method_not_allowed")


@pytest.mark.parametrize(("method", "path"), [("delete", "/api/v1/clients/enrollment/"), ("put", "/api/v1/clients/"),
                                              ("patch", "/api/v1/clients/enrollment/")])
def test_a_method_a_path_without_credentials_does_not_have_is_a_405_to_anyone(method, path):
    response = getattr(APIClient(), method)(path)
    shaped(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


def test_a_body_in_a_media_type_the_endpoint_does_not_parse_is_a_415(staff_api):
    shaped(staff_api.post("/api/v1/runs/", "name=x", content_type="text/plain"), 415, "unsupported_media_type")


@pytest.mark.parametrize("body", ["{bad", "[" * 100_000, '{"name": ' * 50_000 + "1" + "}" * 50_000, "NaN"])
def test_json_that_does_not_parse_is_a_400(staff_api, body):
    shaped(staff_api.post("/api/v1/runs/", body, content_type="application/json"), 400, "parse_error")


def test_a_json_body_over_the_request_limit_is_a_413(staff_api, settings):
    settings.FEDPLATFORM = {**settings.FEDPLATFORM, "MAX_REQUEST_BYTES": 100}
    shaped(staff_api.post("/api/v1/runs/", json.dumps({"name": "x" * 200}), content_type="application/json"),
           413, "too_large")


def test_invalid_fields_are_a_400_naming_them(staff_api):
    body = shaped(staff_api.post("/api/v1/runs/", {"rounds": -1}, format="json"), 400, "invalid")
    assert "rounds" in body["errors"]


def test_no_credentials_a_bad_token_and_a_kicked_token_each_have_their_code(alpha):
    anonymous = APIClient()
    shaped(anonymous.get(f"/api/v1/clients/{alpha.id}/task/"), 401, "not_authenticated")
    anonymous.credentials(HTTP_AUTHORIZATION="Token nope")
    shaped(anonymous.get(f"/api/v1/clients/{alpha.id}/task/"), 401, "authentication_failed")
    client_kick(client=Client.objects.get(pk=alpha.id), actor="olivia")
    shaped(alpha.task(), 403, "kicked")


def test_a_throttled_request_says_so_and_when_to_come_back():
    response = errors.exception_handler(exceptions.Throttled(wait=7), {})
    assert response.status_code == 429 and response["Retry-After"] == "7"
    assert response.data["code"] == "throttled" and response.data["detail"]


def test_a_crash_is_a_json_500_and_logged_with_its_traceback_without_debug(alpha, monkeypatch, settings):
    settings.DEBUG = False
    monkeypatch.setattr("rounds.protocol.task_for", lambda **_: 1 / 0)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("django.request")  # does not propagate: listen on it directly
    logger.addHandler(handler)
    try:
        response = DjangoClient(raise_request_exception=False).get(
            f"/api/v1/clients/{alpha.id}/task/", HTTP_AUTHORIZATION=f"Token {alpha.token}"
        )
    finally:
        logger.removeHandler(handler)
    shaped(response, 500, "server_error")
    assert any(r.levelno == logging.ERROR and r.exc_info and r.exc_info[0] is ZeroDivisionError for r in records)
    assert logger.getEffectiveLevel() <= logging.ERROR and logger.handlers  # and configured to print


def test_a_host_the_server_does_not_serve_is_a_json_400():
    shaped(DjangoClient().get("/api/v1/", HTTP_HOST="evil.example"), 400, "disallowed_host")


def test_djangos_own_403_and_csrf_failure_answer_in_the_same_shape():
    request = RequestFactory().post("/api/v1/clients/")
    shaped(errors.permission_denied(request), 403, "forbidden")
    shaped(errors.csrf_failure(request, reason="no token"), 403, "csrf_failed")
    shaped(errors.bad_request(request), 400, "bad_request")
    shaped(errors.server_error(request), 500, "server_error")


def test_a_browser_asking_for_a_page_that_is_not_there_gets_djangos_page():
    response = DjangoClient().get("/no-such-page/", HTTP_ACCEPT="text/html")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def asgi_get(path: str, query: bytes = b"") -> tuple[int, dict, bytes]:
    async def exchange():
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
            "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        }
        app = ApplicationCommunicator(http_app, scope)
        await app.send_input({"type": "http.request", "body": b""})
        start = await app.receive_output(30)
        body = b""
        while True:
            message = await app.receive_output(30)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        return start["status"], dict(start["headers"]), body

    return async_to_sync(exchange)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/api/v1/clients/1/", "/api/v1/clients/1/task/"])  # both ASGI handlers
def test_a_query_string_that_is_not_utf8_is_a_json_400_from_the_asgi_handler(path):
    status, headers, body = asgi_get(path, b"wait=%ff\xff")
    assert status == 400 and headers[b"Content-Type"].startswith(b"application/json")
    assert json.loads(body)["code"] == "bad_request"


@pytest.mark.django_db(transaction=True)
def test_a_404_through_the_asgi_server_is_json_too():
    status, headers, body = asgi_get("/api/v1/clients/null,null/task/")
    assert status == 404 and json.loads(body)["code"] == "not_found"
