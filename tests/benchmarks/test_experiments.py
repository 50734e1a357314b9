"""The experiment runner on a tiny grid: every round recorded with its provenance, a rerun replaces
what it reran, the report is computed from the rows, and the partition histogram is the devices' split."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = ["rounds=2", "train_examples=300", "test_examples=200", "batch_size=16"]


def _run(out: Path, *only: str, seeds: str = "0") -> None:
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "experiments.py"), "run", "strategies-fmnist-dirichlet0.1", "--only", *only,
         "--seeds", seeds, "--set", *TINY, "--out", str(out), "--jobs", "2"],
        check=True, capture_output=True, timeout=600,
    )


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("experiments") / "tiny.jsonl"
    _run(out, "fedavg", "fedadam", "centralized lr=0.05", seeds="0,1")
    return out


def test_every_round_of_every_configuration_and_seed_is_recorded_with_its_provenance(recorded):
    rows = _rows(recorded)
    keys = {(r["config"], r["seed"], r["round"]) for r in rows}
    configs = {r["config"] for r in rows}
    assert configs == {"centralized lr=0.05", "K=10 dirichlet(0.1) fedavg", "K=10 dirichlet(0.1) fedadam"}
    assert keys == {(c, s, n) for c in configs for s in (0, 1) for n in (1, 2)}
    for row in rows:
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert row["backend"] == "sim" and row["params"]["rounds"] == 2
        assert row["command"].startswith("python benchmarks/experiments.py run")
        assert row["commit"] and "CPU" in row["machine"]
    central = [r for r in rows if r["config"] == "centralized lr=0.05"]
    assert all(r["params"]["clients"] == 1 and r["params"]["upload_encoding"] == "float32" for r in central)
    # Different strategies from the same start really aggregate differently.
    by = {(r["config"], r["seed"], r["round"]): r["test_accuracy"] for r in rows}
    assert by[("K=10 dirichlet(0.1) fedavg", 0, 2)] != by[("K=10 dirichlet(0.1) fedadam", 0, 2)]


def test_the_same_configuration_and_seed_give_the_same_rounds_and_a_rerun_replaces_them(recorded, tmp_path):
    copy = tmp_path / "copy.jsonl"
    copy.write_text(recorded.read_text())
    _run(copy, "fedavg", seeds="1")
    before, after = _rows(recorded), _rows(copy)
    assert len(after) == len(before)  # replaced, not appended
    pick = lambda rows: [(r["round"], r["test_accuracy"]) for r in rows  # noqa: E731
                         if r["config"] == "K=10 dirichlet(0.1) fedavg" and r["seed"] == 1]
    assert pick(after) == pick(before)  # deterministic: the simulation is repeatable


def test_the_report_is_computed_from_the_rows(recorded, tmp_path, monkeypatch):
    import results_report

    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "strategies-fmnist-dirichlet0.1.jsonl").write_text(recorded.read_text())
    monkeypatch.setattr(results_report, "EXPERIMENTS", tmp_path / "experiments")
    monkeypatch.setattr(results_report, "PLOTS", tmp_path / "plots")
    text = results_report.render()
    rows = [r for r in _rows(recorded) if r["config"] == "K=10 dirichlet(0.1) fedavg" and r["round"] == 2]
    finals = [100 * r["test_accuracy"] for r in rows]
    expected = f"{np.mean(finals):.2f} ± {np.std(finals, ddof=1):.2f}"
    line = next(line for line in text.splitlines() if line.startswith("| K=10 dirichlet(0.1) fedavg |"))
    assert expected in line
    assert "Best strategy against FedAvg" in text and "python benchmarks/experiments.py run" in text
    assert (tmp_path / "plots" / "strategies-fmnist-dirichlet0.1.png").stat().st_size > 10_000


def test_the_partition_histogram_counts_what_each_device_trains_on(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "partition_histogram.py"), "--clients", "4", "--partition", "quantity",
         "--alpha", "0.5", "--train-examples", "1000", "--png", str(tmp_path / "h.png")],
        check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 4
    totals = [int(r[1]) for r in rows]
    assert all(int(r[1]) == sum(int(c) for c in r[2:]) for r in rows)
    assert 880 <= sum(totals) <= 920  # 1,000 examples less each device's held-out tenth
    assert max(totals) > 2 * min(totals)  # quantity skew
    assert (tmp_path / "h.png").stat().st_size > 10_000
