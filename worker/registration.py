"""Joining a run: ``GET clients/enrollment/`` (which run, which task), then ``POST clients/``.

Both wait while no run takes clients (workers started before the operator starts a run).
"""
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
class RunTask:
    """What a run trains, as the server describes it before and at registration."""

    run: int
    task: str
    task_config: dict[str, Any]
    manifest_digest: str
    upload_encoding: str

    @classmethod
    def from_json(cls, answer: Any) -> "RunTask":
        try:
            return cls(run=int(answer["run"]), task=str(answer["task"]),
                       task_config=dict(answer.get("task_config") or {}),
                       manifest_digest=str(answer.get("manifest_digest") or ""),
                       upload_encoding=str(answer.get("upload_encoding") or "float32"))
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkerExit(ExitCode.ERROR, f"unexpected answer about the run: {answer!r:.300}") from exc


@dataclass(frozen=True)
class Registration:
    id: int
    token: str
    name: str
    run_task: RunTask
    status: str = ""

    @property
    def run(self) -> int:
        return self.run_task.run


def _waiting_for_a_run(call: Callable[[], Any], log: Callable[[str], None], what: str) -> Any:
    waiting = False
    while True:
        try:
            return call()
        except ApiError as err:
            if err.status == 409 and err.code == "no_active_run":
                if not waiting:
                    log(f"no run takes clients yet ({err.detail}); waiting")
                    waiting = True
                time.sleep(NO_RUN_POLL_SECONDS)
                continue
            if err.code in ("manifest_mismatch", "task_mismatch"):
                raise WorkerExit(ExitCode.TASK, f"{what} refused: {err.code}: {err.detail}") from err
            raise WorkerExit(ExitCode.REFUSED, f"{what} refused: {err.status} {err.code}: {err.detail}") from err


def enrollment(
    session: ApiSession, *, run: int | None = None, enrollment_key: str | None = None,
    log: Callable[[str], None] = print,
) -> RunTask:
    """The run this device would join (``run``, or the server's newest active one) and its task."""
    headers = {"X-Enrollment-Key": enrollment_key} if enrollment_key else {}
    path = "clients/enrollment/" + (f"?run={run}" if run is not None else "")
    answer = _waiting_for_a_run(lambda: session.json_call("GET", path, headers=headers), log, "joining")
    return RunTask.from_json(answer)


def register(
    session: ApiSession,
    *,
    name: str,
    num_examples: int,
    device: dict[str, Any],
    run: int,
    task: str,
    manifest_digest: str,
    enrollment_key: str | None = None,
    log: Callable[[str], None] = print,
) -> Registration:
    """Register with ``run`` and return the server's answer; sets the session's token.

    The server refuses (exit code TASK) a device whose model's manifest differs from the run's.
    """
    body: dict[str, Any] = {"name": name, "num_examples": num_examples, "device": device,
                            "accepts": ACCEPTS, "run": run, "task": task,
                            "manifest_digest": manifest_digest}
    if enrollment_key:
        body["enrollment_key"] = enrollment_key
    answer = _waiting_for_a_run(lambda: session.json_call("POST", "clients/", body), log, "registration")
    try:
        registration = Registration(
            id=int(answer["id"]), token=str(answer["token"]), name=str(answer.get("name", name)),
            run_task=RunTask.from_json(answer), status=str(answer.get("status", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkerExit(ExitCode.ERROR, f"unexpected registration answer: {answer!r:.300}") from exc
    session.token = registration.token
    return registration
