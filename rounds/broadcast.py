"""The server's side of the broadcast replica (``fedcore.broadcast``): one ``Broadcast`` row per
version, with its encoded delta and its replica snapshot in storage, shared by every server
process and every device.

The engine prepares it while closing a round and commits it with the new version (``prepare``,
``record``), so a round that opens on that version finds it; run creation stores version 0's,
whose replica is the exact initial model. A version without one (it predates broadcasts) gets it
on first use (``broadcast_ensure``), computed the same way; racing writers compute the same
bytes and the one-row-per-version constraint keeps the first.
"""
from __future__ import annotations

import logging
import threading

import numpy as np
from django.db import IntegrityError, transaction

from fedcore import codec
from fedcore import broadcast as fb
from fedplatform.prepared import Prepared

from . import blobs, runtask
from .models import Broadcast, ModelVersion

log = logging.getLogger("fedplatform.broadcast")


def replica_arrays(b: Broadcast) -> dict[str, np.ndarray]:
    """The replica's arrays (read-only, cached per process like the versions)."""
    return blobs.decoded_version(b.replica_blob.name, b.replica_sha256)


_broadcast_of = Prepared(lambda version_id: Broadcast.objects.filter(version_id=version_id), int)


# Devices of one round ask for the same missing broadcast at once: one of them computes it per
# process, the others wait for it rather than repeat the work.
_computing = threading.Lock()


def _brought_along(version: ModelVersion) -> Broadcast | None:
    """The version's broadcast as the query that loaded it brought it (``select_related``), or read."""
    related = ModelVersion.broadcast.related  # the reverse one-to-one; None cached: there was none then
    found = related.get_cached_value(version) if related.is_cached(version) else None
    return found if isinstance(found, Broadcast) else _broadcast_of.first(version.pk)


def broadcast_ensure(*, version: ModelVersion) -> Broadcast:
    """The version's broadcast, computed and stored if it is not yet (a version 0, or one from
    before broadcasts were committed with their version)."""
    found = _brought_along(version)
    if found is not None:
        return found
    with _computing:
        found = _broadcast_of.first(version.pk)
        if found is not None:
            return found
        pending = prepare(version)
        try:
            with transaction.atomic():
                return record(pending, version)
        except IntegrityError:
            return Broadcast.objects.get(version=version)  # another process stored it first


def prepare(version: ModelVersion) -> Broadcast:
    """The version's broadcast, its delta and replica already in storage, not yet saved (``record``).

    The version need not be saved either: the engine prepares it before committing both together.
    Slow I/O outside any transaction: content-addressed, so a retried or raced write is harmless.
    """
    run = version.run
    encoding = run.download_encoding if run.download_encoding in fb.DOWNLOAD_ENCODINGS else "float32"
    target = blobs.decoded_version(version.blob.name, version.sha256)
    previous = None
    if version.number > 0:
        previous = Broadcast.objects.filter(version__run_id=version.run_id, version__number=version.number - 1).first()
    if previous is None:
        # Version 0, or a chain that restarts (the previous version has no replica): the replica
        # is the exact model and devices holding anything older get the snapshot.
        s = fb.Step(None, dict(target), True)
    else:
        s = _step(replica_arrays(previous), version, target, encoding)
    delta_name = delta_digest = ""
    if s.delta is not None:
        delta_digest = blobs.sha256(s.delta)
        delta_name = blobs.store(f"runs/{run.pk}/broadcasts", s.delta, delta_digest)
    if s.exact:
        replica_name, replica_digest_sha, replica_bytes = version.blob.name, version.sha256, version.size_bytes
    else:
        data, decoded = codec.encode_with_reconstruction(
            s.replica, encoding="float32", kind="full", meta={"run": run.pk, "version": version.number, "replica": True}
        )
        replica_digest_sha, replica_bytes = blobs.sha256(data), len(data)
        replica_name = blobs.store(f"runs/{run.pk}/replicas", data, replica_digest_sha)
        blobs.remember_decoded(replica_name, replica_digest_sha, decoded)  # the next version's step starts here
    return Broadcast(
        encoding=encoding, delta_blob=delta_name, delta_sha256=delta_digest,
        delta_bytes=len(s.delta) if s.delta is not None else None, replica_blob=replica_name,
        replica_sha256=replica_digest_sha, replica_bytes=replica_bytes,
        replica_digest=fb.digest(s.replica), exact=s.exact,
    )


def record(pending: Broadcast, version: ModelVersion) -> Broadcast:
    """Save a prepared broadcast for its (now saved) version, in the caller's transaction."""
    pending.version = version
    pending.save(force_insert=True)
    return pending


def _step(held: dict, version: ModelVersion, target: dict, encoding: str) -> fb.Step:
    run = version.run
    return fb.step(held, target, encoding=encoding, base_version=version.number - 1,
                   exact=runtask.run_lossless(run), meta={"run": run.pk, "version": version.number})


def check_chain(run) -> list[str]:
    """Re-derive every stored broadcast of a run from the previous replica and the exact version,
    and check the stored delta, snapshot and digest bit for bit; returns the problems found."""
    problems: list[str] = []
    previous: Broadcast | None = None
    for b in Broadcast.objects.filter(version__run=run).select_related("version").order_by("version__number"):
        version = b.version
        replica = replica_arrays(b)
        if fb.digest(replica) != b.replica_digest:
            problems.append(f"v{version.number}: the replica snapshot is not the recorded digest")
        if b.delta_blob:
            if previous is None or previous.version.number != version.number - 1:
                problems.append(f"v{version.number}: a delta with no replica before it")
            else:
                held = replica_arrays(previous)
                rebuilt = fb.rebuild(held, codec.decode(blobs.load(b.delta_blob.name), kind="delta").arrays)
                if not fb.same_bits(rebuilt, replica):
                    problems.append(f"v{version.number}: previous replica + delta is not the replica")
                again = _step(held, version, blobs.decoded_version(version.blob.name, version.sha256), b.encoding)
                if again.delta is None or blobs.sha256(again.delta) != b.delta_sha256:
                    problems.append(f"v{version.number}: the delta is not Q(version - previous replica)")
        if b.exact and not fb.same_bits(replica, blobs.decoded_version(version.blob.name, version.sha256)):
            problems.append(f"v{version.number}: marked exact but the replica is not the version")
        previous = b
    return problems
