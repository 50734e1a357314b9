"""One-line event logging to stderr with a ``[worker name]`` prefix.

Lines go through ``tqdm.write`` so they do not tear a progress bar that is being drawn.
"""
from __future__ import annotations

import sys

from tqdm import tqdm


class Log:
    def __init__(self, name: str, *, stream=None) -> None:
        self.name = name
        self._stream = stream

    def __call__(self, message: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        tqdm.write(f"[{self.name}] {message}", file=stream)
