"""The round engine: runs, rounds and updates change only here.

No in-process timers: ``run_tick`` is called on every device request (and by the ``sweep``
command), so deadlines and offline clients are enforced by whichever process sees time pass, and
a restarted server simply carries on. Every transition is a conditional UPDATE or runs under a
lock on the run row (PostgreSQL) / an IMMEDIATE transaction (SQLite), so racing processes agree.
"""
import json
import logging
import random
import time
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from clients.models import Client, ClientStatus, SELECTABLE_STATUSES
from clients.services import client_count_bytes, client_seen, client_snapshot, client_transition
from dashboard.events import publish
from fedcore import codec
from fedplatform.errors import Conflict, Forbidden, Gone, Invalid, TooLarge

from . import blobs
from .aggregation import fedavg, weighted_metric
from .evaluation import evaluate_arrays
from .models import (
    TERMINAL_RUN_STATUSES,
    TUNABLE_FIELDS,
    ModelVersion,
    Round,
    RoundStatus,
    Run,
    RunConfig,
    RunStatus,
    Update,
)

log = logging.getLogger("fedplatform.rounds")

# Clients the offline sweep watches: everyone alive and not parked by an operator.
LIVE_STATUSES = (
    ClientStatus.JOIN,
    ClientStatus.READY,
    ClientStatus.TRAINING,
    ClientStatus.FINISH,
    ClientStatus.UPDATE,
)
# Statuses that mean "between rounds" once the client has no pending round.
IDLE_STATUSES = (ClientStatus.JOIN, ClientStatus.FINISH, ClientStatus.UPDATE, ClientStatus.TRAINING)
MAX_METRICS_HEADER = 4096


# ---------------------------------------------------------------------------------------- runs


def run_snapshot(run: Run) -> dict:
    latest = run.configs.order_by("-version").values_list("version", flat=True).first()
    return {
        "id": run.pk,
        "name": run.name,
        "status": run.status,
        "rounds": run.rounds,
        "completed_rounds": run.round_set.filter(status=RoundStatus.CLOSED).count(),
        "config_version": latest,
        "config": _tunables(run),
    }


def _store_version(*, run: Run, number: int, arrays: dict, metrics: dict) -> ModelVersion:
    data = codec.encode(arrays, encoding="float32", kind="full", meta={"run": run.pk, "version": number})
    digest = blobs.sha256(data)
    name = blobs.store(f"runs/{run.pk}/versions", data, digest)
    return ModelVersion(
        run=run,
        number=number,
        blob=name,
        sha256=digest,
        size_bytes=len(data),
        float32_bytes=codec.float32_size(codec.manifest_of(arrays)),
        metrics=metrics,
    )


def _tunables(run: Run) -> dict:
    return {field: getattr(run, field) for field in TUNABLE_FIELDS}


def run_create(*, author: str = "", **config) -> Run:
    """Create a run in ``draft`` with its initial global model (version 0) and config version 1."""
    run = Run(**config)
    run.full_clean()
    arrays = blobs.initial_arrays(run.arch, run.dataset, run.seed)
    with transaction.atomic():
        run.save()
        RunConfig.objects.create(run=run, version=1, values=_tunables(run), changed=[], author=author)
        version = _store_version(run=run, number=0, arrays=arrays, metrics={})
        version.save()
        # robust: a failed baseline evaluation is logged, not turned into an error for a created run
        transaction.on_commit(lambda: _evaluate_version_later(version.pk), robust=True)
        publish("run.changed", run_snapshot(run))
    return run


def _evaluate_version_later(version_id: int) -> None:
    # The initial model's accuracy is a useful baseline; it runs after the commit, so the
    # evaluation holds no lock (the response still waits for it).
    version = ModelVersion.objects.select_related("run").get(pk=version_id)
    result = evaluate_arrays(version.run.arch, version.run.dataset, blobs.decoded_version(version.blob.name, version.sha256))
    if result:
        ModelVersion.objects.filter(pk=version_id).update(
            metrics={"test_accuracy": result["accuracy"], "test_loss": result["loss"]}
        )


