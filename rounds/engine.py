"""The round engine: what engine workers (tasks on the queue, ``rounds.tasks``) do.

Nothing here runs inside a device or operator request: requests record their rows and ask for a
tick (``rounds.dispatch``). A tick marks silent clients offline, closes or abandons the live round
when it is complete or past its deadline, and opens the next one when enough clients are ready.

Closing is claimed once: ``open -> closing`` is a conditional UPDATE with a random token, so
exactly one worker aggregates a round however many race. The claim is a lease, renewed while the
worker folds updates in; a worker killed mid-aggregation leaves a claim that stops being renewed,
and the sweep hands the round back (``closing -> open``) to be closed again. Only the holder of
the current claim can commit the result, so a round yields exactly one version.
"""
from __future__ import annotations

import json
import logging
import random
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from clients.models import LIVE_STATUSES, ClientStatus
from clients.services import client_transition, clients_prune_stale_now_and_then
from fedcore import codec
from fedcore.aggregation import weighted_metric
from fedcore.strategies import AggregateResult
from fedcore.strategies.base import RoundAggregation
from fedplatform.events import emit, prune_outbox

from . import blobs, broadcast, dispatch, downloads, prefold, runstrategy
from .models import (
    LIVE_ROUND_STATUSES,
    EvaluationStatus,
    ModelVersion,
    Round,
    RoundStatus,
    Run,
    RunStatus,
    Update,
)
from .shapes import round_shape, run_shape

log = logging.getLogger("fedplatform.engine")


def close_lease() -> timedelta:
    return timedelta(seconds=settings.FEDPLATFORM["CLOSE_LEASE_SECONDS"])


def _lock_run(run_id: int) -> Run:
    # PostgreSQL: a row lock serialises the run's transitions; SQLite's IMMEDIATE transactions
    # already serialise every writer.
    return Run.objects.select_for_update().get(pk=run_id)


# ---------------------------------------------------------------------------------------- tick


