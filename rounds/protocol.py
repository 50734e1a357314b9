"""What devices ask of a run: their task, heartbeats, model downloads, update uploads.

Every function here records what the device said and answers; none aggregates, evaluates or opens
a round. When a request may let the run move on (an update arrived, a client became ready) it asks
for a tick (``rounds.dispatch``) and the engine does the rest. An idle poll reads and never writes
(``last_seen`` aside, at most every few seconds).
"""
import logging
import time
from typing import TYPE_CHECKING

from django.db import IntegrityError, connection, transaction

from clients.models import IDLE_STATUSES, SELECTABLE_STATUSES, Admission, Client, ClientStatus
from clients.services import (
    client_count_bytes, client_fetched, client_polled, client_seen, client_snapshot, client_transition,
)
from fedcore import codec
from fedplatform.errors import Conflict, Forbidden, Gone, Invalid, TooLarge
from fedplatform.events import emit
from fedplatform.prepared import Prepared, PreparedInsert

from . import blobs, device_input, dispatch, runtask
from .models import TERMINAL_RUN_STATUSES, Download, ModelVersion, Round, RoundStatus, Run, Update
from .shapes import round_shape

if TYPE_CHECKING:
    from .downloads import ModelBody

log = logging.getLogger("fedplatform.rounds")


def _sql(template: str) -> str:
    """Raw SQL for the hottest reads, table names from the models."""
    return template.format(
        round=Round._meta.db_table,
        expected=Round.expected.through._meta.db_table,
        update=Update._meta.db_table,
    )


# Every poll asks this, and almost always the answer is "nothing". Compiling the equivalent
# ORM query (a join and an exclusion subquery) costs about 2 ms of CPU; running it, 0.03 ms.
PENDING_ROUND_SQL = _sql(
    "SELECT r.id, r.base_version_id FROM {round} r JOIN {expected} e ON e.round_id = r.id AND e.client_id = %s"
    " WHERE r.run_id = %s AND r.status = %s"
    " AND NOT EXISTS (SELECT 1 FROM {update} u WHERE u.round_id = r.id AND u.client_id = %s)"
    " ORDER BY r.id LIMIT 1"
)
STILL_EXPECTED_SQL = _sql(
    "SELECT 1 FROM {round} r JOIN {expected} e ON e.round_id = r.id AND e.client_id = %s"
    " WHERE r.id = %s AND r.status = %s"
)


def _fetch_one(sql: str, params: list) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


_new_download = PreparedInsert(Download)
_round_by_pk = Prepared(lambda pk: Round.objects.select_related("base_version", "run").filter(pk=pk), int)


def _pending_round_ids(client: Client) -> tuple[int, int] | None:
    """(id, base version id) of the open round of the client's run that expects it and has no
    update from it yet."""
    row = _fetch_one(PENDING_ROUND_SQL, [client.pk, client.run_id, RoundStatus.OPEN, client.pk])
    return (row[0], row[1]) if row is not None else None


def _pending_round(client: Client) -> Round | None:
    """The open round of the client's run that expects it and has no update from it yet."""
    ids = _pending_round_ids(client)
    return _round_by_pk.first(ids[0]) if ids is not None else None


def task_for(*, client: Client, seen: bool = True) -> dict | None:
    """The client's work for now, or None; raises Gone when its run is over.

    ``seen``: record the device as alive. A parked poll that an event woke looks again without it:
    its first look wrote ``last_seen`` at most a third of ``offline_after`` ago, and the wake is the
    moment a round's devices all ask at once, when every write queues for the database; the
    download that follows records it in its own transaction.
    """
    # A device that just registered becomes ready below, and that move records its first poll.
    joining = client.polled_at is None and client.status == ClientStatus.JOIN
    if not joining:
        client_polled(client=client)  # first, so a client that comes back online counts as proven
    if seen:
        client_seen(client=client)
    run = client.run
    if run.status in TERMINAL_RUN_STATUSES:
        raise Gone(f"run {run.pk} is {run.status}", f"run_{run.status}")
    rnd = _pending_round(client)
    if rnd is None:
        # Asking for work without a pending round means the client is idle: it becomes ready,
        # and that state change (not the poll) asks the engine for a round.
        if client.status in IDLE_STATUSES and client_transition(
            client=client, to=ClientStatus.READY, reason="idle", first_poll=joining
        ):
            rnd = _pending_round(client)  # the engine may have been quick (and is, in tests)
        if joining and client.polled_at is None:
            client_polled(client=client)  # it did not move (an operator got there first): still proven
        if rnd is None and run.allow_backfill:
            rnd = _backfill(run=run, client=client)
    if rnd is None:
        return None
    return task_body(rnd, client)