def run_configure(*, run: Run, changes: dict, author: str) -> RunConfig:
    """Record a new configuration version; rounds that open from now on use it.

    The open round keeps the version it opened with (its tasks are already out).
    """
    changes = dict(changes)
    name = changes.pop("name", None)  # a label, not configuration: renaming makes no version
    if name is not None:
        Run.objects.filter(pk=run.pk).update(name=name)
    unknown = set(changes) - set(TUNABLE_FIELDS)
    if unknown:
        raise Invalid(f"cannot change {', '.join(sorted(unknown))} while a run exists", "immutable_field")
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.is_terminal:
            raise Conflict(f"run {run.pk} is {run.status}; its configuration is final", "run_closed")
        changed = sorted(f for f, v in changes.items() if getattr(run, f) != v)
        for field, value in changes.items():
            setattr(run, field, value)
        run.full_clean()
        run.save(update_fields=list(changes) or None)
        latest = run.configs.order_by("-version").first()
        if not changed:
            return latest
        config = RunConfig.objects.create(
            run=run, version=latest.version + 1, values=_tunables(run), changed=changed, author=author
        )
        publish("run.changed", run_snapshot(run))
    run_tick(run_id=run.pk)  # fewer rounds or clients may let the run finish or a round open now
    return config


RUN_MOVES = {
    "start": ({RunStatus.DRAFT}, RunStatus.RUNNING),
    "pause": ({RunStatus.RUNNING}, RunStatus.PAUSED),
    "resume": ({RunStatus.PAUSED}, RunStatus.RUNNING),
    "stop": ({RunStatus.DRAFT, RunStatus.RUNNING, RunStatus.PAUSED}, RunStatus.STOPPED),
}


def run_control(*, run: Run, action: str) -> Run:
    """Start, pause, resume or stop a run; refuses moves its current status does not allow."""
    allowed_from, to = RUN_MOVES[action]
    now = timezone.now()
    changes: dict = {"status": to}
    if action == "start":
        changes["started_at"] = now
    if to in TERMINAL_RUN_STATUSES:
        changes["finished_at"] = now
    with transaction.atomic():
        if not Run.objects.filter(pk=run.pk, status__in=allowed_from).update(**changes):
            run.refresh_from_db()
            raise Conflict(f"cannot {action} a run that is {run.status}", "illegal_run_transition")
        run.refresh_from_db()
        if to == RunStatus.STOPPED:
            # The open round will never be aggregated; its late uploads get 409 round_closed.
            run.round_set.filter(status=RoundStatus.OPEN).update(status=RoundStatus.ABANDONED, closed_at=now)
        publish("run.changed", run_snapshot(run))
    if to == RunStatus.RUNNING:
        run_tick(run_id=run.pk)
    return run


# --------------------------------------------------------------------------------------- sweep


def run_tick(*, run_id: int) -> None:
    """Advance a running run: mark silent clients offline, close or abandon the open round when
    it is done or past its deadline, open the next round when enough clients are ready."""
    run = Run.objects.get(pk=run_id)
    if run.status != RunStatus.RUNNING:
        return
    _mark_offline(run)
    current = run.round_set.filter(status=RoundStatus.OPEN).select_related("config").first()
    if current is not None:
        _settle(current)
        current.refresh_from_db()
        if current.status == RoundStatus.OPEN:
            return
    run.refresh_from_db()
    if run.status == RunStatus.RUNNING:
        if _closed_rounds(run) >= run.rounds:
            _finish(run)
        else:
            round_open(run_id=run.pk)


def sweep_all() -> None:
    for run_id in Run.objects.filter(status=RunStatus.RUNNING).values_list("pk", flat=True):
        run_tick(run_id=run_id)


def _mark_offline(run: Run) -> None:
    cutoff = timezone.now() - timedelta(seconds=run.offline_after)
    for client in run.clients.filter(status__in=LIVE_STATUSES, last_seen__lt=cutoff):
        client_transition(client=client, to=ClientStatus.OFFLINE, reason=f"silent for {run.offline_after}s")


