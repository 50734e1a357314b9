"""Download the global model, keeping the last version so a repeated task costs a 304."""
from __future__ import annotations

import numpy as np

from fedcore.codec import CONTENT_TYPE, decode
from worker.session import ApiSession


class ModelCache:
    """Holds the most recently downloaded model version.

    Only one version is kept: tasks move forward one version at a time, and the one case that
    repeats a version (a task handed out again after an abort or a closed round) hits the cache.
    """

    def __init__(self, session: ApiSession, *, max_bytes: int = 1 << 30) -> None:
        self._session = session
        self._max_bytes = max_bytes
        self.version: int | None = None
        self._arrays: dict[str, np.ndarray] | None = None
        self.last_download_bytes = 0  # 0 when the last fetch was served from the cache

    def fetch(self, url: str, version: int, manifest=None) -> dict[str, np.ndarray]:
        """The model ``version`` from ``url``; ``manifest`` checks it fits the local architecture.

        Raises ``ApiError`` for error answers and ``fedcore.codec.CodecError`` for a bad body.
        """
        headers = {"Accept": CONTENT_TYPE}
        if self.version == version and self._arrays is not None:
            headers["If-None-Match"] = f'"{version}"'
        response = self._session.request("GET", url, headers=headers)
        if response.status_code == 304 and self._arrays is not None:
            self.last_download_bytes = 0
            return self._copy()
        decoded = decode(response.content, manifest=manifest, max_bytes=self._max_bytes, kind="full")
        served = _served_version(response.headers, default=version)
        if served != version:
            # Training against a different base than the task names would make the server reject
            # (or, worse, mis-apply) the delta; refuse instead.
            raise ValueError(f"asked for model version {version}, server sent {served}")
        self.version, self._arrays = version, decoded.arrays
        self.last_download_bytes = len(response.content)
        return self._copy()

    def _copy(self) -> dict[str, np.ndarray]:
        # Callers get their own copy: the cached base must stay pristine for the delta.
        assert self._arrays is not None
        return {key: value.copy() for key, value in self._arrays.items()}


def _served_version(headers, *, default: int) -> int:
    raw = headers.get("X-Model-Version") or headers.get("ETag", "").strip('W/"')
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default
