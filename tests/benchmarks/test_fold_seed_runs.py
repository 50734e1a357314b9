"""Folding per-seed runs into one experiment JSONL keeps every record and its provenance, and the
seed summary reads the folded rows as it read the files."""
import json
from pathlib import Path

import fold_seed_runs
from seed_summary import runs_by_seed


def _seed_run(folder: Path, seed: int) -> Path:
    name = f"accuracy_cost_tiny_seed{seed}"
    (folder / f"{name}.md").write_text(f"# t\n\nCommand: `python benchmarks/accuracy_cost.py --seed {seed}`\n\n"
                                      "Machine: CPU test (2 logical cores)\n\nbody\n")
    records = [{"encoding": enc, "round": r,
                "accuracy": 0.5 + 0.01 * r + 0.001 * seed + (0.002 if enc == "int4" else 0), "loss": 1.0 / r,
                "bytes_up": 100 * r} for enc in ("float32", "int4") for r in (1, 2, 3)]
    path = folder / f"{name}.rounds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_folding_keeps_every_record_with_its_command_and_removes_the_per_seed_files(tmp_path, monkeypatch):
    runs = tmp_path / "tiny"
    runs.mkdir()
    originals = [_seed_run(runs, seed) for seed in (0, 1, 7)]
    before = runs_by_seed(originals)
    monkeypatch.setattr(fold_seed_runs, "EXPERIMENTS", tmp_path / "experiments")
    target, count = fold_seed_runs.fold(runs)
    assert count == 3 and not runs.exists()
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 3 * 2 * 3
    seven = [r for r in rows if r["seed"] == 7]
    assert {r["command"] for r in seven} == {"python benchmarks/accuracy_cost.py --seed 7"}
    assert all(r["machine"] == "CPU test (2 logical cores)" and r["commit"] == "not recorded" for r in rows)
    assert _same_numbers(runs_by_seed([target]), before)


def _same_numbers(after: dict, before: dict) -> bool:
    key = lambda r: (r["encoding"], r["round"], r["accuracy"])  # noqa: E731
    return after.keys() == before.keys() and all(sorted(map(key, after[k])) == sorted(map(key, before[k]))
                                                 for k in before)
