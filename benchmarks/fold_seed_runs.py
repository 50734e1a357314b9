"""Fold a directory of per-seed ``accuracy_cost.py`` runs into one experiment JSONL.

Each ``<name>_seedN.md`` / ``<name>_seedN.rounds.jsonl`` pair becomes rows of
``results/experiments/encodings-<directory>.jsonl`` (configuration = the encoding, with the seed,
the round, and the run's own command, commit and machine from its table's header), the form
``experiments.py`` writes and ``seed_summary.py`` reads; the per-seed files are then removed.
Nothing is recomputed: the rows are the runs' records, renamed.

    python benchmarks/fold_seed_runs.py benchmarks/results/cifar10_cnn benchmarks/results/cifar10_cnn_ternary
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from report import RESULTS

EXPERIMENTS = RESULTS / "experiments"
RENAMED = {"encoding": "config", "accuracy": "test_accuracy", "loss": "test_loss"}


def header(md: Path) -> dict[str, str]:
    """The command, commit and machine a run's table names (commit: "not recorded" in older tables)."""
    found = {"command": "", "commit": "not recorded", "machine": ""}
    for line in md.read_text().splitlines()[:12]:
        for key in found:
            prefix = f"{key.capitalize()}: "
            if line.startswith(prefix):
                found[key] = line[len(prefix):].strip().strip("`")
    return found


def fold(directory: Path) -> tuple[Path, int]:
    experiment = f"encodings-{directory.name}"
    rows = []
    records = sorted(directory.glob("*.rounds.jsonl"))
    for path in records:
        seed = re.search(r"_seed(\d+)\.rounds\.jsonl$", path.name)
        if seed is None:
            raise SystemExit(f"{path}: no _seedN in the name")
        md = path.with_name(path.name.replace(".rounds.jsonl", ".md"))
        provenance = header(md) if md.exists() else {"command": "", "commit": "not recorded", "machine": ""}
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                row = {"experiment": experiment, "seed": int(seed.group(1)), "backend": "sim", "source": path.name,
                       **{RENAMED.get(k, k): v for k, v in record.items()}, **provenance}
                rows.append(row)
    rows.sort(key=lambda r: (r["config"], r["seed"], r["round"]))
    target = EXPERIMENTS / f"{experiment}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for path in records:
        path.unlink()
        path.with_name(path.name.replace(".rounds.jsonl", ".md")).unlink(missing_ok=True)
    if not any(directory.iterdir()):
        directory.rmdir()
    return target, len(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for directory in args.directories:
        target, runs = fold(directory)
        print(f"{directory}: {runs} run(s) -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