def run_tick(*, run_id: int) -> None:
    """Advance a running run as far as it can go now."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return
    if run.tick_requested_at is not None:
        # Read first, write only when set: on SQLite even an UPDATE that matches nothing takes
        # the database's one write lock, and ticks are frequent.
        Run.objects.filter(pk=run_id, tick_requested_at__isnull=False).update(tick_requested_at=None)
    if run.status != RunStatus.RUNNING:
        return
    _mark_offline(run)
    current = run.round_set.filter(status__in=LIVE_ROUND_STATUSES).select_related("config").first()
    if current is not None:
        if current.status == RoundStatus.CLOSING:
            return  # another worker is closing it
        if not _settle(current):
            prefold.fold_arrivals(current)  # still waiting: fold in what has come, off the close
            return
    _advance(run_id)


def _advance(run_id: int) -> None:
    """After a round ended: finish the run, or open the next round."""
    run = Run.objects.get(pk=run_id)
    if run.status != RunStatus.RUNNING:
        return
    if _closed_rounds(run) >= run.rounds:
        _finish(run)
    else:
        round_open(run_id=run.pk)


def _mark_offline(run: Run) -> None:
    cutoff = timezone.now() - timedelta(seconds=run.offline_after)
    for client in run.clients.filter(status__in=LIVE_STATUSES, last_seen__lt=cutoff):
        client_transition(client=client, to=ClientStatus.OFFLINE, reason=f"silent for {run.offline_after}s")


def _settle(rnd: Round) -> bool:
    """Close or abandon an open round that is done; returns whether it ended here."""
    delivered = set(rnd.updates.values_list("client_id", flat=True))
    waiting = set(rnd.expected.values_list("pk", flat=True)) - delivered
    if not waiting and delivered:
        return round_close(round_id=rnd.pk)
    if timezone.now() >= rnd.deadline:
        if len(delivered) >= max(1, rnd.config.values["min_updates"]):
            return round_close(round_id=rnd.pk)
        return round_abandon(round_id=rnd.pk, reason=f"deadline with {len(delivered)} update(s)")
    if not waiting and not delivered:
        return round_abandon(round_id=rnd.pk, reason="every selected client left")
    return False


def _closed_rounds(run: Run) -> int:
    return run.round_set.filter(status=RoundStatus.CLOSED).count()


def _finish(run: Run) -> None:
    with transaction.atomic():
        if Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.FINISHED, finished_at=timezone.now()
        ):
            run.refresh_from_db()
            emit("run.changed", run_shape(run))


# -------------------------------------------------------------------------------------- sweep


def sweep_all() -> None:
    """What no request triggers: deadlines, silent clients, dead claims, lost tasks, old events."""
    recover_stale_claims()
    for run_id in Run.objects.filter(status=RunStatus.RUNNING).values_list("pk", flat=True):
        try:
            run_tick(run_id=run_id)
        except Exception:  # one broken run must not stop the others' sweep
            log.exception("run %s: tick failed", run_id)
    _recover_evaluations()
    _prune_now_and_then()
    clients_prune_stale_now_and_then()


_last_prune = 0.0
PRUNE_EVERY_SECONDS = 60


def _prune_now_and_then() -> None:
    global _last_prune
    if time.monotonic() - _last_prune >= PRUNE_EVERY_SECONDS:
        _last_prune = time.monotonic()
        prune_outbox()


def recover_stale_claims() -> list[int]:
    """Hand back rounds whose closing worker stopped renewing its claim (it was killed)."""
    stale = timezone.now() - close_lease()
    ids = list(Round.objects.filter(status=RoundStatus.CLOSING, claimed_at__lt=stale).values_list("pk", flat=True))
    recovered = []
    for round_id in ids:
        with transaction.atomic():
            if Round.objects.filter(pk=round_id, status=RoundStatus.CLOSING, claimed_at__lt=stale).update(
                status=RoundStatus.OPEN, claim="", claimed_at=None
            ):
                recovered.append(round_id)
    for round_id in recovered:
        log.warning("round %s: its closing worker went silent; the round is open to be closed again", round_id)
    return recovered


def _recover_evaluations() -> None:
    stale = timezone.now() - timedelta(seconds=settings.FEDPLATFORM["EVAL_LEASE_SECONDS"])
    dead = ModelVersion.objects.filter(evaluation=EvaluationStatus.RUNNING, evaluation_claimed_at__lt=stale)
    if dead.exists():  # read first: the sweep runs every few seconds
        dead.update(evaluation=EvaluationStatus.PENDING, evaluation_claimed_at=None)
    lost = timezone.now() - timedelta(seconds=30)  # created, but its task never ran
    pending = ModelVersion.objects.filter(
        evaluation=EvaluationStatus.PENDING, created_at__lt=lost,
        run__status__in=[RunStatus.RUNNING, RunStatus.DRAFT, RunStatus.PAUSED],
    )
    for version_id in pending.values_list("pk", flat=True)[:10]:
        dispatch.evaluate_later(version_id)


# -------------------------------------------------------------------------------------- rounds


def _could_open(run_id: int, now) -> bool:
    """The cheap reads that rule most ticks out before a write transaction is begun."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.status != RunStatus.RUNNING or run.round_set.filter(status__in=LIVE_ROUND_STATUSES).exists():
        return False
    cutoff = now - timedelta(seconds=run.offline_after)
    ready = run.clients.selectable(seen_since=cutoff).count()
    return ready >= max(1, run.min_clients)


def round_open(*, run_id: int) -> Round | None:
    """Open the next round if the run is running, none is live and enough clients are ready."""
    now = timezone.now()
    if not _could_open(run_id, now):
        return None
    try:
        with transaction.atomic():
            run = _lock_run(run_id)
            if run.status != RunStatus.RUNNING or run.round_set.filter(status__in=LIVE_ROUND_STATUSES).exists():
                return None
            number = _closed_rounds(run) + 1
            if number > run.rounds:
                return None
            cutoff = now - timedelta(seconds=run.offline_after)
            # Ids only: a tick while thousands of devices join must not load them all, every time.
            candidates = list(
                run.clients.selectable(seen_since=cutoff)
                .order_by("pk").values_list("pk", flat=True)
            )
            if len(candidates) < max(1, run.min_clients):
                return None
            attempt = run.round_set.filter(number=number).count()
            chosen_ids = random.Random(f"{run.seed}:{number}:{attempt}").sample(
                candidates, min(run.clients_per_round, len(candidates))
            )
            by_id = run.clients.in_bulk(chosen_ids)
            chosen = [by_id[pk] for pk in chosen_ids]
            base = run.versions.order_by("-number").first()
            config = run.configs.order_by("-version").first()
            if base is None or config is None:  # a started run has both; a round needs them
                return None
            rnd = Round.objects.create(
                run=run,
                number=number,
                base_version=base,
                config=config,
                hyperparameters={**run.hyperparameters(), **runstrategy.client_instructions(run)},
                upload_encoding=run.upload_encoding,
                deadline=now + timedelta(seconds=run.round_timeout),
            )
            rnd.expected.set(chosen)
            for client in chosen:
                client_transition(client=client, to=ClientStatus.TRAINING, reason=f"selected for round {number}",
                                  round=rnd)
            emit("round.opened", round_shape(rnd))
            dispatch.tick_at(run.pk, rnd.deadline)
    except IntegrityError:
        return None  # another worker opened it first
    log.info("run %s: round %s opened with %s", run_id, number, [c.name for c in chosen])
    return rnd