def task_body(rnd: Round, client: Client) -> dict:
    run = rnd.run
    version = rnd.base_version.number
    return {
        "round": rnd.pk,
        "round_number": rnd.number,
        "run": run.pk,
        "task": run.task,
        "task_config": run.task_config,
        "manifest_digest": run.manifest_digest,
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
    if client.status not in SELECTABLE_STATUSES or client.admission != Admission.APPROVED:
        return None
    rnd = Round.objects.filter(run=run, status=RoundStatus.OPEN).select_related("config").first()
    if rnd is None or rnd.expected.count() >= rnd.config.values["clients_per_round"]:
        return None  # read first: the common case writes nothing
    with transaction.atomic():
        Run.objects.select_for_update().get(pk=run.pk)  # serialises racing newcomers
        rnd = (
            Round.objects.filter(run=run, status=RoundStatus.OPEN)
            .select_related("config", "base_version", "run")
            .first()
        )
        if rnd is None or rnd.expected.count() >= rnd.config.values["clients_per_round"]:
            return None
        if not client_transition(client=client, to=ClientStatus.TRAINING, reason=f"backfilled round {rnd.number}",
                                 round=rnd):
            return None
        rnd.expected.add(client)
        emit("round.opened", round_shape(rnd))
    return rnd


def heartbeat(*, client: Client, progress: float | None, round_id: int | None) -> str:
    """Record liveness and progress; tell the device what to do next."""
    wrote = client_seen(client=client, progress=progress)
    if client.run.status in TERMINAL_RUN_STATUSES:
        return "stop"
    if round_id is not None:
        if _fetch_one(STILL_EXPECTED_SQL, [client.pk, round_id, RoundStatus.OPEN]) is None:
            return "abort"
    if wrote:  # the dashboard shows progress as often as it is recorded, and no more often
        emit("client.status", client_snapshot(client))
    return "continue"


def model_download(
    *, client: Client | None, version: ModelVersion, base: int | None = None, chains: bool = False
) -> "ModelBody":
    """A global version for a client: the broadcast delta or chain from ``base``, or the replica's
    snapshot (rounds.downloads); for an operator, the exact version. Counts the bytes sent for
    the client and, when it downloads the base of a round it is selected for, for that round."""
    from .downloads import model_body  # noqa: PLC0415 - download policy lives in downloads.py

    accepts = list(client.accepts or []) if client is not None else None
    body = model_body(version=version, base=base, accepts=accepts, chains=chains)
    if client is None:
        return body
    pending = _pending_round_ids(client)
    # One transaction, and two statements in it: a round's selected devices all download at the
    # moment it opens, when on SQLite each transaction waits its turn for the one write lock, and
    # on PostgreSQL each commit waits for its WAL flush.
    with transaction.atomic():
        client_fetched(client=client, received=len(body.data), held_version=version.number)
        if pending is not None and pending[1] == version.pk:
            _new_download.create(round_id=pending[0], client=client, version=version.number,
                                 base_version=body.base_version, kind=body.kind, bytes_wire=len(body.data))
        if client.status in (ClientStatus.JOIN, ClientStatus.FINISH, ClientStatus.READY):
            client_transition(client=client, to=ClientStatus.UPDATE, reason=f"fetching version {version.number}")
    return body


def round_upload_limit(round_id: int, *, cap: int) -> int:
    """The largest body an upload for this round may have: what a valid update of its run's model
    can be (``device_input.upload_limit``), never over ``cap``; ``cap`` for an unknown round (the
    upload is refused for that anyway)."""
    rnd = _round_by_pk.first(round_id)
    if rnd is None:
        return cap
    return device_input.upload_limit(runtask.run_manifest(rnd.run), cap)


def update_accept(
    *, round_id: int, client: Client, body: bytes, num_examples: int, metrics: dict, max_bytes: int
) -> tuple[Update, bool]:
    """Validate and store one client's update; returns (update, created).

    The 2xx is only sent after the blob is in storage and the row is committed. Re-sending the
    identical bytes is answered as success and counted once. The last expected update asks the
    engine to close the round; this request does not wait for it.
    """
    client_seen(client=client)
    rnd = _round_by_pk.first(round_id)
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
    # The view parses the header (device_input.parse_num_examples); callers in-process get the
    # same rule: a weight is 1 to what the client registered, an over-claim is refused.
    if num_examples < 1:
        raise Invalid("X-Num-Examples must be a positive integer", "bad_num_examples")
    if num_examples > client.num_examples:
        raise Invalid(
            f"X-Num-Examples is {num_examples}, but you registered {client.num_examples} examples",
            "too_many_examples",
        )
    manifest = runtask.run_manifest(rnd.run)
    limit = device_input.upload_limit(manifest, max_bytes)
    if len(body) > limit:
        raise TooLarge(f"update of {len(body)} bytes exceeds this model's limit of {limit}", "too_large")
    started = time.perf_counter()
    try:
        device_input.check_upload_encoding(
            codec.peek_header(body)["tensors"], manifest, rnd.upload_encoding, lossless=runtask.run_lossless(rnd.run)
        )
        decoded = codec.validate(body, manifest=manifest, kind="delta", max_bytes=codec.float32_size(manifest))
    except codec.CodecError as exc:
        raise Invalid(str(exc), exc.code) from exc
    decode_seconds = time.perf_counter() - started
    if decoded.base_version != rnd.base_version.number:
        raise Invalid(
            f"delta against version {decoded.base_version}, but round {rnd.number} is based on "
            f"version {rnd.base_version.number}",
            "wrong_base",
        )
    encodings = ",".join(sorted(decoded.encodings))
    del decoded  # validated, never dequantized here: the engine decodes it when it aggregates
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
                encoding=encodings,
                num_examples=num_examples,  # checked above: 1 to what the client registered
                bytes_wire=len(body),
                metrics=metrics,
                decode_seconds=round(decode_seconds, 4),
            )
            client_count_bytes(client=client, sent=len(body))
            client_transition(client=client, to=ClientStatus.FINISH, reason=f"update for round {rnd.number}", round=rnd)
            emit("round.update_received", {
                "run": rnd.run_id, "round": rnd.pk, "client": client.pk, "bytes": len(body),
                "received_at": update.received_at.isoformat(), "metrics": update.metrics,
            })
            dispatch.request_tick(rnd.run_id)
    except IntegrityError:
        # The same client raced itself (a retry crossed the first attempt): answer like a resend.
        existing = Update.objects.get(round=rnd, client=client)
        if existing.sha256 != digest:
            raise Conflict("a different update from you was already accepted for this round",
                           "update_conflict") from None
        return existing, False
    return update, True

