"""Process exit codes, in one place so the CLI epilog and the agent cannot disagree."""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # the run ended, the server said stop, or Ctrl-C / SIGTERM: the worker left cleanly
    ERROR = 1  # unexpected failure (a bug, or an answer the worker does not understand)
    USAGE = 2  # bad arguments or local data problem (dataset missing, wrong dataset for the run)
    KICKED = 3  # an operator removed this client (403 kicked, or its token was revoked)
    UNREACHABLE = 4  # the server stayed unreachable longer than --max-retry-seconds
    REFUSED = 5  # the server refused the registration (enrollment key, unknown run, ...)


DESCRIPTIONS: dict[ExitCode, str] = {
    ExitCode.OK: "left cleanly: run finished or stopped, server said stop, Ctrl-C or SIGTERM",
    ExitCode.ERROR: "unexpected error",
    ExitCode.USAGE: "bad arguments, dataset not found, or dataset does not match the run",
    ExitCode.KICKED: "kicked by an operator (or token revoked)",
    ExitCode.UNREACHABLE: "server unreachable for longer than --max-retry-seconds",
    ExitCode.REFUSED: "registration refused by the server (e.g. wrong enrollment key)",
}


class WorkerExit(Exception):
    """Raised anywhere in the agent to end the process with ``code`` after printing ``message``."""

    def __init__(self, code: ExitCode, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
