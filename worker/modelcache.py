"""Download the global model as the server broadcasts it, keeping the last version so a repeated
task costs a 304 and the next version can come as a broadcast delta (or a chain of them) from it."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from fedcore.broadcast import CHAIN_CONTENT_TYPE, ChainError, digest, rebuild, unpack_chain
from fedcore.codec import CONTENT_TYPE, LOSSLESS_ENCODINGS, decode, manifest_of
from worker.session import ApiSession

# A server that names no digest for what it sends (one from before broadcast replicas) sends
# lossy deltas of its exact versions, whose errors add up; after this many the worker asks for
# the full lossless model instead, which resets its copy to the server's bits. With a digest the
# copy is checked bit for bit after every download and this never applies.
MAX_LOSSY_DELTAS = 8
ACCEPT = f"{CHAIN_CONTENT_TYPE}, {CONTENT_TYPE}"


class ModelCache:
    """Holds the most recently downloaded model version.

    Only one version is kept: tasks move forward one version at a time, and the one case that
    repeats a version (a task handed out again after an abort or a closed round) hits the cache.
    Asking for a newer version sends ``base=<held version>``; the server may then answer with the
    broadcast delta or the chain of them, added to the held copy, or a snapshot that replaces it.
    The result is checked against the server's ``X-Model-Digest``; a copy that does not match is
    dropped and the snapshot fetched at once, so the worker always trains from the server's replica.
    """

    def __init__(self, session: ApiSession, *, max_bytes: int = 1 << 30) -> None:
        self._session = session
        self._max_bytes = max_bytes
        self.version: int | None = None
        self._arrays: dict[str, np.ndarray] | None = None
        self.lossy_deltas = 0  # unchecked lossy deltas applied since the last exact copy
        self.last_download_bytes = 0  # 0 when the last fetch was served from the cache
        self.last_was_delta = False

    def fetch(self, url: str, version: int, manifest=None) -> dict[str, np.ndarray]:
        """The model ``version`` from ``url``; ``manifest`` checks it fits the local architecture.

        Raises ``ApiError`` for error answers and ``fedcore.codec.CodecError`` for a bad body,
        ``ValueError`` for a body that does not answer the question asked.
        """
        headers = {"Accept": ACCEPT}
        if self._arrays is not None and manifest is not None and manifest_of(self._arrays) != manifest:
            self.forget()  # another architecture: the held copy is no base for anything
        held = self.version if self._arrays is not None else None
        asked = url
        if held == version:
            headers["If-None-Match"] = f'"{version}"'
        elif held is not None and held < version and self.lossy_deltas < MAX_LOSSY_DELTAS:
            asked = _with_query(url, base=held)
        response = self._session.request("GET", asked, headers=headers)
        if response.status_code == 304 and self._arrays is not None:
            self.last_download_bytes, self.last_was_delta = 0, False
            return self._copy()
        try:
            return self._take(response, held, version, manifest, sent=0)
        except _Resync as resync:
            # The held copy was not the server's replica (an older server's drift, a restored
            # database): the snapshot replaces it now, so this round still trains from the replica.
            self.forget()
            response = self._session.request("GET", url, headers={"Accept": ACCEPT})
            return self._take(response, None, version, manifest, sent=resync.sent)

    def _take(self, response, held: int | None, version: int, manifest, *, sent: int) -> dict[str, np.ndarray]:
        served = _served_version(response.headers, default=version)
        if served != version:
            # Training against a different base than the task names would make the server reject
            # (or, worse, mis-apply) the delta; refuse instead.
            raise ValueError(f"asked for model version {version}, server sent {served}")
        bodies = [response.content]
        if response.headers.get("Content-Type", "").split(";")[0].strip() == CHAIN_CONTENT_TYPE:
            try:
                bodies = unpack_chain(response.content, max_bytes=self._max_bytes)
            except ChainError as exc:
                self.forget()
                raise ValueError(f"bad chain body: {exc}") from exc
        arrays, deltas, exact = self._apply(bodies, held, manifest)
        sent += len(response.content)
        # A chain steps one version per delta; a single delta leads to the version asked for.
        if deltas > 1 and held is not None and held + deltas != version:
            self.forget()
            raise ValueError(f"{deltas} delta(s) from version {held} do not lead to version {version}")
        expected = response.headers.get("X-Model-Digest")
        if expected is not None and digest(arrays) != expected:
            if deltas:
                raise _Resync(sent)
            self.forget()
            raise ValueError(f"model version {version} does not match the digest the server gave")
        if expected is not None or not deltas:
            self.lossy_deltas = 0  # checked bit for bit, or a full lossless copy
        elif not exact:
            self.lossy_deltas += 1
        self.version, self._arrays = version, {k: np.asarray(v) for k, v in arrays.items()}
        self.last_download_bytes = sent
        self.last_was_delta = deltas > 0
        return self._copy()

    def _apply(self, bodies: list[bytes], held: int | None, manifest) -> tuple[dict[str, np.ndarray], int, bool]:
        """(the model after the bodies, how many deltas they were, whether all were lossless)."""
        arrays, at, exact = self._arrays, held, True
        for body in bodies:
            decoded = decode(body, manifest=manifest, max_bytes=self._max_bytes)
            if decoded.kind != "delta":
                if len(bodies) > 1:
                    self.forget()
                    raise ValueError("a chain holds deltas only")
                return decoded.arrays, 0, True
            if arrays is None or at is None or decoded.base_version != at:
                self.forget()  # whatever went wrong, the next try asks for the full model
                raise ValueError(f"server sent a delta from version {decoded.base_version}, "
                                 f"this worker holds {at}")
            arrays, at = rebuild(arrays, decoded.arrays), at + 1
            exact = exact and decoded.encodings <= LOSSLESS_ENCODINGS | {"raw"}
        if arrays is None:  # no bodies, and no model held to stand for them
            raise ValueError("no model to build on")
        return arrays, len(bodies), exact

    def forget(self) -> None:
        self.version, self._arrays, self.lossy_deltas = None, None, 0

    def _copy(self) -> dict[str, np.ndarray]:
        # Callers get their own copy: the cached base must stay pristine for the delta.
        assert self._arrays is not None
        return {key: value.copy() for key, value in self._arrays.items()}


class _Resync(Exception):
    """Deltas applied to the held copy did not give the server's replica."""

    def __init__(self, sent: int) -> None:
        super().__init__(sent)
        self.sent = sent


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
