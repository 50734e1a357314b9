"""Float32 against one lossy encoding over several seeds, from accuracy_cost's per-round records.

    python benchmarks/seed_summary.py --encoding int4 \
        benchmarks/results/accuracy_cost_cifar10.rounds.jsonl \
        benchmarks/results/accuracy_cost_cifar10_seed1.rounds.jsonl \
        benchmarks/results/accuracy_cost_cifar10_seed2.rounds.jsonl

One run per seed and encoding is noisy (the float32 run itself moves by points from one round to
the next), so the gap is shown per seed, at the last round both reached and as the mean of the
last three rounds, and averaged over the seeds.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from report import table, write


def _accuracy_by_round(path: Path, encoding: str) -> dict[int, float]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["round"]: r["accuracy"] for r in rows if r["encoding"] == encoding}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", type=Path, help="one .rounds.jsonl per seed")
    parser.add_argument("--encoding", default="int4")
    parser.add_argument("--name", default="accuracy_cost_cifar10_seeds")
    args = parser.parse_args()
    rows, finals, tails = [], [], []
    for path in args.records:
        base, lossy = _accuracy_by_round(path, "float32"), _accuracy_by_round(path, args.encoding)
        last = max(set(base) & set(lossy))
        tail = [n for n in (last - 2, last - 1, last)]
        final_gap = 100 * (lossy[last] - base[last])
        tail_gap = 100 * (statistics.mean(lossy[n] for n in tail) - statistics.mean(base[n] for n in tail))
        finals.append(final_gap)
        tails.append(tail_gap)
        rows.append([path.name, str(last), f"{100 * base[last]:.2f}", f"{100 * lossy[last]:.2f}",
                     f"{final_gap:+.2f}", f"{tail_gap:+.2f}"])
    rows.append(["mean over seeds", "", "", "", f"{statistics.mean(finals):+.2f}", f"{statistics.mean(tails):+.2f}"])
    body = (
        "Each run's machine and command are in its own file beside this one.\n\n"
        + table(["records", "last round", "float32 (%)", f"{args.encoding} (%)", "gap at last round (points)",
                 "gap, mean of last 3 rounds (points)"], rows)
    )
    print(body)
    write(args.name, f"float32 against {args.encoding} over {len(args.records)} seeds", body)


if __name__ == "__main__":
    main()
