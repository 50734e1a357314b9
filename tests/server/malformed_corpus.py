"""A seeded corpus of malformed device requests (issue 12), each one mutation of a valid request.

Every case must be refused with a 4xx: a case that could be a valid request by chance (a bit flip
inside a tensor's payload) is left out, so the corpus stays a list of things the server must refuse.
"""
from __future__ import annotations

import pickle
import random
from dataclasses import dataclass, field
from typing import Iterator

import zstandard

from fedcore import codec


@dataclass(frozen=True)
class Valid:
    """The valid upload every case starts from, and the ids and tokens of a live run and round."""

    run_id: int
    round_id: int
    client_id: int
    other_client_id: int
    token: str
    other_token: str
    body: bytes


@dataclass(frozen=True)
class Case:
    name: str
    category: str  # body / header / path / query
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _upload_headers(valid: Valid) -> dict[str, str]:
    return {"Authorization": f"Token {valid.token}", "Content-Type": codec.CONTENT_TYPE,
            "X-Num-Examples": "100", "X-Metrics": "{}"}


def _bodies(valid: Valid, rng: random.Random) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    body = valid.body
    offsets = sorted(set(rng.sample(range(1, len(body)), min(700, len(body) - 1))))
    for k in offsets:
        yield f"truncated at {k}", body[:k], {}
    for n in range(600):
        junk = rng.randbytes(rng.choice([1, 7, 64, 500, 4096]))
        yield f"junk {n}", junk, {}
    yield "empty", b"", {}
    yield "pickle", pickle.dumps({"conv.weight": [0.0] * 16}), {}
    yield "zstd bomb", zstandard.ZstdCompressor().compress(b"\0" * (64 << 20)), {}
    yield "json instead of a blob", b'{"conv.weight": [0.0]}', {}
    yield "NaN text", b"NaN", {}
    yield "a valid body twice", body + body, {}
    yield "content-length lies high", body, {"Content-Length": str(10**12)}
    yield "content-length not digits", body, {"Content-Length": "abc"}
    yield "content-length negative", body, {"Content-Length": "-1"}
    yield "content-length unicode digits", body, {"Content-Length": "١٢"}
    yield "wrong content type", body, {"Content-Type": "application/json"}
    yield "no content type", body, {"Content-Type": ""}


# Blanks inside a value, not around it: HTTP strips those from a header value on the wire, so
# " 10" reaches a real server as the valid "10".
ODD_COUNTS = ["", "0", "-1", "+5", "1.0", "1e2", "101", "10" * 10, "9" * 5000, "²", "١٠", "１０", "1 0", "10 10",
              "0x10", "null", "true", "[10]", '{"n":10}', "10,10", "１"]
ODD_METRICS = ["[", "[" * 4000, '{"a":' * 200 + "1" + "}" * 200, '{"a":NaN}', '{"a":Infinity}', '{"a":-Infinity}',
               '{"a":1e400}', '{"a":' + "9" * 4000 + "}", '{"a":"x"}', '{"a":true}', '{"a":null}', '{"a":[1]}',
               '{"a":{"b":1}}', "[1,2]", "1", '"x"', '{"a":1,"a":2}', '{"' + "k" * 65 + '":1}', '{"é":1}',
               '{"a b":1}', "{" + ",".join(f'"m{i}":1' for i in range(33)) + "}", "{" + "x" * 5000 + "}",
               "not json", '{"a":1', "{'a':1}", '{"a":1e16}', '{"\\ud800":1}']
ODD_TOKENS = ["", "Token", "Token ", "Bearer {t}", "Token {t}x", "Token x{t}", "Token {o}-foreign", "token{t}",
              "Token " + "a" * 10000, "Token ٣٣", "Token null", "Basic Zm9vOmJhcg==", "Token {t} {t}"]


