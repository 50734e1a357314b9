"""worker.agent against a scripted stub server speaking docs/api.md over real HTTP.

These check the worker's side of the protocol; the end-to-end test against the real Django
server lives with the server's tests.
"""
from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from worker_stubhttp import Reply, error

from fedcore.codec import CONTENT_TYPE, ENCODINGS, decode, encode, manifest_of
from fedcore.nets import build_model
from fedcore.state import state_to_arrays
from fedcore.tasks import manifest_digest
from worker.agent import Agent
from worker.cli import parse_args
from worker.exitcodes import ExitCode
from worker.log import Log

REPO = Path(__file__).resolve().parents[2]
CLIENT, RUN, ROUND, VERSION = 5, 1, 12, 2
BUILTIN = "fedcore.tasks.vision:image_classification"
FASHION_CNN = {"arch": "cnn", "dataset": "fashion-mnist"}
BASE = state_to_arrays(build_model("cnn", in_channels=1, seed=0))
DIGEST = manifest_digest(manifest_of(BASE))
TASK = {
    "round": ROUND, "round_number": 3, "run": RUN, "task": BUILTIN, "task_config": FASHION_CNN,
    "manifest_digest": DIGEST,
    "base_version": VERSION, "model_url": f"/api/v1/runs/{RUN}/model/?version={VERSION}",
    "upload_url": f"/api/v1/rounds/{ROUND}/updates/{CLIENT}/", "upload_encoding": "bfloat16",
    "deadline": "2026-11-26T10:00:00Z", "seed": 3,
    "hyperparameters": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.05,
                        "momentum": 0.9, "weight_decay": 0.0},
}
BASE_BLOB = encode(BASE, encoding="float32", kind="full")


class FakeRun:
    """The server side of one run: answers from scripted queues, defaults after them."""

    def __init__(self, stub_server, *, tasks, uploads=(), heartbeats=(), dataset="fashion-mnist",
                 task=BUILTIN, digest=None, registrations=()):
        self.tasks, self.uploads, self.heartbeats = list(tasks), list(uploads), list(heartbeats)
        self.registrations = list(registrations)
        self.run_task = {"run": RUN, "task": task, "task_config": {"arch": "cnn", "dataset": dataset},
                         "manifest_digest": digest or DIGEST, "upload_encoding": "bfloat16"}
        base = "/api/v1"
        self.server = stub_server({
            ("GET", f"{base}/clients/enrollment/"):
                lambda r: Reply(200, {**self.run_task, "name": "r", "status": "running"}),
            ("POST", f"{base}/clients/"): self.register,
            ("GET", f"{base}/clients/{CLIENT}/task/"):
                lambda r: self._next(self.tasks, error(410, "run_finished", "done")),
            ("GET", f"{base}/runs/{RUN}/model/"): self.model,
            ("POST", f"{base}/clients/{CLIENT}/heartbeat/"):
                lambda r: self._next(self.heartbeats, Reply(200, {"action": "continue", "status": "training"})),
            ("PUT", f"{base}/rounds/{ROUND}/updates/{CLIENT}/"):
                lambda r: self._next(self.uploads, Reply(201, {"accepted": True})),
            ("DELETE", f"{base}/clients/{CLIENT}/"): lambda r: Reply(204),
        })

    @staticmethod
    def _next(queue, default):
        return queue.pop(0) if queue else default

    def register(self, request):
        if self.registrations:
            return self.registrations.pop(0)
        body = request.json()
        return Reply(201, {"id": CLIENT, "token": "tok-5", "name": body["name"], "status": "idle", **self.run_task})

    def model(self, request):
        if request.headers.get("If-None-Match") == f'"{VERSION}"':
            return Reply(304, headers={"ETag": f'"{VERSION}"'})
        return Reply(200, BASE_BLOB, {"Content-Type": CONTENT_TYPE, "ETag": f'"{VERSION}"',
                                      "X-Model-Version": str(VERSION)})

    def calls(self, method, suffix):
        return self.server.calls(method, "/api/v1/" + suffix)


