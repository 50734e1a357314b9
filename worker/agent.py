"""The worker's life: prepare data, register, then poll / train / upload until told otherwise."""
from __future__ import annotations

import json
import time
from types import MappingProxyType

import numpy as np
import torch

from fedcore.codec import CONTENT_TYPE, CodecError, manifest_of
from fedcore.feedback import ErrorFeedback
from fedcore.state import buffer_names, state_to_arrays
from fedcore.tasks import DataRequest, DeviceData, TaskError, load_task, manifest_digest, seeded_model
from fedcore.tasks import Task as FederatedTask
from fedcore.training import pick_device
from worker.config import WorkerConfig
from worker.deviceinfo import device_info
from worker.exitcodes import ExitCode, WorkerExit
from worker.log import Log
from worker.modelcache import ModelCache
from worker.progress import StopRequested, TrainingAborted, TrainingProgress
from worker.registration import Registration, enrollment, register
from worker.session import ApiError, ApiSession, ServerUnreachable, retry_after
from worker.signals import Interrupted, interruptible
from worker.task import BadTask, Task
from worker.trainer import local_round

IDLE_DEFAULT_SECONDS = 5.0  # when a 204 carries no Retry-After
IDLE_MAX_SECONDS = 60.0  # never sleep longer than this between polls, whatever the server says
ERROR_PAUSE_SECONDS = 5.0  # after a failed task (bad model download, server 500), before polling
LEAVE_TIMEOUT = (2.0, 3.0)  # leaving is best effort: never hang a Ctrl-C on a dead server
HEARTBEAT_TIMEOUT = (2.0, 5.0)


def _is_kicked(err: ApiError) -> bool:
    # A kick revokes the token: later calls may answer 403 kicked or simply 401.
    return err.status == 401 or (err.status == 403 and err.code == "kicked")


