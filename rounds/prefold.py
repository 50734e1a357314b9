"""Updates folded in as they arrive, so that closing a round only folds the last ones.

Under a streaming strategy (a weighted mean) each accepted update is decoded and added to a
float64 accumulator, then forgotten. Doing that while the round is still open, on the tick each
upload asks for, takes nearly all of the decoding and folding off the close, the stretch between
the last update and the next round (measured in ``benchmarks/load.py``'s round overhead).

The fold is a cache in the engine worker's memory, never the record: the close takes it only
when it folded exactly the first updates of the round's final list, in primary-key order, with
their digests, for the same round (id, opening time, base version, configuration). Anything else
(another worker's fold, an update that committed out of order, a client deleted with its update,
a restarted worker) and the close folds from scratch. Both ways run the same operations in the
same order, so the version is bit for bit what ``audit_run`` recomputes. Robust rules need every
update at once and are not folded ahead. At most ``FEDPLATFORM["PREFOLD_ROUNDS"]`` rounds are held
per worker process (each holds one float64 copy of the model and the decoded base), least
recently used first out.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from cachetools import LRUCache
from django.conf import settings

from fedcore import codec
from fedcore.strategies.base import RoundAggregation

from . import blobs, runstrategy
from .models import Round, RoundStatus, Update

log = logging.getLogger("fedplatform.engine")


def _identity(rnd: Round) -> tuple:
    # More than the primary key: a database restored or reset under a running engine worker can
    # give another round the same id.
    return (rnd.pk, rnd.run_id, rnd.opened_at, rnd.base_version_id, rnd.config_id)


@dataclass
class _Partial:
    identity: tuple
    aggregation: RoundAggregation
    folded: list[tuple[int, str]] = field(default_factory=list)  # (update pk, sha256), in pk order
    lock: threading.Lock = field(default_factory=threading.Lock)
    taken: bool = False


_lock = threading.Lock()
_partials: LRUCache | None = None


def _cache() -> LRUCache:
    global _partials
    if _partials is None:
        _partials = LRUCache(maxsize=max(1, int(settings.FEDPLATFORM["PREFOLD_ROUNDS"])))
    return _partials


def _begin(rnd: Round) -> RoundAggregation | None:
    if not runstrategy.for_round(rnd).spec.streaming:
        return None
    return runstrategy.begin_aggregation(rnd, None)


def fold_arrivals(rnd: Round) -> int:
    """Fold the open round's updates that arrived since the last call; returns how many."""
    if rnd.status != RoundStatus.OPEN or settings.FEDPLATFORM["PREFOLD_ROUNDS"] <= 0:
        return 0
    identity = _identity(rnd)
    with _lock:
        partial = _cache().get(rnd.pk)
    if partial is None or partial.identity != identity:
        aggregation = _begin(rnd)
        if aggregation is None:
            return 0
        with _lock:
            partial = _cache().get(rnd.pk)
            if partial is None or partial.identity != identity:
                partial = _cache()[rnd.pk] = _Partial(identity, aggregation)
    if not partial.lock.acquire(blocking=False):
        return 0  # another thread is folding this round: it, or the close, takes the new ones
    try:
        if partial.taken:
            return 0
        last = partial.folded[-1][0] if partial.folded else 0
        arrivals = list(Update.objects.filter(round_id=rnd.pk, pk__gt=last).order_by("pk"))
        for update in arrivals:
            arrays = codec.decode_lazily(blobs.load(update.blob.name), kind="delta")
            partial.aggregation.add(arrays, update.num_examples)
            partial.folded.append((update.pk, update.sha256))
        return len(arrivals)
    except Exception:
        # A fold that failed half way cannot be trusted; the close will fold from scratch.
        with _lock:
            _cache().pop(rnd.pk, None)
        partial.taken = True
        log.exception("round %s: folding updates ahead failed; the close folds them", rnd.pk)
        return 0
    finally:
        partial.lock.release()


def take(rnd: Round, updates: Sequence[Update]) -> tuple[RoundAggregation | None, list[Update]]:
    """For the close: (the aggregation that already holds the first updates, the updates still to
    fold), or (None, every update) when nothing usable was folded ahead."""
    with _lock:
        partial = _cache().pop(rnd.pk, None)
    if partial is None:
        return None, list(updates)
    with partial.lock:  # waits for a fold in progress to finish
        partial.taken = True
        done = len(partial.folded)
        head = [(u.pk, u.sha256) for u in updates[:done]]
        if partial.identity != _identity(rnd) or head != partial.folded:
            log.info("round %s: the updates folded ahead are not the round's first; folding from scratch", rnd.pk)
            return None, list(updates)
        return partial.aggregation, list(updates[done:])


def forget(round_id: int) -> None:
    """Drop what was folded for a round that ended without this worker's close."""
    with _lock:
        partial = _cache().pop(round_id, None)
    if partial is not None:
        partial.taken = True
