"""The malformed-request corpus against a real server: what each category of case is answered.

The corpus is the test's (``tests/server/malformed_corpus.py``, same seed, same cases): each case
one mutation of a valid update upload of a running round, in its body, its headers, its path or
its query string. Here it goes to real processes on loopback, a server (daphne through
``runserver``: the ASGI stack devices meet, body limits and all) and an engine, on a fresh SQLite
database; the run, its two devices, their open round and the valid update are made over HTTP.
Each case is sent as raw HTTP/1.1 bytes on its own connection (headers UTF-8 encoded, as a device
would put them on the wire; the case's own Content-Length when it has one), and its answer is
counted: accepted (2xx), each 4xx status, server errors (5xx), answers that are not the JSON error
shape, and none at all within ``--timeout`` seconds. The server's resident memory is read before
and after each category. Last, the unmutated request is sent: it must be accepted, or the corpus
would have been refused for a fault of its base rather than of its mutations.

Throttles are off in the server: the corpus sends about 1,900 requests with one device's token
within a minute, and at the default rates (600 a minute per device) most would be answered 429
for that alone, not for what is wrong with them.

    python benchmarks/malformed_corpus.py
    python benchmarks/malformed_corpus.py --seed 7 --name malformed_corpus_seed7
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import quote

import report  # noqa: F401  (puts the repo on sys.path)
from report import REPO, mb, table, write

from fedcore import codec  # found through the repo's path, which report adds

sys.path.insert(0, str(REPO / "tests" / "e2e"))
from processes import Server, wait_until


def _generator():
    """The test's corpus generator, loaded from its file under a name of its own (its module name,
    ``malformed_corpus``, is this file's too)."""
    cases = REPO / "tests" / "server" / "malformed_corpus.py"
    spec = importlib.util.spec_from_file_location("malformed_corpus_cases", cases)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


_corpus = _generator()
Case, Valid, cases = _corpus.Case, _corpus.Valid, _corpus.cases

CATEGORIES = {"body": "bodies", "header": "headers", "path": "paths", "query": "query strings"}
# What the server in front of the application does with the cases about Content-Length itself.
WHY = {
    "content-length lies high": "daphne (Twisted) reads a whole body before the application sees the request, so "
    "a declared 10^12 bytes with a short body waits for the rest; the application refuses a declared length over "
    "the limit without reading the body (413, as the in-process test shows), and in production a reverse proxy's "
    "body limit stands in front (docs/security.md)",
    "content-length not digits": "Twisted's HTTP parser refuses a Content-Length that is not a non-negative "
    "integer with a bare 400, before the application sees the request",
}
WHY["content-length negative"] = WHY["content-length unicode digits"] = WHY["content-length not digits"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=12, help="the corpus's seed (the test's is 12)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer to one case")
    p.add_argument("--name", default="malformed_corpus", help="results file name")
    return p.parse_args(argv)


def memory(pid: int) -> dict[str, int]:
    """Resident memory now and at its peak (VmRSS, VmHWM), bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


def wire_target(path: str) -> str:
    """The request target as an HTTP client sends it: a space, a control character or a character
    outside ASCII percent-encoded (as UTF-8), everything else, ``%XX`` included, as it is."""
    return "".join(c if 0x20 < ord(c) < 0x7F else quote(c, safe="") for c in path)


def exchange(port: int, case: Case, timeout: float) -> tuple[int | None, bytes]:
    """Send ``case`` as it would travel on the wire; the answer's status (None: no answer) and body."""
    headers = {"Host": f"127.0.0.1:{port}", "Connection": "close", **case.headers}
    if "Content-Length" not in headers and (case.body or case.method in ("POST", "PUT")):
        headers["Content-Length"] = str(len(case.body))
    head = (f"{case.method} {wire_target(case.path)} HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n")
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head.encode() + case.body)
        except OSError:  # refused before the whole body went out (413): read what it said
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    if not answer.startswith(b"HTTP/"):
        return None, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    if any(line.lower().replace(b" ", b"") == b"transfer-encoding:chunked" for line in header_lines):
        body = dechunk(body)
    return int(status_line.split()[1]), body


def dechunk(data: bytes) -> bytes:
    """A chunked body's content (the long-poll path answers without a Content-Length)."""
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