def _settle(rnd: Round) -> None:
    delivered = set(rnd.updates.values_list("client_id", flat=True))
    waiting = set(rnd.expected.values_list("pk", flat=True)) - delivered
    if not waiting and delivered:
        round_close(round_id=rnd.pk)
    elif timezone.now() >= rnd.deadline:
        if len(delivered) >= max(1, rnd.config.values["min_updates"]):
            round_close(round_id=rnd.pk)
        else:
            round_abandon(round_id=rnd.pk, reason=f"deadline with {len(delivered)} update(s)")
    elif not waiting and not delivered:
        round_abandon(round_id=rnd.pk, reason="every selected client left")


def _closed_rounds(run: Run) -> int:
    return run.round_set.filter(status=RoundStatus.CLOSED).count()


def _finish(run: Run) -> None:
    with transaction.atomic():
        if Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.FINISHED, finished_at=timezone.now()
        ):
            run.refresh_from_db()
            publish("run.changed", run_snapshot(run))


# -------------------------------------------------------------------------------------- rounds


def round_snapshot(rnd: Round) -> dict:
    return {
        "id": rnd.pk,
        "run": rnd.run_id,
        "number": rnd.number,
        "status": rnd.status,
        "expected": sorted(rnd.expected.values_list("pk", flat=True)),
        "received": rnd.updates.count(),
        "opened_at": rnd.opened_at.isoformat(),
        "deadline": rnd.deadline.isoformat(),
        "closed_at": rnd.closed_at.isoformat() if rnd.closed_at else None,
        "config_version": rnd.config.version,
        "hyperparameters": rnd.hyperparameters,
        "upload_encoding": rnd.upload_encoding,
        "metrics": rnd.metrics,
    }


def round_open(*, run_id: int) -> Round | None:
    """Open the next round if the run is running, none is open and enough clients are ready."""
    now = timezone.now()
    try:
        with transaction.atomic():
            run = Run.objects.select_for_update().get(pk=run_id)
            if run.status != RunStatus.RUNNING or run.round_set.filter(status=RoundStatus.OPEN).exists():
                return None
            number = _closed_rounds(run) + 1
            if number > run.rounds:
                return None
            cutoff = now - timedelta(seconds=run.offline_after)
            candidates = list(
                run.clients.filter(status__in=SELECTABLE_STATUSES, last_seen__gte=cutoff).order_by("pk")
            )
            if len(candidates) < max(1, run.min_clients):
                return None
            attempt = run.round_set.filter(number=number).count()
            chosen = random.Random(f"{run.seed}:{number}:{attempt}").sample(
                candidates, min(run.clients_per_round, len(candidates))
            )
            base = run.versions.order_by("-number").first()
            rnd = Round.objects.create(
                run=run,
                number=number,
                base_version=base,
                config=run.configs.order_by("-version").first(),
                hyperparameters=run.hyperparameters(),
                upload_encoding=run.upload_encoding,
                deadline=now + timedelta(seconds=run.round_timeout),
            )
            rnd.expected.set(chosen)
            for client in chosen:
                client_transition(client=client, to=ClientStatus.TRAINING, reason=f"selected for round {number}", round=rnd)
            publish("round.opened", round_snapshot(rnd))
    except IntegrityError:
        return None  # another process opened it first
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
        publish("round.closed", round_snapshot(rnd))
    log.warning("round %s abandoned: %s", round_id, reason)
    return True


