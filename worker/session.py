"""The one HTTP helper: base URL, token header, retries with backoff, error parsing.

Every request the worker makes goes through :class:`ApiSession`, so there is exactly one place
that knows how to authenticate, how long to keep trying while the server restarts, and how to turn
the server's ``{"code", "detail"}`` error bodies into an exception.
"""
from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin

import requests

API_PREFIX = "/api/v1/"
# Answers that mean "the server (or its proxy) is restarting or overloaded", or "too many requests
# for now" (429, with Retry-After): worth waiting for.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class ApiError(Exception):
    """A 4xx/5xx answer from the server, parsed from its ``{"code", "detail"}`` body."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class ServerUnreachable(Exception):
    """The server did not answer usefully for longer than the session's ``max_retry_seconds``."""


def api_root(server: str) -> str:
    """``http://host:8000`` (or ``.../api/v1``) -> ``http://host:8000/api/v1/``."""
    base = server.strip().rstrip("/")
    if base.endswith(API_PREFIX.rstrip("/")):
        base = base[: -len(API_PREFIX.rstrip("/"))]
    return base + API_PREFIX


def retry_after(response: requests.Response, default: float) -> float:
    """Seconds the server asked us to wait (``Retry-After`` as seconds or HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def parse_error(response: requests.Response) -> ApiError:
    """Build an :class:`ApiError` from any error response, JSON or not."""
    code, detail = f"http_{response.status_code}", response.reason or ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or code)
        raw = body.get("detail", detail)
        # DRF validation errors put field messages in nested structures; keep them readable.
        detail = raw if isinstance(raw, str) else str(raw if raw else body)
    elif response.text:
        detail = response.text.strip()[:300]
    return ApiError(response.status_code, code, detail)


class ApiSession:
    """A requests session bound to one server, with auth and patient retries.

    ``path`` arguments are either API-relative (``"clients/"``) or the absolute paths the server
    hands out in tasks (``"/api/v1/runs/1/model/?version=2"``); both resolve against ``server``.
    """

    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        max_retry_seconds: float = 300.0,
        timeout: tuple[float, float] = (5.0, 120.0),
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        on_retry: Callable[[str, float], None] | None = None,
        user_agent: str = "fedplatform-worker",
    ) -> None:
        self.root = api_root(server)
        self.token = token
        self.max_retry_seconds = max_retry_seconds
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.on_retry = on_retry
        self._http = requests.Session()
        self._http.headers["User-Agent"] = user_agent

    def url(self, path: str) -> str:
        return urljoin(self.root, path)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
        retry: bool = True,
    ) -> requests.Response:
        """Send one request; return the 1xx-3xx response or raise ``ApiError``/``ServerUnreachable``.

        With ``retry`` (the default), connection failures and 429/502/503/504 are retried with
        exponential backoff and jitter until ``max_retry_seconds`` have passed since the first
        failure; without it, the first failure raises ``ServerUnreachable`` at once (for calls,
        like heartbeats and leaving, that must never stall the worker).
        """
        all_headers = {"Accept": "application/json"}
        if self.token:
            all_headers["Authorization"] = f"Token {self.token}"
        all_headers.update(headers or {})
        url = self.url(path)
        first_failure: float | None = None
        attempt = 0
        while True:
            response: requests.Response | None = None
            try:
                answer = self._http.request(
                    method, url, json=json, data=data, headers=all_headers,
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__}"
            else:
                if answer.status_code not in RETRY_STATUSES:
                    if answer.status_code >= 400:
                        raise parse_error(answer)
                    return answer
                problem, response = f"HTTP {answer.status_code}", answer
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            delay = self._backoff(attempt, response)
            if not retry or now + delay - first_failure > self.max_retry_seconds:
                raise ServerUnreachable(
                    f"{method} {url}: {problem}"
                    + (f" for {now - first_failure:.0f}s" if retry else "")
                )
            if self.on_retry is not None:
                self.on_retry(f"{method} {url}: {problem}", delay)
            time.sleep(delay)
            attempt += 1

    def _backoff(self, attempt: int, response: requests.Response | None) -> float:
        # "Equal jitter": half fixed, half random, so a fleet of workers does not stampede a
        # restarting server in lockstep, yet each one still backs off meaningfully.
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if response is not None and "Retry-After" in response.headers:
            delay = max(delay, min(self.backoff_cap, retry_after(response, delay)))
        return delay

    def json_call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """A JSON request; returns the decoded body, or ``None`` for an empty answer (204)."""
        response = self.request(method, path, json=body, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
