"""Turn SIGINT and SIGTERM into an exception, so the agent can leave the server cleanly."""
from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM. A BaseException, like KeyboardInterrupt, so ``except Exception``
    blocks in the agent do not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame) -> None:
    # Restore the defaults first: a second Ctrl-C while we are leaving kills the process at once.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within this block SIGINT and SIGTERM raise :class:`Interrupted` (main thread only)."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
