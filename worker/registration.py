"""``POST clients/``: become a client of a run, waiting while no run takes clients."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fedcore.codec import ENCODINGS
from worker.exitcodes import ExitCode, WorkerExit
from worker.session import ApiError, ApiSession

ACCEPTS = list(ENCODINGS)  # model encodings this worker can decode: all of its codec's
NO_RUN_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class Registration:
    id: int
    token: str
    name: str
    run: int
    arch: str
    dataset: str
    upload_encoding: str
    status: str = ""


def register(
    session: ApiSession,
    *,
    name: str,
    num_examples: int,
    device: dict[str, Any],
    run: int | None = None,
    enrollment_key: str | None = None,
    log: Callable[[str], None] = print,
) -> Registration:
    """Register and return the server's answer; sets the session's token.

    While the server answers ``409 no_active_run`` (workers started before the operator starts a
    run) this waits and tries again. Any other refusal raises ``WorkerExit(REFUSED)``.
    """
    body: dict[str, Any] = {"name": name, "num_examples": num_examples, "device": device,
                            "accepts": ACCEPTS}
    if run is not None:
        body["run"] = run
    if enrollment_key:
        body["enrollment_key"] = enrollment_key
    waiting = False
    while True:
        try:
            answer = session.json_call("POST", "clients/", body)
            break
        except ApiError as err:
            if err.status == 409 and err.code == "no_active_run":
                if not waiting:
                    log(f"no run takes clients yet ({err.detail}); waiting")
                    waiting = True
                time.sleep(NO_RUN_POLL_SECONDS)
                continue
            raise WorkerExit(ExitCode.REFUSED,
                             f"registration refused: {err.status} {err.code}: {err.detail}") from err
    try:
        registration = Registration(
            id=int(answer["id"]), token=str(answer["token"]), name=str(answer.get("name", name)),
            run=int(answer["run"]), arch=str(answer["arch"]), dataset=str(answer["dataset"]),
            upload_encoding=str(answer.get("upload_encoding") or "float32"),
            status=str(answer.get("status", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkerExit(ExitCode.ERROR, f"unexpected registration answer: {answer!r:.300}") from exc
    session.token = registration.token
    return registration
