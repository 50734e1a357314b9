"""Float32 against lossy encodings over several seeds, from accuracy_cost's per-round records.

    python benchmarks/seed_summary.py --encodings int4,topk3-int8 --margin 0.5 \
        --name accuracy_cost_cifar10_cnn_seeds benchmarks/results/cifar10_cnn/*.rounds.jsonl

One run per seed and encoding is noisy: the float32 run itself moves by points from one round to
the next, and two runs that differ in the last bit of one update drift apart. So the gap (lossy
minus float32, same seed, same data split, same client order) is taken per seed, at the last round
both reached and as the mean of the last three rounds, and summarised over the seeds by its mean
and a 95 % confidence interval (Student's t over the per-seed gaps). An encoding is shown to cost
less than ``--margin`` points when the whole interval lies above ``-margin``: a non-inferiority
test at the one-sided 2.5 % level.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

from accuracy_cost import TASKS, raw_float32_bytes
from report import mb, table, write


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile for 0.5 <= p < 1, by bisection on a Simpson-integrated density."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError("need 0.5 <= p < 1 and df >= 1")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    def cdf(x: float, steps: int = 2000) -> float:
        h = x / steps
        inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
        return 0.5 + h / 3 * (density(0.0) + inner + density(x))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def mean_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided t interval of the mean; (mean, -inf, inf) for one value."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, -math.inf, math.inf
    half = t_quantile(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


# An experiment's rows (``fold_seed_runs.py``, ``experiments.py``) name what accuracy_cost's records call
# encoding, accuracy and loss by the experiments' names.
_FROM_EXPERIMENT = {"config": "encoding", "test_accuracy": "accuracy", "test_loss": "loss"}


def _records(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{_FROM_EXPERIMENT.get(k, k): v for k, v in row.items()} for row in rows]


def runs_by_seed(paths: list[Path]) -> dict[str, list[dict]]:
    """Records grouped by the seed in each file's name (``..._seed7.rounds.jsonl`` -> "seed 7"), so
    a later run of a new encoding pairs with the float32 run of the same seed in another file.
    A file without a seed in its name stands alone. The same (encoding, round) found twice must be
    the same record: the runs are deterministic, and a mismatch means the files do not pair."""
    runs: dict[str, dict[tuple[str, int], dict]] = {}
    for path in paths:
        found = re.search(r"seed(\d+)", path.name)
        for record in _records(path):
            # An experiment's rows carry their seed; accuracy_cost's files name it.
            named = f"seed {int(found.group(1))}" if found else path.name
            key = f"seed {record['seed']}" if "seed" in record else named
            merged = runs.setdefault(key, {})
            slot = (record["encoding"], record["round"])
            if slot in merged and merged[slot]["accuracy"] != record["accuracy"]:
                raise ValueError(f"{path.name}: {slot[0]} round {slot[1]} differs from another file of {key}")
            merged.setdefault(slot, record)

    def order(key: str) -> tuple[int, int, str]:
        return (0, int(key.split()[1]), "") if key.startswith("seed ") else (1, 0, key)

    return {key: list(runs[key].values()) for key in sorted(runs, key=order)}


def _by_round(records: list[dict], encoding: str, field: str = "accuracy") -> dict[int, float]:
    return {r["round"]: r[field] for r in records if r["encoding"] == encoding and field in r}


def seed_gaps(records: list[dict], encoding: str, baseline: str = "float32") -> tuple[int, float, float, float, float]:
    """(last round, baseline accuracy, lossy accuracy, gap there, gap on the mean of the last 3), in points."""
    base, lossy = _by_round(records, baseline), _by_round(records, encoding)
    common = set(base) & set(lossy)
    if not common:
        raise ValueError(f"no round holds both {baseline} and {encoding}")
    last = max(common)
    tail = [n for n in (last - 2, last - 1, last) if n in common]
    final_gap = 100 * (lossy[last] - base[last])
    tail_gap = 100 * (statistics.mean(lossy[n] for n in tail) - statistics.mean(base[n] for n in tail))
    return last, 100 * base[last], 100 * lossy[last], final_gap, tail_gap


def verdict(low: float, high: float, margin: float) -> str:
    points = f"{margin:g} point{'' if margin == 1 else 's'}"
    if low > -margin:
        return f"within {points}"
    if high < -margin:
        return f"costs more than {points}"
    return "not resolved"


def summarize(runs: dict[str, list[dict]], encodings: list[str], margin: float, raw_bytes: int,
              baseline: str = "float32") -> str:
    """Markdown: per-seed gaps for each encoding against the baseline (float32 on the wire, or
    e.g. ``int4`` for int4 uploads with float32 downloads), then the mean and 95 % interval over seeds."""
    sections, overview = [], []
    for encoding in encodings:
        rows, finals, tails, sizes, down_ratios = [], [], [], [], []
        for name, records in runs.items():
            if not any(r["encoding"] == encoding for r in records):
                continue  # a seed run without this encoding: the encoding counts its own seeds
            last, base, lossy, final_gap, tail_gap = seed_gaps(records, encoding, baseline)
            finals.append(final_gap)
            tails.append(tail_gap)
            sizes += _by_round(records, encoding, "update_bytes").values()
            base_down = _by_round(records, baseline, "bytes_down")
            lossy_down = _by_round(records, encoding, "bytes_down")
            if ":down=" in encoding:  # cumulative totals: compare them at the last shared round
                down_ratios.append(base_down[last] / lossy_down[last])
            rows.append([name, str(last), f"{base:.2f}", f"{lossy:.2f}", f"{final_gap:+.2f}", f"{tail_gap:+.2f}"])
        for label, gaps in (("last round", finals), ("mean of last 3 rounds", tails)):
            mean, low, high = mean_interval(gaps)
            overview.append([f"`{encoding}`", label, str(len(gaps)), f"{mean:+.2f}",
                             f"[{low:+.2f}, {high:+.2f}]", f"{statistics.stdev(gaps):.2f}" if len(gaps) > 1 else "",
                             verdict(low, high, margin)])
        size = statistics.mean(sizes)
        sections.append(
            f"### `{encoding}`: {mb(size)} per update, {raw_bytes / size:.1f}x smaller than raw float32 "
            f"({mb(raw_bytes)})"
            + (f"; downloads {statistics.mean(down_ratios):.1f}x smaller than `{baseline}`'s" if down_ratios else "")
            + "\n\n"
            + table(["seed", "last round", f"{baseline} (%)", f"{encoding} (%)", "gap at last round (points)",
                     "gap, mean of last 3 rounds (points)"], rows)
        )
    head = table(["encoding", "accuracy taken at", "seeds", "mean gap (points)", "95 % interval",
                  "sd over seeds", f"against a {margin:g}-point margin"], overview)
    return head + "\n\n" + "\n\n".join(sections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", type=Path,
                        help="experiment JSONL files (rows carry their seed) "
                             "or .rounds.jsonl files paired by the seed in their names")
    parser.add_argument("--encodings", default="int4", help="comma-separated, each against the baseline")
    parser.add_argument("--baseline", default="float32",
                        help="what each encoding is compared with, same seed (e.g. int4: float32 downloads)")
    parser.add_argument("--margin", type=float, default=0.5, help="points an encoding may cost")
    parser.add_argument("--task", choices=tuple(TASKS), default="cifar10")
    parser.add_argument("--arch", default="resnet18", help="the runs' model, for the raw float32 size")
    parser.add_argument("--name", default="accuracy_cost_cifar10_seeds")
    args = parser.parse_args()
    raw_bytes = raw_float32_bytes(argparse.Namespace(task=args.task, arch=args.arch))
    runs = runs_by_seed(args.records)
    encodings = [e.strip() for e in args.encodings.split(",") if e.strip()]
    body = (
        "Each run's command, commit and machine are in its rows. The gap is the lossy "
        f"run's test accuracy minus `{args.baseline}`'s, same seed; the interval is Student's t over the seeds.\n\n"
        + summarize(runs, encodings, args.margin, raw_bytes, args.baseline)
    )
    title = (f"float32 against {', '.join(encodings)}" if args.baseline == "float32"
             else f"{', '.join(encodings)} against {args.baseline}")
    write(args.name, f"{title} over {len(runs)} seeds", body)


if __name__ == "__main__":
    main()
