"""What a model download sends a device: the broadcast chain from the version it holds, or a
lossless snapshot of the replica (``rounds.broadcast``, ``fedcore.broadcast``).

``GET runs/{id}/model/?version=N&base=M`` asks for version N by a device that holds version M as
the server broadcast it (the replica x^_M; for a float32 run that is version M itself). The
answer is always one of:

- the broadcast delta M -> N (kind "delta", base_version M) when N = M + 1;
- the chain of broadcast deltas M -> M+1 -> ... -> N in one body (``fedcore.broadcast``'s chain
  format, content type ``CHAIN_CONTENT_TYPE``) when the request's ``Accept`` names that type;
- the replica x^_N as a float32 snapshot (kind "full") otherwise: no base, a base the server
  cannot start from (unknown, not older, more than ``MAX_CHAIN`` behind), a version in between
  that sent no delta, an encoding the device did not declare in ``accepts``, or a chain that
  would be no smaller than the snapshot.

Never a mix: every delta applies to exactly the replica before it, and the snapshot replaces the
device's copy. ``X-Model-Digest`` names the bits the device then holds, so it can check.
Operators (no device) get the exact global version, which is what exports and audits use too.
"""
from __future__ import annotations

from dataclasses import dataclass

from fedcore import broadcast as fb
from fedcore import codec

from . import blobs
from .broadcast import broadcast_ensure
from .models import Broadcast, Download, ModelVersion, Round, Update

DOWNLOAD_ENCODINGS = fb.DOWNLOAD_ENCODINGS
CHAIN_CONTENT_TYPE = fb.CHAIN_CONTENT_TYPE


@dataclass(frozen=True)
class ModelBody:
    data: bytes
    base_version: int | None  # None: a full model (the exact version, or the replica's snapshot)
    deltas: int = 0  # broadcast deltas in the body: 0 (full), 1 (a delta), 2 or more (a chain)
    digest: str | None = None  # fedcore.broadcast.digest of what the device holds once applied

    @property
    def content_type(self) -> str:
        return CHAIN_CONTENT_TYPE if self.deltas > 1 else codec.CONTENT_TYPE

    @property
    def kind(self) -> str:
        return {0: "snapshot", 1: "delta"}.get(self.deltas, "chain")


def model_body(
    *, version: ModelVersion, base: int | None, accepts: list[str] | None, chains: bool = False
) -> ModelBody:
    """The bytes to send for ``version`` to a device holding ``base`` (see the module docstring).

    ``accepts`` is the device's declared list of encodings, None for an operator (who gets the
    exact version); ``chains``: the request accepts a chain body.
    """
    if accepts is None:
        return ModelBody(blobs.load(version.blob.name), None)
    target = broadcast_ensure(version=version)

    def snapshot() -> ModelBody:  # read only when sent: a delta is a small fraction of it
        return ModelBody(blobs.load_shared(target.replica_blob.name), None, 0, target.replica_digest)

    span = version.number - base if base is not None else 0
    if not 1 <= span <= fb.MAX_CHAIN or (span > 1 and not chains):
        return snapshot()
    steps = [target] if span == 1 else list(
        Broadcast.objects.filter(
            version__run_id=version.run_id, version__number__gt=base, version__number__lte=version.number
        ).order_by("version__number")
    )
    # float32 is the codec's baseline: every device decodes it, declared or not.
    accepted = set(accepts) | {"float32"}
    sizes = [s.delta_bytes if s.delta_blob and s.encoding in accepted else None for s in steps]
    if len(steps) != span or not fb.use_chain(sizes, target.replica_bytes):
        return snapshot()
    bodies = [blobs.load_shared(s.delta_blob.name) for s in steps]
    data = bodies[0] if span == 1 else fb.pack_chain(bodies)
    return ModelBody(data, base, span, target.replica_digest)


def round_bytes(rnd: Round, updates: list[Update]) -> dict:
    """A round's traffic as the server counted it: what it sent each selected device for the
    round's base (every answer, retries included) and what each participant uploaded."""
    down: dict[str, int] = {}
    for client_id, size in Download.objects.filter(round=rnd).values_list("client_id", "bytes_wire"):
        down[str(client_id)] = down.get(str(client_id), 0) + size
    return {
        "bytes_down": sum(down.values()),
        "bytes_down_by_client": down,
        "bytes_up_by_client": {str(u.client_id): u.bytes_wire for u in updates},
    }