def round_abandon(*, round_id: int, reason: str) -> bool:
    with transaction.atomic():
        if not Round.objects.filter(pk=round_id, status=RoundStatus.OPEN).update(
            status=RoundStatus.ABANDONED, closed_at=timezone.now(), metrics={"abandoned": reason}
        ):
            return False
        rnd = Round.objects.get(pk=round_id)
        for client in rnd.expected.filter(status=ClientStatus.TRAINING):
            client_transition(client=client, to=ClientStatus.READY, reason="round abandoned", round=rnd)
        emit("round.closed", round_shape(rnd))
    prefold.forget(round_id)
    log.warning("round %s abandoned: %s", round_id, reason)
    return True


def _claim(round_id: int) -> str | None:
    token = secrets.token_hex(16)
    with transaction.atomic():
        run_id = Round.objects.filter(pk=round_id).values_list("run_id", flat=True).first()
        if run_id is None:
            return None
        _lock_run(run_id)  # an upload commits before the claim, or sees the round closing
        claimed = Round.objects.filter(pk=round_id, status=RoundStatus.OPEN).update(
            status=RoundStatus.CLOSING, claim=token, claimed_at=timezone.now()
        )
    return token if claimed else None


class ClaimLost(Exception):
    """The lease ran out while aggregating and the round was handed to another worker."""


class _Lease:
    """Renews a round's claim while a long aggregation runs."""

    def __init__(self, round_id: int, token: str) -> None:
        self.round_id, self.token = round_id, token
        self.every = close_lease().total_seconds() / 3
        self.renewed = time.monotonic()

    def renew_if_due(self) -> None:
        if time.monotonic() - self.renewed < self.every:
            return
        if not Round.objects.filter(pk=self.round_id, status=RoundStatus.CLOSING, claim=self.token).update(
            claimed_at=timezone.now()
        ):
            raise ClaimLost(f"round {self.round_id}")
        self.renewed = time.monotonic()


def round_close(*, round_id: int) -> bool:
    """Aggregate the round's accepted updates into the next global version, exactly once.

    Claims the round, folds the updates in one at a time (memory does not grow with their
    number), stores the version blob outside any transaction, then commits the result only if
    the claim is still this worker's. Evaluation of the new version is a task of its own; the next
    round opens at once.
    """
    token = _claim(round_id)
    if token is None:
        return False
    try:
        version_id = _aggregate_and_commit(round_id, token)
    except ClaimLost:
        log.warning("round %s: claim lost while aggregating; another worker closes it", round_id)
        return False
    except Exception:
        # Give the round back at once rather than after the lease: the next tick retries.
        Round.objects.filter(pk=round_id, status=RoundStatus.CLOSING, claim=token).update(
            status=RoundStatus.OPEN, claim="", claimed_at=None
        )
        raise
    if version_id is None:
        return False
    try:
        _advance(Round.objects.values_list("run_id", flat=True).get(pk=round_id))
    finally:
        # Only now: a test-set pass started at the commit would take the CPU from the next round's
        # opening. If this worker dies first, the sweep finds the version's evaluation pending.
        dispatch.evaluate_later(version_id)
    return True


def contributions(rnd: Round, updates: list[Update], lease: _Lease | None = None):
    """The round's deltas, decoded one at a time as the aggregator asks for them."""
    for update in updates:
        if lease is not None:
            lease.renew_if_due()
        # Lazily: the aggregator reads one decoded tensor at a time, never a whole update.
        yield codec.decode_lazily(blobs.load(update.blob.name), kind="delta"), update.num_examples