class Agent:
    def __init__(self, config: WorkerConfig, *, log: Log | None = None) -> None:
        self.config = config
        self.log = log or Log(config.name)
        self.session = ApiSession(
            config.server,
            max_retry_seconds=config.max_retry_seconds,
            on_retry=self._on_retry,
        )
        self.models = ModelCache(self.session)
        # What lossy uploads dropped, sent with the next update; in memory only, so a restarted
        # worker starts from zero (at most one round's quantization error is lost).
        self.feedback = ErrorFeedback()
        self.registration: Registration | None = None
        self.task: FederatedTask | None = None
        self.task_config: dict = {}
        self.data: DeviceData | None = None
        self.device: torch.device | None = None
        self._model: torch.nn.Module | None = None  # built once: every round overwrites its weights
        self._buffers: frozenset[str] = frozenset()
        self._idle_logged = False  # log "waiting" once per idle stretch, not once per poll

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> ExitCode:
        """Run until the run ends, the server says stop, or a signal; returns the exit code."""
        code = ExitCode.OK
        with interruptible():
            try:
                self._setup_compute()
                self._join()
                self._serve()
            except Interrupted as sig:
                self.log(f"{sig}: leaving")
            except WorkerExit as exit_:
                code = exit_.code
                if exit_.message:
                    self.log(exit_.message)
            except ServerUnreachable as err:
                code = ExitCode.UNREACHABLE
                self.log(f"server unreachable, giving up: {err}")
            except Exception as err:  # noqa: BLE001 - the last line of defence: say what broke
                code = ExitCode.ERROR
                self.log(f"unexpected error: {type(err).__name__}: {err}")
            try:
                # A kicked client has no valid token, and an unreachable server cannot be told.
                if code not in (ExitCode.KICKED, ExitCode.UNREACHABLE):
                    self._leave()
            except Interrupted:
                pass
            finally:
                self.session.close()
        return code

    def _setup_compute(self) -> None:
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        try:
            self.device = pick_device(self.config.device)
        except RuntimeError as err:  # --device cuda on a machine without CUDA
            raise WorkerExit(ExitCode.USAGE, str(err)) from err

    def _join(self) -> None:
        """Learn the run's task, load it and this device's data, then register with the run."""
        cfg = self.config
        run_task = enrollment(self.session, run=cfg.run, enrollment_key=cfg.enrollment_key, log=self.log)
        path = cfg.task or run_task.task
        try:
            self.task = load_task(path)
            self.task_config = self.task.validate_config(run_task.task_config)
        except TaskError as err:
            raise WorkerExit(ExitCode.TASK, f"cannot use run {run_task.run}'s task {path}: {err}") from err
        model = seeded_model(self.task, self.task_config, seed=0)
        digest = manifest_digest(manifest_of(state_to_arrays(model)))
        if digest != run_task.manifest_digest:
            raise WorkerExit(ExitCode.TASK, (
                f"task {path} builds a different model (manifest {digest}) from run {run_task.run}'s "
                f"{run_task.task} (manifest {run_task.manifest_digest})"))
        self._model = model
        self._buffers = buffer_names(model)
        try:
            self.data = self.task.load_data(self.task_config, self._data_request())
        except TaskError as err:
            raise WorkerExit(ExitCode.USAGE, f"no data for {path}: {err}") from err
        counts = f"{self.data.num_train} train + {self.data.num_eval} eval examples"
        self.log(f"data: {self.data.description or counts}")
        self.registration = self._register(run_task.run, path, digest)

    def _data_request(self) -> DataRequest:
        cfg = self.config
        options = dict(cfg.task_options)
        if cfg.dataset:
            options.setdefault("dataset", cfg.dataset)
        return DataRequest(
            root=cfg.data, download=cfg.download, partition=cfg.partition, alpha=cfg.alpha,
            shards_per_partition=cfg.shards_per_client, num_partitions=cfg.num_partitions,
            partition_index=cfg.partition_index, seed=cfg.seed, limit=cfg.limit,
            eval_fraction=cfg.eval_fraction, options=MappingProxyType(options),
        )

    def _register(self, run: int, task: str, digest: str) -> Registration:
        assert self.data is not None and self.device is not None
        self.session.token = None
        reg = register(
            self.session, name=self.config.name, num_examples=self.data.num_train,
            device=device_info(self.device), run=run, task=task, manifest_digest=digest,
            enrollment_key=self.config.enrollment_key, log=self.log,
        )
        self.log(f"registered as client {reg.id} in run {reg.run} ({task}"
                 + (f" {self.task_config}" if self.task_config else "") + f", device {self.device})")
        return reg

    def _leave(self) -> None:
        reg, self.registration = self.registration, None
        if reg is None:
            return
        try:
            self.session.request("DELETE", f"clients/{reg.id}/", retry=False, timeout=LEAVE_TIMEOUT)
            self.log(f"left (client {reg.id})")
        except (ApiError, ServerUnreachable) as err:
            self.log(f"could not tell the server we left: {err}")

    # -- the polling loop ------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            task = self._poll()
            if task is not None:
                self._idle_logged = False
                self._do_task(task)

    def _poll(self) -> Task | None:
        """One ``GET task``; waits (as the server asks) and returns None when there is nothing."""
        assert self.registration is not None
        try:
            wait = self.config.poll_wait
            asked = time.monotonic()
            response = self.session.request(
                "GET", f"clients/{self.registration.id}/task/" + (f"?wait={wait:.0f}" if wait >= 1 else ""),
                # The server holds the request up to `wait` seconds: read for longer than that.
                timeout=(self.session.timeout[0], self.session.timeout[1] + wait),
            )
        except ApiError as err:
            self._raise_if_fatal(err)
            if err.status == 410:
                raise WorkerExit(ExitCode.OK, f"run over ({err.code}): {err.detail}") from err
            if err.status >= 500:  # a server bug should not kill the fleet: try again later
                self.log(f"server error while polling: {err}")
                time.sleep(ERROR_PAUSE_SECONDS)
                return None
            raise WorkerExit(ExitCode.ERROR, f"task request refused: {err}") from err
        if response.status_code == 204 or not response.content:
            if not self._idle_logged:
                self.log("waiting for a task")
                self._idle_logged = True
            if time.monotonic() - asked < 1.0:  # answered at once (no long-poll): wait as told
                time.sleep(min(IDLE_MAX_SECONDS, retry_after(response, IDLE_DEFAULT_SECONDS)))
            return None
        try:
            return Task.from_json(response.json())
        except (BadTask, ValueError) as err:
            raise WorkerExit(ExitCode.ERROR, f"cannot understand the task: {err}") from err

    def _raise_if_fatal(self, err: ApiError) -> None:
        if _is_kicked(err):
            raise WorkerExit(ExitCode.KICKED, f"kicked by an operator: {err.detail}") from err

    # -- one task ----------------------------------------------------------------------------

    def _do_task(self, task: Task) -> None:
        assert self.data is not None and self.device is not None
        hp = task.hyperparameters
        self.log(f"round {task.round_number} task: base v{task.base_version}, "
                 f"{hp.local_epochs} epoch(s), batch {hp.batch_size}, lr {hp.learning_rate}")
        assert self.task is not None and self._model is not None and self.registration is not None
        if task.manifest_digest and task.manifest_digest != self.registration.run_task.manifest_digest:
            raise WorkerExit(ExitCode.TASK, f"round {task.round_number} trains another model "
                                            f"(manifest {task.manifest_digest}) than this worker joined for")
        model = self._model
        download_started = time.perf_counter()
        base = self._download(task, model)
        download_seconds = round(time.perf_counter() - download_started, 3)  # for the round timeline
        if base is None:
            time.sleep(ERROR_PAUSE_SECONDS)
            return
        progress = TrainingProgress(
            epochs=hp.local_epochs, quiet=self.config.quiet, label=f"round {task.round_number} ",
            heartbeat=lambda fraction: self._heartbeat(task, fraction),
        )
        try:
            result = local_round(
                self.task, model, base, self.data, hp, device=self.device,
                seed=task.seed + self.config.partition_index, on_batch=progress,
            )
        except TrainingAborted:
            self.log(f"round {task.round_number} aborted by the server; work dropped")
            return
        except StopRequested as stop:
            raise WorkerExit(ExitCode.OK, "the server asked this worker to stop") from stop
        except FloatingPointError as err:
            # A diverged update is useless to the server; skip the round rather than die.
            self.log(f"round {task.round_number} diverged, not uploading: {err}")
            return
        finally:
            progress.close()
        m = {**result.metrics, "download_seconds": download_seconds,
             "download_bytes": self.models.last_download_bytes}  # 0: served from the cache
        self.log(
            f"round {task.round_number} trained in {m['train_seconds']:.1f}s: "
            f"loss {m['train_loss']:.4f} acc {m['train_accuracy']:.3f}"
            + (f"; base model eval loss {m['eval_loss']:.4f} acc {m['eval_accuracy']:.3f}"
               if "eval_loss" in m else "")
        )
        self._upload(task, result.delta, result.num_examples, m)

    def _download(self, task: Task, model: torch.nn.Module) -> dict[str, np.ndarray] | None:
        """The task's base model, or None (already logged) when it cannot be had right now."""
        started = time.perf_counter()
        try:
            base = self.models.fetch(task.model_url, task.base_version,
                                     manifest=manifest_of(state_to_arrays(model)))
        except ApiError as err:
            self._raise_if_fatal(err)
            self.log(f"model v{task.base_version} download refused: {err}")
            return None
        except (CodecError, ValueError) as err:
            self.log(f"model v{task.base_version} unusable: {err}")
            return None
        size = self.models.last_download_bytes
        what = "delta" if self.models.last_was_delta else "full model"
        self.log(f"model v{task.base_version}: " + (
            f"downloaded {_kib(size)} ({what}) in {time.perf_counter() - started:.2f}s" if size
            else "unchanged (cached)"))
        return base

    def _heartbeat(self, task: Task, fraction: float) -> str | None:
        """Report training progress; returns the server's action, None if it did not answer.

        Never retried: a missed heartbeat is harmless, a training loop stalled on one is not.
        """
        assert self.registration is not None
        try:
            answer = self.session.json_call(
                "POST", f"clients/{self.registration.id}/heartbeat/",
                {"status": "training", "progress": round(fraction, 4), "round": task.round},
                retry=False, timeout=HEARTBEAT_TIMEOUT,
            )
        except ServerUnreachable:
            return None
        except ApiError as err:
            self._raise_if_fatal(err)
            self.log(f"heartbeat refused: {err}")
            return None
        return answer.get("action") if isinstance(answer, dict) else None

    def _upload(self, task: Task, delta: dict[str, np.ndarray], num_examples: int,
                metrics: dict[str, float | int]) -> None:
        try:
            pending = self.feedback.encode(delta, encoding=task.upload_encoding, base_version=task.base_version,
                                           exact=self._buffers)
        except CodecError as err:  # e.g. non_finite: a delta that overflows the encoding
            self.log(f"round {task.round_number} update not encodable ({err.code}): {err}")
            return
        body = pending.body
        headers = {
            "Content-Type": CONTENT_TYPE,
            "X-Num-Examples": str(num_examples),
            "X-Metrics": json.dumps(metrics, separators=(",", ":")),
        }
        started = time.perf_counter()
        try:
            response = self.session.request("PUT", task.upload_url, data=body, headers=headers)
        except ApiError as err:
            self._raise_if_fatal(err)
            if err.status == 409:
                self.log(f"round {task.round_number} closed before our update counted "
                         f"({err.code}): {err.detail}")
            else:
                self.log(f"round {task.round_number} update rejected: {err.status} {err.code}: "
                         f"{err.detail}")
            return
        # Only an update the server counted settles the residual; a refused one changes nothing.
        self.feedback.commit(pending)
        outcome = "accepted" if response.status_code == 201 else "already accepted"
        self.log(f"round {task.round_number} uploaded {_kib(len(body))} ({task.upload_encoding}) "
                 f"in {time.perf_counter() - started:.2f}s: {outcome}")

    def _on_retry(self, what: str, delay: float) -> None:
        self.log(f"{what}; retrying in {delay:.1f}s")


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.2f} MiB"