def _headers(valid: Valid) -> Iterator[tuple[str, dict[str, str | None]]]:
    for value in ODD_COUNTS:
        yield f"X-Num-Examples {value[:20]!r}", {"X-Num-Examples": value}
    yield "X-Num-Examples missing", {"X-Num-Examples": None}
    for value in ODD_METRICS:
        yield f"X-Metrics {value[:20]!r}", {"X-Metrics": value}
    for value in ODD_TOKENS:
        token = value.format(t=valid.token, o=valid.other_token)
        yield f"Authorization {value[:20]!r}", {"Authorization": token}
    yield "Authorization missing", {"Authorization": None}
    yield "another client's token", {"Authorization": f"Token {valid.other_token}"}


ODD_IDS = ["null", "false", "true", "-1", "0", str(10**30), "9" * 19, "1.5", "%C2%B2", "%D9%A3", "1e3", "0x1",
           "%20", "1%00", "..", "null,null", "[1]", "{id}", "%FF"]


def _paths(valid: Valid) -> Iterator[tuple[str, str, str]]:
    for odd in ODD_IDS + ["999999"]:
        yield f"upload round {odd}", "PUT", f"/api/v1/rounds/{odd}/updates/{valid.client_id}/"
        yield f"upload client {odd}", "PUT", f"/api/v1/rounds/{valid.round_id}/updates/{odd}/"
        yield f"task of {odd}", "GET", f"/api/v1/clients/{odd}/task/"
        yield f"model of run {odd}", "GET", f"/api/v1/runs/{odd}/model/"
        yield f"heartbeat of {odd}", "POST", f"/api/v1/clients/{odd}/heartbeat/"
    yield "upload as another client", "PUT", f"/api/v1/rounds/{valid.round_id}/updates/{valid.other_client_id}/"
    yield "task of another client", "GET", f"/api/v1/clients/{valid.other_client_id}/task/"


ODD_QUERY = ["", "-1", "+1", "1.5", "1e3", "abc", "null", "true", str(10**30), "9" * 19, "²", "١", "１", " 1", "1 ",
             "0x1", "[1]", "%00", "9" * 5000, "1,2"]


def _queries(valid: Valid) -> Iterator[tuple[str, str]]:
    model = f"/api/v1/runs/{valid.run_id}/model/"
    task = f"/api/v1/clients/{valid.client_id}/task/"
    for odd in ODD_QUERY:
        yield f"version={odd[:20]!r}", f"{model}?version={odd}"
        yield f"base={odd[:20]!r}", f"{model}?base={odd}"
        yield f"version=0&base={odd[:20]!r}", f"{model}?version=0&base={odd}"
        yield f"wait={odd[:20]!r}", f"{task}?wait={odd}"
    for number in ("999999", "123456789012345678"):
        yield f"version={number} (no such version)", f"{model}?version={number}"


def cases(valid: Valid, *, seed: int = 12) -> Iterator[Case]:
    """The corpus: the same cases, in the same order, for the same valid request and seed."""
    rng = random.Random(seed)
    upload = f"/api/v1/rounds/{valid.round_id}/updates/{valid.client_id}/"
    base = _upload_headers(valid)
    for name, body, extra in _bodies(valid, rng):
        headers = {**base, **extra}
        yield Case(name, "body", "PUT", upload, {k: v for k, v in headers.items() if v != ""}, body)
    for name, change in _headers(valid):
        headers = {k: v for k, v in {**base, **change}.items() if v is not None}
        # Each valid header set is paired with an invalid body too only when the header is fine:
        # here the header is the one mutation, so the body stays valid.
        yield Case(name, "header", "PUT", upload, headers, valid.body)
    for name, method, path in _paths(valid):
        yield Case(name, "path", method, path, base if method == "PUT" else {"Authorization": base["Authorization"]},
                   valid.body if method == "PUT" else b"")
    for name, path in _queries(valid):
        yield Case(name, "query", "GET", path, {"Authorization": base["Authorization"]}, b"")