def shaped(body: bytes) -> str | None:
    """The error's code when the body is the JSON error shape, else None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("code"), str) and isinstance(data.get("detail"), str):
        return data["code"]
    return None


def valid_upload(server: Server) -> tuple[Valid, dict]:
    """A running run, two devices selected for its open round, and a valid update of the round."""
    import numpy as np
    import requests

    from fedcore.state import subtract

    run = server.create_run(name="corpus", rounds=2, min_clients=2, clients_per_round=2, min_updates=1,
                            round_timeout=3600, offline_after=3600)
    devices = []
    for name in ("alpha", "beta"):
        reg = requests.post(f"{server.url}/api/v1/clients/", json={"name": name, "run": run["id"], "num_examples": 100},
                            timeout=30)
        reg.raise_for_status()
        devices.append(reg.json())
    auth = [{"Authorization": f"Token {d['token']}"} for d in devices]
    for headers, device in zip(auth, devices):  # a first poll makes a device selectable
        requests.get(f"{server.url}/api/v1/clients/{device['id']}/task/", headers=headers, timeout=30)

    def poll() -> dict | None:
        response = requests.get(f"{server.url}/api/v1/clients/{devices[0]['id']}/task/", headers=auth[0], timeout=30)
        return response.json() if response.status_code == 200 else None

    task = wait_until(poll, timeout=120, what="the engine to open the round")
    model = requests.get(server.url + task["model_url"], headers={**auth[0], "Accept": codec.CONTENT_TYPE}, timeout=60)
    model.raise_for_status()
    base = {k: np.array(a) for k, a in codec.decode(model.content).arrays.items()}
    trained = {k: (a + 0.01).astype(a.dtype) if a.dtype.kind == "f" else a + 1 for k, a in base.items()}
    body = codec.encode(subtract(trained, base), encoding=task["upload_encoding"], kind="delta",
                        base_version=task["base_version"])
    valid = Valid(run["id"], task["round"], devices[0]["id"], devices[1]["id"], devices[0]["token"],
                  devices[1]["token"], body)
    return valid, task


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="fedcorpus-"))
    # An empty rate turns a throttle scope off (see the module docstring).
    server = Server(workdir, env_extra={"FEDPLATFORM_THROTTLE_CLIENT": "", "FEDPLATFORM_THROTTLE_ANONYMOUS": "",
                                        "LOG_LEVEL": "WARNING"})
    try:
        server.start()
        valid, task = valid_upload(server)
        corpus = list(cases(valid, seed=args.seed))
        by_category: dict[str, list[Case]] = defaultdict(list)
        for case in corpus:
            by_category[case.category].append(case)

        rows, codes, examples = [], Counter(), []
        totals = Counter()
        started = time.monotonic()
        first = memory(server.proc.pid)
        for category, label in CATEGORIES.items():
            before = memory(server.proc.pid)["VmRSS"]
            statuses, unshaped, silent = Counter(), 0, 0
            for case in by_category[category]:
                status, body = exchange(server.port, case, args.timeout)
                why = f" ({WHY[case.name]})" if case.name in WHY else ""
                if status is None:
                    silent += 1
                    examples.append(f"{category} / {case.name}: no answer within {args.timeout:g} s{why}")
                    continue
                statuses[status] += 1
                code = shaped(body)
                if code is None:
                    unshaped += 1
                    examples.append(f"{category} / {case.name}: {status}, not the JSON error shape: {body[:80]!r}{why}")
                codes[(category, status, code or "-")] += 1
                if status < 400 or status >= 500:
                    examples.append(f"{category} / {case.name}: {status} {body[:120]!r}")
            after = memory(server.proc.pid)["VmRSS"]
            accepted = sum(n for s, n in statuses.items() if s < 400)
            errors = sum(n for s, n in statuses.items() if s >= 500)
            refused = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()) if 400 <= s < 500)
            rows.append([label, len(by_category[category]), accepted, refused, errors, unshaped, silent,
                         f"{(after - before) / 1e6:+.1f} MB"])
            totals.update(cases=len(by_category[category]), accepted=accepted, errors=errors, unshaped=unshaped,
                          silent=silent, refused=sum(n for s, n in statuses.items() if 400 <= s < 500))
        last = memory(server.proc.pid)
        seconds = time.monotonic() - started
        control, control_body = exchange(server.port, Case("the valid request", "control", "PUT", task["upload_url"],
                                                           {"Authorization": f"Token {valid.token}",
                                                            "Content-Type": codec.CONTENT_TYPE,
                                                            "X-Num-Examples": "100", "X-Metrics": "{}"},
                                                           valid.body), args.timeout)
    finally:
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    rows.append(["all", totals["cases"], totals["accepted"], f"4xx: {totals['refused']}", totals["errors"],
                 totals["unshaped"], totals["silent"],
                 f"{(last['VmRSS'] - first['VmRSS']) / 1e6:+.1f} MB"])
    code_rows = [[CATEGORIES[c], s, f"`{code}`", n] for (c, s, code), n in sorted(codes.items())]
    intro = (
        f"{len(corpus)} cases (seed {args.seed}), each a mutation of one valid update upload, sent to a real "
        f"server and engine on loopback (daphne via `runserver`, SQLite, throttles off) in {seconds:.0f} s. "
        "A case is accepted when answered 2xx; *not shaped* counts answers that are not the JSON error shape "
        "`{code, detail}`; *no answer* counts cases the server did not answer within "
        f"{args.timeout:g} s; memory is the server's resident set after the category less before it."
    )
    look = "\n".join(f"- {line}" for line in examples[:40]) if examples else "- none"
    body = "\n\n".join([
        intro,
        table(["category", "cases", "accepted", "refused (4xx: count)", "server errors (5xx)", "not shaped",
               "no answer", "server memory growth"], rows),
        (f"Server resident memory: {mb(first['VmRSS'])} before the corpus, {mb(last['VmRSS'])} after; "
         f"peak {mb(last['VmHWM'])} (at start {mb(first['VmHWM'])})."),
        (f"Control: the unmutated request, sent after the corpus, was answered {control}: "
         f"`{control_body[:160].decode(errors='replace')}`."),
        "Answers by error code:",
        table(["category", "status", "code", "cases"], code_rows),
        f"Cases worth a look (answered 2xx or 5xx, not shaped, or not answered):\n\n{look}",
    ])
    write(args.name, "Malformed-request corpus against a real server", body)


if __name__ == "__main__":
    main()