def aggregate_round(
    rnd: Round, updates: list[Update], lease: _Lease | None = None, *, ahead: RoundAggregation | None = None
) -> AggregateResult:
    """The new global model (and strategy state) from a round's recorded updates: the one
    aggregation path, shared by closing and by ``audit_run``.

    The run's strategy folds the updates in from the base version and the state stored beside it;
    a streaming one (weighted means) holds one decoded tensor at a time, a robust rule every update.
    ``ahead``: an aggregation that already folded the round's first updates (``rounds.prefold``);
    ``updates`` are then the rest.
    """
    aggregation = ahead
    if aggregation is None:
        aggregation = runstrategy.begin_aggregation(rnd, sum(u.num_examples for u in updates))
    for arrays, weight in contributions(rnd, updates, lease):
        aggregation.add(arrays, weight)
        del arrays
    return aggregation.result()


def _aggregate_and_commit(round_id: int, token: str) -> int | None:
    """The new version's id once the round is closed with it; None when the claim was lost."""
    started = time.perf_counter()
    rnd = Round.objects.select_related("run", "base_version", "config").get(pk=round_id)
    updates = list(rnd.updates.order_by("pk"))  # final: the round is closing, uploads are refused
    if not updates:
        raise RuntimeError(f"round {round_id} was claimed with no update")
    lease = _Lease(round_id, token)
    ahead, rest = prefold.take(rnd, updates)
    result = aggregate_round(rnd, rest, lease, ahead=ahead)
    lease.renew_if_due()
    metrics = _round_metrics(rnd, updates, result.model)
    metrics["strategy"] = rnd.run.strategy
    metrics["folded_ahead"] = len(updates) - len(rest)
    metrics.update(result.metrics)
    version = store_version(run=rnd.run, number=rnd.number, arrays=result.model, state=result.state)
    del result
    metrics["aggregation_seconds"] = round(time.perf_counter() - started, 3)
    # What devices download, committed with the version: any tick may open the next round once
    # this round is closed, and its devices must not find the broadcast missing and compute it.
    started = time.perf_counter()
    pending_broadcast = broadcast.prepare(version)
    metrics["broadcast_seconds"] = round(time.perf_counter() - started, 3)
    with transaction.atomic():
        _lock_run(rnd.run_id)
        closed_at = timezone.now()
        metrics["duration_seconds"] = round((closed_at - rnd.opened_at).total_seconds(), 3)
        if not Round.objects.filter(pk=rnd.pk, status=RoundStatus.CLOSING, claim=token).update(
            status=RoundStatus.CLOSED, closed_at=closed_at, metrics=metrics, claim=""
        ):
            return None
        version.save()
        broadcast.record(pending_broadcast, version)
        Round.objects.filter(pk=rnd.pk).update(result_version=version)
        _record_federated_eval(rnd.base_version_id, metrics)
        rnd.refresh_from_db()
        emit("round.closed", round_shape(rnd))
    log.info("run %s: round %s closed: %s", rnd.run_id, rnd.number, json.dumps(metrics))
    return version.pk


def store_version(*, run: Run, number: int, arrays: dict, state: dict | None = None) -> ModelVersion:
    """A version row (not yet saved) whose lossless blob, and strategy state, are already in storage."""
    data, decoded = codec.encode_with_reconstruction(
        arrays, encoding="float32", kind="full", meta={"run": run.pk, "version": number}
    )
    digest = blobs.sha256(data)
    name = blobs.store(f"runs/{run.pk}/versions", data, digest)
    # Its broadcast and its evaluation read it next, in this process: from memory, not decoded again.
    blobs.remember_decoded(name, digest, decoded)
    state_name, state_digest = runstrategy.store_state(run, number, state or {})
    return ModelVersion(
        run=run,
        number=number,
        blob=name,
        sha256=digest,
        size_bytes=len(data),
        float32_bytes=codec.float32_size(codec.manifest_of(arrays)),
        strategy_state=state_name,
        strategy_state_sha256=state_digest,
        metrics={},
    )


