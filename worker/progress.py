"""What happens between training batches: the progress bar and throttled heartbeats.

:class:`TrainingProgress` is handed to ``fedcore.training.train`` as ``on_batch``. It draws one
tqdm bar per local epoch and, at most every ``interval`` seconds, reports progress to the server.
The server's answer can end training early: ``abort`` raises :class:`TrainingAborted` and
``stop`` raises :class:`StopRequested`; both unwind out of ``train``.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm

# heartbeat(progress in [0, 1]) -> the server's action ("continue", "abort", "stop"),
# or None when the heartbeat could not be delivered.
Heartbeat = Callable[[float], "str | None"]


class TrainingAborted(Exception):
    """The server told us to drop the current round's work."""


class StopRequested(Exception):
    """The server told this worker to exit."""


class TrainingProgress:
    def __init__(
        self,
        *,
        epochs: int,
        heartbeat: Heartbeat,
        interval: float = 2.0,
        quiet: bool = False,
        label: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.epochs = max(1, epochs)
        self._heartbeat = heartbeat
        self._interval = interval
        self._quiet = quiet
        self._label = label
        self._clock = clock
        self._last_beat: float | None = None
        self._bar: tqdm | None = None
        self._bar_epoch: int | None = None

    def __call__(self, epoch: int, batch_index: int, num_batches: int, loss: float) -> None:
        self._draw(epoch, num_batches, loss)
        now = self._clock()
        if self._last_beat is not None and now - self._last_beat < self._interval:
            return
        self._last_beat = now
        done = epoch * num_batches + batch_index + 1
        action = self._heartbeat(min(1.0, done / (self.epochs * max(1, num_batches))))
        if action == "abort":
            raise TrainingAborted()
        if action == "stop":
            raise StopRequested()

    def _draw(self, epoch: int, num_batches: int, loss: float) -> None:
        if self._quiet:
            return
        if self._bar_epoch != epoch:
            self.close()
            self._bar = tqdm(
                total=num_batches, desc=f"{self._label}epoch {epoch + 1}/{self.epochs}",
                unit="batch", file=sys.stderr, leave=False, dynamic_ncols=True,
            )
            self._bar_epoch = epoch
        assert self._bar is not None
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