def run_agent(url, fashion_dir, *extra):
    config = parse_args(["--server", url, "--name", "t1", "--data", str(fashion_dir),
                         "--limit", "64", "--device", "cpu", "--quiet",
                         "--max-retry-seconds", "5", *extra])
    out = io.StringIO()
    code = Agent(config, log=Log(config.name, stream=out)).run()
    return code, out.getvalue()


def test_a_worker_registers_trains_uploads_a_delta_and_leaves_when_the_run_ends(stub_server, fashion_dir):
    run = FakeRun(stub_server, tasks=[Reply(204, headers={"Retry-After": "0"}), Reply(200, TASK)])
    code, log = run_agent(run.server.url, fashion_dir, "--num-partitions", "2", "--partition-index", "1")

    assert code == ExitCode.OK, log
    registration = run.calls("POST", "clients/")[0].json()
    assert registration["num_examples"] == 64
    assert (registration["run"], registration["task"], registration["manifest_digest"]) == (RUN, BUILTIN, DIGEST)
    assert registration["accepts"] == list(ENCODINGS)
    assert {"torch", "device", "cpu_count"} <= set(registration["device"])
    assert run.calls("GET", f"clients/{CLIENT}/task/")[0].headers["Authorization"] == "Token tok-5"

    beat = run.calls("POST", f"clients/{CLIENT}/heartbeat/")[0].json()
    assert beat["status"] == "training" and beat["round"] == ROUND and 0 < beat["progress"] <= 1

    (upload,) = run.calls("PUT", f"rounds/{ROUND}/updates/{CLIENT}/")
    assert upload.headers["Content-Type"] == CONTENT_TYPE
    assert upload.headers["X-Num-Examples"] == "64"
    metrics = json.loads(upload.headers["X-Metrics"])
    assert set(metrics) == {"train_loss", "train_accuracy", "eval_loss", "eval_accuracy",
                            "eval_examples", "train_seconds", "eval_seconds", "download_seconds",
                            "download_bytes"}
    assert metrics["download_bytes"] == len(BASE_BLOB)
    assert metrics["eval_examples"] == 7  # 64 * 0.1 / 0.9, rounded
    decoded = decode(upload.body, kind="delta", manifest=manifest_of(BASE))
    assert decoded.base_version == VERSION and decoded.encodings == {"bfloat16"}
    assert any(np.abs(a).max() > 0 for a in decoded.arrays.values())  # it really trained

    assert len(run.calls("DELETE", f"clients/{CLIENT}/")) == 1  # run over: leave cleanly
    assert "[t1] registered as client 5" in log and "run over (run_finished)" in log


def test_a_closed_round_is_logged_and_the_cached_model_is_revalidated_with_a_304(stub_server, fashion_dir):
    run = FakeRun(stub_server, tasks=[Reply(200, TASK), Reply(200, TASK)],
                  uploads=[error(409, "round_closed", "round 12 is closed")])
    code, log = run_agent(run.server.url, fashion_dir)

    assert code == ExitCode.OK, log
    assert "closed before our update counted (round_closed)" in log
    assert len(run.calls("PUT", f"rounds/{ROUND}/updates/{CLIENT}/")) == 2
    first, second = run.calls("GET", f"runs/{RUN}/model/")
    assert "If-None-Match" not in first.headers and second.headers["If-None-Match"] == '"2"'
    assert "unchanged (cached)" in log


def test_a_kicked_worker_exits_with_code_3_and_does_not_try_to_leave(stub_server, fashion_dir):
    run = FakeRun(stub_server, tasks=[error(403, "kicked", "removed by operator alice")])
    code, log = run_agent(run.server.url, fashion_dir)

    assert code == ExitCode.KICKED
    assert "removed by operator alice" in log
    assert run.calls("DELETE", f"clients/{CLIENT}/") == []