def _round_metrics(rnd: Round, updates: list[Update], arrays: dict) -> dict:
    pairs = lambda key: [(u.metrics.get(key), u.num_examples) for u in updates]  # noqa: E731
    eval_pairs = [(u.metrics.get("eval_accuracy"), u.metrics.get("eval_examples") or 0) for u in updates]
    eval_loss_pairs = [(u.metrics.get("eval_loss"), u.metrics.get("eval_examples") or 0) for u in updates]
    metrics = {
        "participants": len(updates),
        "examples": sum(u.num_examples for u in updates),
        "train_loss": weighted_metric(pairs("train_loss")),
        "train_accuracy": weighted_metric(pairs("train_accuracy")),
        # Clients evaluate the base model they received: this is version (number - 1)'s accuracy.
        "federated_base_accuracy": weighted_metric(eval_pairs),
        "federated_base_loss": weighted_metric(eval_loss_pairs),
        "bytes_up": sum(u.bytes_wire for u in updates),
        # bytes_down and per-client bytes, counted by the server as it answered (rounds.downloads).
        **downloads.round_bytes(rnd, updates),
        "float32_bytes_per_update": codec.float32_size(codec.manifest_of(arrays)),
        "upload_encoding": rnd.upload_encoding,
        # Filled in by the evaluation task, which runs after the next round has opened.
        "test_accuracy": None,
        "test_loss": None,
    }
    metrics["compression_ratio"] = (
        round(metrics["float32_bytes_per_update"] * len(updates) / metrics["bytes_up"], 3)
        if metrics["bytes_up"] else None
    )
    return metrics


def _record_federated_eval(version_id: int, metrics: dict) -> None:
    if metrics.get("federated_base_accuracy") is None:
        return
    version = ModelVersion.objects.get(pk=version_id)  # re-read under the run lock: evaluation writes here too
    version.metrics = {
        **version.metrics,
        "federated_accuracy": metrics["federated_base_accuracy"],
        "federated_loss": metrics["federated_base_loss"],
    }
    version.save(update_fields=["metrics"])


# ---------------------------------------------------------------------------------- evaluation


def _claim_evaluation(version_id: int) -> int | None:
    """Claim the newest pending version of ``version_id``'s run, that one included.

    Each queued evaluation evaluates one version, so every version gets its metrics; but when
    rounds outpace evaluations, the current model's come first (the one operators watch) and the
    older ones fill in behind it.
    """
    run_id = ModelVersion.objects.filter(pk=version_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return None
    pending = ModelVersion.objects.filter(run_id=run_id, evaluation=EvaluationStatus.PENDING)
    for candidate in pending.order_by("-number").values_list("pk", flat=True)[:10]:
        if ModelVersion.objects.filter(pk=candidate, evaluation=EvaluationStatus.PENDING).update(
            evaluation=EvaluationStatus.RUNNING, evaluation_claimed_at=timezone.now()
        ):
            return candidate
    return None


def version_evaluate(*, version_id: int) -> str | None:
    """Test metrics of a global version, on the server's bounded test sample; fills in the
    version's and its round's metrics and tells the dashboard. Claimed once (see
    ``_claim_evaluation`` for which version)."""
    from .evaluation import evaluate_arrays  # noqa: PLC0415 - torch loads only in engine workers

    claimed = _claim_evaluation(version_id)
    if claimed is None:
        return None
    version = ModelVersion.objects.select_related("run").get(pk=claimed)
    started = time.perf_counter()
    found: dict = {}
    try:
        result = evaluate_arrays(version.run, blobs.decoded_version(version.blob.name, version.sha256))
    except Exception as exc:
        log.exception("run %s: evaluating version %s failed", version.run_id, version.number)
        outcome, found = EvaluationStatus.FAILED, {"evaluation_error": f"{type(exc).__name__}: {exc}"[:300]}
    else:
        if result is None:
            outcome = EvaluationStatus.SKIPPED
        else:
            outcome = EvaluationStatus.DONE
            found = {f"test_{name}": value for name, value in result.items()}
    found["evaluation_seconds"] = round(time.perf_counter() - started, 3)
    with transaction.atomic():
        _lock_run(version.run_id)
        version.refresh_from_db()
        version.metrics = {**version.metrics, **{k: v for k, v in found.items() if v is not None}}
        version.evaluation = outcome
        version.save(update_fields=["metrics", "evaluation"])
        rnd = Round.objects.filter(result_version=version).select_related("config").first()
        if rnd is not None:
            rnd.metrics = {**rnd.metrics, **found}
            rnd.save(update_fields=["metrics"])
            emit("round.evaluated", round_shape(rnd))
    return outcome