def round_close(*, round_id: int) -> bool:
    """Aggregate the round's accepted updates into the next global version, exactly once.

    The slow part (decoding, averaging, evaluating, writing the blob) runs outside any
    transaction; the claim is a conditional UPDATE that only one process can win, and it checks
    that no update arrived meanwhile (else it aggregates again).
    """
    for _ in range(5):
        rnd = Round.objects.select_related("run", "base_version").get(pk=round_id)
        if rnd.status != RoundStatus.OPEN:
            return False
        started = time.perf_counter()
        updates = list(rnd.updates.order_by("pk"))
        if not updates:
            return False
        run = rnd.run
        base = rnd.base_version
        base_arrays = blobs.decoded_version(base.blob.name, base.sha256)
        deltas = [(codec.decode(blobs.load(u.blob.name), kind="delta").arrays, u.num_examples) for u in updates]
        arrays = fedavg(base_arrays, deltas)
        del deltas
        metrics = _round_metrics(rnd, updates, arrays)
        version = _store_version(run=run, number=rnd.number, arrays=arrays, metrics=_version_metrics(metrics))
        metrics["aggregation_seconds"] = round(time.perf_counter() - started, 3)
        with transaction.atomic():
            Run.objects.select_for_update().get(pk=run.pk)
            if sorted(rnd.updates.values_list("pk", flat=True)) != [u.pk for u in updates]:
                continue  # an update slipped in while we aggregated: include it
            closed_at = timezone.now()
            metrics["duration_seconds"] = round((closed_at - rnd.opened_at).total_seconds(), 3)
            if not Round.objects.filter(pk=rnd.pk, status=RoundStatus.OPEN).update(
                status=RoundStatus.CLOSED, closed_at=closed_at, metrics=metrics
            ):
                return False
            version.save()
            Round.objects.filter(pk=rnd.pk).update(result_version=version)
            _record_federated_eval(base, metrics)
            rnd.refresh_from_db()
            publish("round.closed", round_snapshot(rnd))
        log.info("run %s: round %s closed: %s", run.pk, rnd.number, json.dumps(metrics))
        run_tick(run_id=run.pk)
        return True
    raise RuntimeError(f"round {round_id} kept receiving updates while closing")


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
        # As reported by the participants (a delta or the full model, whichever they fetched).
        "bytes_down": sum(int(u.metrics.get("download_bytes", 0)) for u in updates),
        "float32_bytes_per_update": codec.float32_size(codec.manifest_of(arrays)),
        "upload_encoding": rnd.upload_encoding,
    }
    metrics["compression_ratio"] = (
        round(metrics["float32_bytes_per_update"] * len(updates) / metrics["bytes_up"], 3) if metrics["bytes_up"] else None
    )
    metrics.update(_server_evaluation(rnd, arrays))
    return metrics


