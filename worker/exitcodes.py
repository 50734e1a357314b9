"""Process exit codes, in one place so the CLI epilog and the agent cannot disagree."""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # the run ended, the server said stop, or Ctrl-C / SIGTERM: the worker left cleanly
    ERROR = 1  # unexpected failure (a bug, or an answer the worker does not understand)
    USAGE = 2  # bad arguments or local data problem (data missing, wrong dataset for the run)
    KICKED = 3  # an operator removed this client (403 kicked, or its token was revoked)
    UNREACHABLE = 4  # the server stayed unreachable longer than --max-retry-seconds
    REFUSED = 5  # the server refused the registration (enrollment key, unknown run, ...)
    TASK = 6  # this device lacks the run's task, or its model does not match the run's manifest


DESCRIPTIONS: dict[ExitCode, str] = {
    ExitCode.OK: "left cleanly: run finished or stopped, server said stop, Ctrl-C or SIGTERM",
    ExitCode.ERROR: "unexpected error",
    ExitCode.USAGE: "bad arguments, data not found, or data that does not match the run",
    ExitCode.KICKED: "kicked by an operator (or token revoked)",
    ExitCode.UNREACHABLE: "server unreachable for longer than --max-retry-seconds",
    ExitCode.REFUSED: "registration refused by the server (e.g. wrong enrollment key)",
    ExitCode.TASK: "the run's task is not installed here, or this device's model does not match the run's",
}


class WorkerExit(Exception):
    """Raised anywhere in the agent to end the process with ``code`` after printing ``message``."""

    def __init__(self, code: ExitCode, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