def test_an_abort_heartbeat_drops_the_round_without_uploading(stub_server, fashion_dir):
    run = FakeRun(stub_server, tasks=[Reply(200, TASK)],
                  heartbeats=[Reply(200, {"action": "abort", "status": "idle"})])
    code, log = run_agent(run.server.url, fashion_dir)

    assert code == ExitCode.OK, log
    assert run.calls("PUT", f"rounds/{ROUND}/updates/{CLIENT}/") == []
    assert "aborted by the server" in log
    assert len(run.calls("GET", f"clients/{CLIENT}/task/")) == 2  # went back to polling


def test_a_stop_heartbeat_makes_the_worker_leave_and_exit_0(stub_server, fashion_dir):
    run = FakeRun(stub_server, tasks=[Reply(200, TASK), Reply(200, TASK)],
                  heartbeats=[Reply(200, {"action": "stop", "status": "stopping"})])
    code, log = run_agent(run.server.url, fashion_dir)

    assert code == ExitCode.OK
    assert "asked this worker to stop" in log
    assert run.calls("PUT", f"rounds/{ROUND}/updates/{CLIENT}/") == []
    assert len(run.calls("GET", f"clients/{CLIENT}/task/")) == 1
    assert len(run.calls("DELETE", f"clients/{CLIENT}/")) == 1


def test_a_missing_dataset_exits_with_code_2_and_says_how_to_get_it(stub_server, tmp_path):
    run = FakeRun(stub_server, tasks=[])
    code, log = run_agent(run.server.url, tmp_path, "--dataset", "fashion-mnist")

    assert code == ExitCode.USAGE
    assert "--download" in log and "--data" in log
    assert run.calls("POST", "clients/") == []  # never registered


def test_a_run_on_another_dataset_than_the_chosen_one_exits_with_code_2(stub_server, fashion_dir):
    run = FakeRun(stub_server, tasks=[], dataset="cifar10",
                  digest=manifest_digest(manifest_of(state_to_arrays(build_model("cnn", in_channels=3,
                                                                                   image_size=32)))))
    code, log = run_agent(run.server.url, fashion_dir, "--dataset", "fashion-mnist")

    assert code == ExitCode.USAGE
    assert "trains on 'cifar10', not --dataset 'fashion-mnist'" in log
    assert run.calls("POST", "clients/") == []


def test_a_run_whose_task_is_not_installed_here_exits_with_code_6_before_registering(stub_server, fashion_dir):
    run = FakeRun(stub_server, tasks=[], task="somebody_elses_package.tasks:tabular")
    code, log = run_agent(run.server.url, fashion_dir)

    assert code == ExitCode.TASK
    assert "cannot import task 'somebody_elses_package.tasks:tabular'" in log and "PYTHONPATH" in log
    assert run.calls("POST", "clients/") == []


def test_a_local_task_that_builds_another_model_than_the_runs_exits_with_code_6(stub_server, fashion_dir):
    run = FakeRun(stub_server, tasks=[], digest="0" * 32)
    code, log = run_agent(run.server.url, fashion_dir, "--task", BUILTIN)

    assert code == ExitCode.TASK
    assert "builds a different model" in log
    assert run.calls("POST", "clients/") == []


def test_a_registration_the_server_refuses_for_its_manifest_exits_with_code_6(stub_server, fashion_dir):
    run = FakeRun(stub_server, tasks=[], registrations=[error(409, "manifest_mismatch", "not this run's model")])
    code, log = run_agent(run.server.url, fashion_dir)

    assert code == ExitCode.TASK
    assert "manifest_mismatch" in log


def test_sigterm_makes_the_worker_leave_the_server_and_exit_0(stub_server, fashion_dir):
    run = FakeRun(stub_server, tasks=[Reply(204, headers={"Retry-After": "30"})] * 50)
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "--server", run.server.url, "--name", "sig",
         "--data", str(fashion_dir), "--limit", "32", "--device", "cpu", "--quiet"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not run.calls("GET", f"clients/{CLIENT}/task/") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.calls("GET", f"clients/{CLIENT}/task/"), "the worker never polled"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "SIGTERM: leaving" in stderr
    assert len(run.calls("DELETE", f"clients/{CLIENT}/")) == 1
