"""What every benchmark prints and writes: a markdown table, the command and the machine."""
from __future__ import annotations

import importlib.util
import os
import platform
import shlex
import sys
from pathlib import Path
from types import ModuleType

# The benchmarks are scripts (`python benchmarks/x.py`): Python puts this folder on sys.path, so they
# import each other by name, and the project's packages come from its installation (bin/setup).
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def load_file(path: Path, name: str) -> ModuleType:
    """The module in ``path``, imported as ``name``: a file that is neither installed nor in this folder
    (the tutorial's task, the end-to-end tests' process helpers). Only that file is imported, so no
    other module of its folder can shadow one of this folder's, or the other way round."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import does: what imports it by name later gets this module
    spec.loader.exec_module(module)
    return module


def machine() -> str:
    """CPU model and count, GPU (when torch sees one), torch/numpy/Python versions."""
    import numpy as np
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"CPU {cpu} ({os.cpu_count()} logical cores); GPU {gpu}; torch {torch.__version__}; "
        f"numpy {np.__version__}; Python {platform.python_version()}"
    )


def commit() -> str:
    """The commit the figures come from, marked when the tree had uncommitted changes."""
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        # Results written by earlier benchmarks are outputs, not a change to the code measured.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
            cwd=REPO, capture_output=True, text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha} (with uncommitted changes)" if dirty else sha


def command() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write(name: str, title: str, body: str, *, out_dir: Path | None = None) -> Path:
    """Print ``body`` and write it, with the command and the machine, to results/<name>.md."""
    text = f"# {title}\n\nCommand: `{command()}`\n\nCommit: {commit()}\n\nMachine: {machine()}\n\n{body}\n"
    print(text)
    target = (out_dir or RESULTS) / f"{name}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def stop_processes(procs: list, timeout: float = 20) -> None:
    """Ask each process to stop (SIGINT, newest first, as Ctrl-C would), then kill what lingers."""
    import signal
    import subprocess

    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
