"""docs/your-own-task.md as a new user follows it: the task file written from the tutorial into a
folder outside the project, the tutorial's demo command (server, engine, three label-skewed
workers) trains it to the end, and the exported model loads in plain PyTorch and onnxruntime."""
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest
import requests

from processes import ROOT, OperatorSession, Server, wait_until

pytestmark = pytest.mark.e2e

TUTORIAL = ROOT / "docs" / "your-own-task.md"
PASSWORD = "tutorial-pass-123"


def _blocks(marker: str) -> str:
    """The fenced block right after ``<!-- marker -->`` in the tutorial."""
    match = re.search(rf"<!-- {re.escape(marker)} -->\n```\w*\n(.*?)```", TUTORIAL.read_text(), re.S)
    assert match, f"the tutorial has no block marked {marker!r}"
    return match.group(1)


def _demo_command() -> tuple[dict[str, str], list[str]]:
    export_line, demo_line = [line for line in _blocks("commands: demo").splitlines() if line.strip()]
    env = dict(item.split("=", 1) for item in shlex.split(export_line.removeprefix("export ")))
    return env, shlex.split(demo_line)


def test_the_tutorial_files_are_the_example_files():
    for name in ("tabular_task.py", "predict.py"):
        assert _blocks(f"file: {name}") == (ROOT / "examples" / "tabular" / name).read_text(), name


def _finished(api: requests.Session, url: str) -> dict | None:
    try:
        runs = api.get(f"{url}/api/v1/runs/", timeout=10).json()
    except requests.RequestException:
        return None
    return next((run for run in runs if run["status"] == "finished"), None)


def test_a_new_user_federates_the_tutorials_task_and_uses_the_trained_model(tmp_path):
    task_dir = tmp_path / "my-task"  # outside the project: the task needs no change to it
    task_dir.mkdir()
    for name in ("tabular_task.py", "predict.py"):
        (task_dir / name).write_text(_blocks(f"file: {name}"))
    tutorial_env, demo = _demo_command()
    assert demo[0] == "bin/demo" and tutorial_env["FEDPLATFORM_TASKS"] == "tabular_task:task"
    server = Server(tmp_path, prepare=False, env_extra={
        "FEDPLATFORM_ADMIN_PASSWORD": PASSWORD, "FEDPLATFORM_TASKS": tutorial_env["FEDPLATFORM_TASKS"],
        "PYTHONPATH": str(task_dir),
    })
    # bin/demo is set-up plus `manage.py demo`; the port and a shorter run keep the test small.
    args = [*demo[1:], "--port", str(server.port), "--rounds", "4"]
    log = tmp_path / "demo.log"
    proc = subprocess.Popen([sys.executable, "manage.py", "demo", *args], cwd=ROOT, env=server.env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    api = OperatorSession("admin", PASSWORD)
    try:
        run = wait_until(lambda: _finished(api, server.url), timeout=240, what=f"the tutorial's run to finish:\n{log}")
        assert (run["task"], run["task_config"]) == ("tabular_task:task", {"hidden": 32})
        rounds = api.get(f"{server.url}/api/v1/runs/{run['id']}/rounds/", timeout=10).json()
        closed = [r for r in rounds if r["status"] == "closed"]
        assert len(closed) == 4 and all(len(r["updates"]) >= 2 for r in closed)
        text = log.read_text()
        assert "benign" in text and "malignant" in text  # each worker logged its own partition
        assert "Traceback" not in text, text[-3000:]

        # Section 3, as written: export with the management command, then predict.py.
        for line in _blocks("commands: export").splitlines():
            command = shlex.split(line.replace("~/my-task", str(task_dir)))
            assert command[:3] == [".venv/bin/python", "manage.py", "export_model"]
            done = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=server.env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
        predicted = subprocess.run([sys.executable, "predict.py"], cwd=task_dir, capture_output=True, text=True,
                                   env={**os.environ, "PYTHONPATH": str(task_dir)},  # as the tutorial says
                                   timeout=120)
        assert predicted.returncode == 0, predicted.stderr
        accuracy = float(re.search(r"accuracy ([0-9.]+) on 114 test rows", predicted.stdout).group(1))
        assert "onnxruntime agrees with PyTorch: True" in predicted.stdout
        assert accuracy >= 0.8, predicted.stdout  # four rounds on label-skewed devices learn this task
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