def _server_evaluation(rnd: Round, arrays: dict) -> dict:
    """Test metrics of the new global model. A failure here is recorded, not raised: it must not
    hold back the round (the sweep would retry the close, and fail, forever)."""
    try:
        server = evaluate_arrays(rnd.run.arch, rnd.run.dataset, arrays)
    except Exception as exc:
        log.exception("run %s: evaluating round %s's model failed", rnd.run_id, rnd.number)
        return {"test_accuracy": None, "test_loss": None, "evaluation_error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"test_accuracy": server["accuracy"] if server else None, "test_loss": server["loss"] if server else None}


def _version_metrics(round_metrics: dict) -> dict:
    return {k: round_metrics[k] for k in ("test_accuracy", "test_loss") if round_metrics.get(k) is not None}


def _record_federated_eval(base: ModelVersion, metrics: dict) -> None:
    if metrics.get("federated_base_accuracy") is None:
        return
    base.refresh_from_db()
    base.metrics = {
        **base.metrics,
        "federated_accuracy": metrics["federated_base_accuracy"],
        "federated_loss": metrics["federated_base_loss"],
    }
    base.save(update_fields=["metrics"])


# ----------------------------------------------------------------------------- device requests


def task_for(*, client: Client) -> dict | None:
    """The client's work for now, or None; raises Gone when its run is over."""
    client_seen(client=client)

    def pending_round() -> Round | None:
        return (
            Round.objects.filter(run_id=client.run_id, status=RoundStatus.OPEN, expected=client)
            .exclude(updates__client=client)
            .select_related("base_version")
            .first()
        )

    # A client asking for work without a pending round is idle: count it as ready before the
    # tick, so its own poll can be the one that opens the next round.
    if client.status in IDLE_STATUSES and pending_round() is None:
        client_transition(client=client, to=ClientStatus.READY, reason="idle")
    run_tick(run_id=client.run_id)
    run = Run.objects.get(pk=client.run_id)
    if run.is_terminal:
        raise Gone(f"run {run.pk} is {run.status}", f"run_{run.status}")
    client.refresh_from_db()
    rnd = pending_round() or _backfill(run=run, client=client)
    if rnd is None:
        return None
    version = rnd.base_version.number
    return {
        "round": rnd.pk,
        "round_number": rnd.number,
        "run": run.pk,
        "arch": run.arch,
        "dataset": run.dataset,
        "base_version": version,
        "model_url": f"/api/v1/runs/{run.pk}/model/?version={version}",
        "upload_url": f"/api/v1/rounds/{rnd.pk}/updates/{client.pk}/",
        "upload_encoding": rnd.upload_encoding,
        "deadline": rnd.deadline,
        "seed": rnd.number,
        "hyperparameters": rnd.hyperparameters,
    }


def _backfill(*, run: Run, client: Client) -> Round | None:
    """Give a newcomer an empty place in the open round, when the run allows it."""
    if not run.allow_backfill or client.status not in SELECTABLE_STATUSES:
        return None
    with transaction.atomic():
        Run.objects.select_for_update().get(pk=run.pk)  # serialises racing newcomers
        rnd = (
            Round.objects.filter(run=run, status=RoundStatus.OPEN)
            .select_related("config", "base_version")
            .first()
        )
        if rnd is None or rnd.expected.count() >= rnd.config.values["clients_per_round"]:
            return None
        if not client_transition(client=client, to=ClientStatus.TRAINING, reason=f"backfilled round {rnd.number}", round=rnd):
            return None
        rnd.expected.add(client)
        publish("round.opened", round_snapshot(rnd))
    return rnd


def heartbeat(*, client: Client, progress: float | None, round_id: int | None) -> str:
    """Record liveness and progress; tell the device what to do next."""
    client_seen(client=client, progress=progress)
    run = Run.objects.get(pk=client.run_id)
    if run.is_terminal:
        return "stop"
    if round_id is not None:
        still_wanted = Round.objects.filter(pk=round_id, status=RoundStatus.OPEN, expected=client).exists()
        if not still_wanted:
            return "abort"
    client.refresh_from_db()
    publish("client.status", client_snapshot(client))
    return "continue"


def model_download(*, client: Client | None, version: ModelVersion, base: int | None = None) -> bytes:
    """A global version for a client: the stored lossless blob, or the delta from ``base`` when the
    client holds that version and accepts the run's download encoding (rounds.downloads); counts
    the bytes sent for the client."""
    from .downloads import model_body  # noqa: PLC0415 - kept inside: download policy lives in downloads.py

    accepts = list(client.accepts or []) if client is not None else None
    data = model_body(version=version, base=base, accepts=accepts).data
    if client is not None:
        client_seen(client=client)
        client_count_bytes(client=client, received=len(data))
        if client.status in (ClientStatus.JOIN, ClientStatus.FINISH, ClientStatus.READY):
            client_transition(client=client, to=ClientStatus.UPDATE, reason=f"fetching version {version.number}")
        Client.objects.filter(pk=client.pk).update(held_version=version.number)
    return data


def parse_metrics(raw: str | None) -> dict:
    """Parse the ``X-Metrics`` header: a small flat JSON object of finite numbers."""
    if not raw:
        return {}
    if len(raw) > MAX_METRICS_HEADER:
        raise Invalid("X-Metrics is too long", "bad_metrics")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise Invalid(f"X-Metrics is not JSON: {exc}", "bad_metrics") from exc
    if not isinstance(value, dict):
        raise Invalid("X-Metrics must be a JSON object", "bad_metrics")
    clean = {}
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > 64:
            raise Invalid("X-Metrics keys must be short strings", "bad_metrics")
        if isinstance(item, bool) or not isinstance(item, (int, float)) or item != item or item in (float("inf"), float("-inf")):
            raise Invalid(f"X-Metrics[{key!r}] must be a finite number", "bad_metrics")
        clean[key] = item
    return clean


def update_accept(
    *, round_id: int, client: Client, body: bytes, num_examples: int, metrics: dict, max_bytes: int
) -> tuple[Update, bool]:
    """Validate and store one client's update; returns (update, created).

    The 2xx is only sent after the blob is in storage and the row is committed. Re-sending the
    identical bytes is answered as success and counted once.
    """
    client_seen(client=client)
    rnd = Round.objects.select_related("run", "base_version").filter(pk=round_id).first()
    if rnd is None or rnd.run_id != client.run_id:
        raise Forbidden("this round is not in your run", "not_selected")
    if len(body) > max_bytes:
        raise TooLarge(f"update of {len(body)} bytes exceeds the limit of {max_bytes}", "too_large")
    digest = blobs.sha256(body)
    existing = Update.objects.filter(round=rnd, client=client).first()
    if existing is not None:
        if existing.sha256 == digest:
            return existing, False
        raise Conflict("a different update from you was already accepted for this round", "update_conflict")
    if rnd.status != RoundStatus.OPEN:
        raise Conflict(f"round {rnd.number} is {rnd.status}; this update was not used", "round_closed")
    if not rnd.expected.filter(pk=client.pk).exists():
        raise Forbidden(f"you are not selected for round {rnd.number}", "not_selected")
    if num_examples < 1:
        raise Invalid("X-Num-Examples must be a positive integer", "bad_num_examples")
    manifest = blobs.manifest_for(rnd.run.arch, rnd.run.dataset)
    started = time.perf_counter()
    try:
        decoded = codec.decode(body, manifest=manifest, kind="delta", max_bytes=codec.float32_size(manifest))
    except codec.CodecError as exc:
        raise Invalid(str(exc), exc.code) from exc
    decode_seconds = time.perf_counter() - started
    if decoded.base_version != rnd.base_version.number:
        raise Invalid(
            f"delta against version {decoded.base_version}, but round {rnd.number} is based on "
            f"version {rnd.base_version.number}",
            "wrong_base",
        )
    # Slow I/O before the transaction: the blob is durable before the row that points at it exists.
    name = blobs.store(f"runs/{rnd.run_id}/rounds/{rnd.number}", body, digest)
    try:
        with transaction.atomic():
            Run.objects.select_for_update().get(pk=rnd.run_id)
            if not Round.objects.filter(pk=rnd.pk, status=RoundStatus.OPEN).exists():
                raise Conflict(f"round {rnd.number} closed while your update arrived", "round_closed")
            update = Update.objects.create(
                round=rnd,
                client=client,
                blob=name,
                sha256=digest,
                encoding=",".join(sorted(decoded.encodings)),
                # Weights are capped at what the client declared when it registered.
                num_examples=min(num_examples, client.num_examples or num_examples),
                bytes_wire=len(body),
                metrics=metrics,
                decode_seconds=round(decode_seconds, 4),
            )
            client_count_bytes(client=client, sent=len(body))
            client_transition(client=client, to=ClientStatus.FINISH, reason=f"update for round {rnd.number}", round=rnd)
            publish("round.update_received", {
                "run": rnd.run_id, "round": rnd.pk, "client": client.pk, "bytes": len(body),
                "received_at": update.received_at.isoformat(), "metrics": update.metrics,
            })
    except IntegrityError:
        # The same client raced itself (a retry crossed the first attempt): answer like a resend.
        existing = Update.objects.get(round=rnd, client=client)
        if existing.sha256 != digest:
            raise Conflict("a different update from you was already accepted for this round", "update_conflict")
        return existing, False
    try:
        _settle(Round.objects.select_related("config").get(pk=rnd.pk))
    except Exception:  # the update is safely stored; the next sweep retries the close
        log.exception("closing round %s failed; the sweep will retry", rnd.pk)
    return update, True
