"""Download the global model, keeping the last version so a repeated task costs a 304 and the
next version can come as a delta from it."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from fedcore.codec import CONTENT_TYPE, LOSSLESS_ENCODINGS, decode, manifest_of
from fedcore.state import add
from worker.session import ApiSession

# Lossy deltas (bfloat16, int8) leave a small error in the rebuilt copy, and the next delta
# starts from the server's exact version, so errors add up; after this many the worker asks for
# the full lossless model instead, which resets its copy to the server's bits.
MAX_LOSSY_DELTAS = 8


class ModelCache:
    """Holds the most recently downloaded model version.

    Only one version is kept: tasks move forward one version at a time, and the one case that
    repeats a version (a task handed out again after an abort or a closed round) hits the cache.
    Asking for a newer version sends ``base=<held version>``; the server may then answer with the
    delta, which is added to the held copy (bit-exact when the delta is float32).
    """

    def __init__(self, session: ApiSession, *, max_bytes: int = 1 << 30) -> None:
        self._session = session
        self._max_bytes = max_bytes
        self.version: int | None = None
        self._arrays: dict[str, np.ndarray] | None = None
        self.lossy_deltas = 0  # lossy deltas applied since the last exact copy
        self.last_download_bytes = 0  # 0 when the last fetch was served from the cache
        self.last_was_delta = False

    def fetch(self, url: str, version: int, manifest=None) -> dict[str, np.ndarray]:
        """The model ``version`` from ``url``; ``manifest`` checks it fits the local architecture.

        Raises ``ApiError`` for error answers and ``fedcore.codec.CodecError`` for a bad body,
        ``ValueError`` for a body that does not answer the question asked.
        """
        headers = {"Accept": CONTENT_TYPE}
        if self._arrays is not None and manifest is not None and manifest_of(self._arrays) != manifest:
            self.forget()  # another architecture: the held copy is no base for anything
        held = self.version if self._arrays is not None else None
        if held == version:
            headers["If-None-Match"] = f'"{version}"'
        elif held is not None and held < version and self.lossy_deltas < MAX_LOSSY_DELTAS:
            url = _with_query(url, base=held)
        response = self._session.request("GET", url, headers=headers)
        if response.status_code == 304 and self._arrays is not None:
            self.last_download_bytes, self.last_was_delta = 0, False
            return self._copy()
        decoded = decode(response.content, manifest=manifest, max_bytes=self._max_bytes)
        served = _served_version(response.headers, default=version)
        if served != version:
            # Training against a different base than the task names would make the server reject
            # (or, worse, mis-apply) the delta; refuse instead.
            raise ValueError(f"asked for model version {version}, server sent {served}")
        if decoded.kind == "delta":
            if decoded.base_version != held or self._arrays is None:
                self.forget()  # whatever went wrong, the next try asks for the full model
                raise ValueError(f"server sent a delta from version {decoded.base_version}, "
                                 f"this worker holds {held}")
            arrays = add(self._arrays, decoded.arrays)
            exact = decoded.encodings <= LOSSLESS_ENCODINGS | {"raw"}
            self.lossy_deltas = self.lossy_deltas if exact else self.lossy_deltas + 1
        else:
            arrays, self.lossy_deltas = decoded.arrays, 0
        self.version, self._arrays = version, {k: np.asarray(v) for k, v in arrays.items()}
        self.last_download_bytes = len(response.content)
        self.last_was_delta = decoded.kind == "delta"
        return self._copy()

    def forget(self) -> None:
        self.version, self._arrays, self.lossy_deltas = None, None, 0

    def _copy(self) -> dict[str, np.ndarray]:
        # Callers get their own copy: the cached base must stay pristine for the delta.
        assert self._arrays is not None
        return {key: value.copy() for key, value in self._arrays.items()}


def _with_query(url: str, **params: object) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += [(k, str(v)) for k, v in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _served_version(headers, *, default: int) -> int:
    raw = headers.get("X-Model-Version") or headers.get("ETag", "").strip('W/"')
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default
