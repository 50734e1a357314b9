"""Generate ``benchmarks/RESULTS.md`` and its plots from the experiments' JSONL files.

Nothing in RESULTS.md is typed in: every number comes from ``results/experiments/*.jsonl`` (rows of
configuration x seed x round written by ``experiments.py``), every table names the commands,
commits and machines of its rows, and the centralized baseline is a measured run like the others.
Accuracy is reported at the final round and as the mean of the last 5 rounds, never the best round,
as mean and standard deviation over the seeds.

    python benchmarks/results_report.py
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from grids import GRIDS, PARTITIONS, Grid, expand, label
from report import REPO, RESULTS, table

EXPERIMENTS = RESULTS / "experiments"
PLOTS = RESULTS / "plots"
TARGET = REPO / "benchmarks" / "RESULTS.md"
TAIL = 5
HEADLINE_GAP = 2.0  # points: IID at K = 5 against centralized
STRATEGY_GAIN = 5.0  # points: the best strategy against FedAvg at alpha 0.1 (or within 5 of centralized)
HOLD_GAP = 5.0  # points: a rule holds against an attack when its final accuracy stays this close to its clean run's


def load(grid: Grid) -> list[dict]:
    path = EXPERIMENTS / f"{grid.name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Series:
    """One configuration on one backend: its rounds per seed."""

    def __init__(self, rows: list[dict]) -> None:
        self.by_seed: dict[int, list[dict]] = defaultdict(list)
        for row in rows:
            self.by_seed[row["seed"]].append(row)
        for seed_rows in self.by_seed.values():
            seed_rows.sort(key=lambda r: r["round"])
        self.rounds = min(len(r) for r in self.by_seed.values())

    @property
    def seeds(self) -> list[int]:
        return sorted(self.by_seed)

    def final(self) -> list[float]:
        return [100 * rows[self.rounds - 1]["test_accuracy"] for rows in self.by_seed.values()]

    def tail(self) -> list[float]:
        start = max(0, self.rounds - TAIL)
        return [100 * statistics.fmean(r["test_accuracy"] for r in rows[start:self.rounds])
                for rows in self.by_seed.values()]

    def curve(self) -> list[float]:
        return [100 * statistics.fmean(rows[i]["test_accuracy"] for rows in self.by_seed.values())
                for i in range(self.rounds)]

    def rounds_to(self, accuracy: float) -> str:
        reached = []
        for rows in self.by_seed.values():
            hit = next((r["round"] for r in rows[: self.rounds] if r["test_accuracy"] >= accuracy), None)
            reached.append(hit)
        if any(hit is None for hit in reached):
            got = sum(hit is not None for hit in reached)
            return f"not reached ({got} of {len(reached)} seeds did)" if got else "not reached"
        return f"{statistics.fmean(reached):.1f}" + (f" ± {statistics.stdev(reached):.1f}" if len(reached) > 1 else "")


def validation(s: "Series") -> float:
    """Mean over seeds of the last rounds' accuracy on the devices' held-out splits (never the test split)."""
    scores = []
    for rows in s.by_seed.values():
        held_out = [r["federated_accuracy"] for r in rows[max(0, s.rounds - TAIL):s.rounds]
                    if r.get("federated_accuracy") is not None]
        if held_out:
            scores.append(statistics.fmean(held_out))
    return 100 * statistics.fmean(scores) if scores else float("nan")


def choose_central(series: dict[str, "Series"]) -> str | None:
    """The centralized learning rate with the best held-out accuracy: the baseline."""
    candidates = [k for k in series if k.startswith("centralized")]
    return max(candidates, key=lambda k: validation(series[k])) if candidates else None


def central_lines(series: dict[str, "Series"], chosen: str | None) -> list[str]:
    if chosen is None:
        return []
    rows = [[k + (" (chosen)" if k == chosen else ""), str(len(series[k].seeds)), f"{validation(series[k]):.2f}",
             spread(series[k].final()), spread(series[k].tail())]
            for k in sorted((k for k in series if k.startswith("centralized")), key=lambda k: -validation(series[k]))]
    return ["The centralized baseline at each candidate learning rate; the one with the best accuracy on "
            "the held-out split (the last rounds' mean) is the baseline:", "",
            table(["configuration", "seeds", f"held-out, last {TAIL} (%)", "test, final round (%)",
                   f"test, last {TAIL} (%)"], rows), ""]


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def series_of(rows: list[dict], backend: str = "sim") -> dict[str, Series]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["backend"] == backend:
            grouped[row["config"]].append(row)
    return {name: Series(r) for name, r in grouped.items()}


def provenance(rows: list[dict]) -> str:
    seen: dict[tuple, set] = defaultdict(set)
    for row in rows:
        seen[(row["command"], row["commit"], row["machine"])].add(row["config"])
    lines = []
    for (cmd, sha, host), configs in sorted(seen.items()):
        lines.append(f"- `{cmd}` at commit {sha} on {host} ({len(configs)} configuration(s))")
    return "\n".join(lines)


def plot(grid: Grid, series: dict[str, Series], order: list[str], name: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for key in order:
        if key is None or key not in series:
            continue
        s = series[key]
        style = {"color": "black", "linestyle": "--", "linewidth": 2} if key.startswith("centralized") else {}
        plural = "s" if len(s.seeds) > 1 else ""
        ax.plot(range(1, s.rounds + 1), s.curve(), label=f"{key} ({len(s.seeds)} seed{plural})", **style)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def prototype_section(grid: Grid, rows: list[dict]) -> tuple[str, dict]:
    series = series_of(rows)
    central_key = choose_central(series)
    central = series.get(central_key) if central_key else None
    base = grid.base
    lines = [f"## {grid.title}", "",
             f"{base['arch']} on {base['dataset']}, {base['rounds']} rounds of {base['local_epochs']} local epoch(s), "
             f"batch {base['batch_size']}, lr {base['lr']}, momentum {base['momentum']}, "
             f"uploads {base['upload_encoding']} "
             "with error feedback, FedAvg, every client in every round. Test accuracy (%) of the global model: "
             f"final round / mean of the last {TAIL} rounds (mean ± sd over seeds where there are several).", ""]
    headline = {}
    if central:
        lines.append(f"Centralized ({central_key}; same model, data and "
                     f"{base['rounds'] * base['local_epochs']} epochs, "
                     f"same training code, {len(central.seeds)} seeds): final {spread(central.final())}, "
                     f"last {TAIL} {spread(central.tail())}.")
        lines.append("")
        lines += central_lines(series, central_key)
    headers = ["clients", *[p + (f" α={a:g}" if a is not None else "") for p, a in PARTITIONS]]
    body = []
    for clients in (2, 3, 5, 10):
        cells = [f"K = {clients}"]
        for partition, alpha in PARTITIONS:
            key = label({**base, "clients": clients, "partition": partition, "alpha": alpha, "centralized": False})
            s = series.get(key)
            if s is None:
                cells.append("–")
                continue
            cell = f"{spread(s.final())} / {spread(s.tail())}"
            if central:
                cell += f" ({mean(s.tail()) - mean(central.tail()):+.1f})"
            cells.append(cell)
        body.append(cells)
    lines += [table(headers, body), "",
              "In brackets: points against centralized, on the mean of the last rounds.", ""]
    iid5 = series.get(label({**base, "clients": 5, "partition": "iid", "alpha": None, "centralized": False}))
    if iid5 and central:
        gap = mean(iid5.tail()) - mean(central.tail())
        final_gap = mean(iid5.final()) - mean(central.final())
        verdict = "met" if abs(gap) <= HEADLINE_GAP and abs(final_gap) <= HEADLINE_GAP else "not met"
        headline = {"grid": grid.name, "iid5": iid5, "central": central, "gap": gap, "final_gap": final_gap,
                    "verdict": verdict}
        lines += [f"**IID at K = 5 against centralized** ({len(iid5.seeds)} and {len(central.seeds)} seeds): "
                  f"{final_gap:+.2f} points at the final round, {gap:+.2f} on the mean of the last {TAIL}; "
                  f"target within {HEADLINE_GAP:g} points: **{verdict}**.", ""]
    order = [central_key, *[label({**base, "clients": k, "partition": p, "alpha": a, "centralized": False})
                            for k in (2, 3, 5, 10) for p, a in PARTITIONS]]
    for clients in (5, 10):
        keys = [central_key, *[label({**base, "clients": clients, "partition": p, "alpha": a, "centralized": False})
                               for p, a in PARTITIONS]]
        path = plot(grid, series, keys, f"{grid.name}-K{clients}", f"{grid.title}: K = {clients}")
        lines += [f"![accuracy per round, K = {clients}](results/plots/{path.name})", ""]
    lines += cross_check_section(grid, rows, order)
    lines += ["Made by:", "", provenance(rows), ""]
    return "\n".join(lines), headline


def strategies_section(grid: Grid, rows: list[dict]) -> tuple[str, dict]:
    series = series_of(rows)
    central_key = choose_central(series)
    central = series.get(central_key) if central_key else None
    base = grid.base
    target = grid.target_accuracy
    lines = [f"## {grid.title}", "",
             f"{base['arch']} on {base['dataset']} ({base['train_examples']} training examples), K = {base['clients']} "
             f"clients holding Dirichlet α = {base['alpha']} label-skewed shares, {base['rounds']} rounds of "
             f"{base['local_epochs']} local epoch(s), lr {base['lr']}, uploads {base['upload_encoding']}; "
             "each strategy "
             "with the defaults of the paper that introduced it (no tuning on the test split).", ""]
    body, fedavg_key = [], None
    order = [central_key]
    for config, _ in expand(grid):
        key = label(config)
        if config["centralized"]:
            if key != central_key:
                continue
        else:
            order.append(key)
        s = series.get(key)
        if s is None:
            continue
        if config["strategy"] == "fedavg" and not config["centralized"]:
            fedavg_key = key
        body.append([key, str(len(s.seeds)), spread(s.final()), spread(s.tail()), s.rounds_to(target) if target else "",
                     f"{mean(s.tail()) - mean(central.tail()):+.1f}" if central and key != central_key else ""])
    lines += [table(["configuration", "seeds", "final round (%)", f"mean of last {TAIL} (%)",
                     f"rounds to {100 * target:.0f} %" if target else "", "vs centralized (points)"], body), ""]
    headline = {}
    if fedavg_key and fedavg_key in series:
        fedavg = series[fedavg_key]
        others = {k: s for k, s in series.items() if not k.startswith("centralized") and k != fedavg_key}
        if others:
            best_key = max(others, key=lambda k: mean(others[k].tail()))
            gain = mean(others[best_key].tail()) - mean(fedavg.tail())
            to_central = mean(others[best_key].tail()) - mean(central.tail()) if central else None
            met = gain >= STRATEGY_GAIN or (to_central is not None and to_central >= -STRATEGY_GAIN)
            headline = {"best": best_key, "gain": gain, "to_central": to_central,
                        "verdict": "met" if met else "not met", "fedavg": fedavg, "best_series": others[best_key],
                        "central": central}
            against = f", {to_central:+.2f} against centralized" if to_central is not None else ""
            lines += [f"**Best strategy against FedAvg** (mean of the last {TAIL} rounds): {best_key}, "
                      f"{gain:+.2f} points over FedAvg" + against
                      + f"; target {STRATEGY_GAIN:g} points above FedAvg or within {STRATEGY_GAIN:g} of centralized: "
                      f"**{headline['verdict']}**.", ""]
    lines += central_lines(series, central_key)
    path = plot(grid, series, order, grid.name, grid.title)
    lines += [f"![accuracy per round per strategy](results/plots/{path.name})", ""]
    lines += cross_check_section(grid, rows, order)
    lines += ["Made by:", "", provenance(rows), ""]
    return "\n".join(lines), headline


def strategy_name(config: dict) -> str:
    """A strategy as a run names it, with the configuration the grid gives it."""
    params = ",".join(f"{k}={v:g}" for k, v in sorted(config["strategy_config"].items()))
    return config["strategy"] + (f"[{params}]" if params else "")


def poisoning_section(grid: Grid, rows: list[dict]) -> tuple[str, dict]:
    import attacks

    series = series_of(rows)
    base = grid.base
    configs = [config for config, _ in expand(grid)]
    strategies = list(dict.fromkeys(strategy_name(c) for c in configs))
    names = list(dict.fromkeys(c["attack"] for c in configs))
    cell: dict[tuple[str | None, str], Series] = {}
    for config in configs:
        if label(config) in series:
            cell[(config["attack"], strategy_name(config))] = series[label(config)]
    lines = [f"## {grid.title}", "",
             f"{base['arch']} on {base['dataset']} ({base['train_examples']} training examples), K = {base['clients']} "
             f"IID clients, every client in every round, {base['rounds']} rounds of {base['local_epochs']} local "
             f"epoch(s), lr {base['lr']}, uploads {base['upload_encoding']} with error feedback. In the attacked runs "
             f"the first {base['attackers']} clients attack in every round (`benchmarks/attacks.py`): sign_flip sends "
             f"the negated delta; scale1000 the delta times {attacks.SCALE:g}; gaussian noise with "
             f"{attacks.GAUSSIAN_FACTOR:g} times the honest delta's norm in its place; label_flip trains on labels "
             f"y → {attacks.NUM_CLASSES - 1} − y; max_weight sends the negated delta and claims "
             f"{attacks.MAX_NUM_EXAMPLES:,} examples, the most the server lets a device register and claim. "
             "Median, trimmed mean and Multi-Krum are unweighted; FedAvg, clipped or not, weighs each update "
             "by the examples it claims.", "",
             "Test accuracy (%) of the global model, mean ± sd over seeds; in brackets, points against the same "
             f"strategy's clean run. A rule holds against an attack when it stays within {HOLD_GAP:g} points of "
             f"its clean run both at the final round and on the mean of the last {TAIL} rounds.", ""]
    seeds = sorted({seed for s in cell.values() for seed in s.seeds})
    final, held_final = _attack_table(names, strategies, cell, Series.final)
    tail, held_tail = _attack_table(names, strategies, cell, Series.tail)
    held = {strategy: [a for a in held_final[strategy] if a in held_tail[strategy]] for strategy in strategies}
    lines += [f"Final round (round {base['rounds']}), seeds {', '.join(map(str, seeds))}:", "", final, "",
              f"Mean of the last {TAIL} rounds:", "", tail, ""]
    for strategy in strategies:
        got = held[strategy]
        lines.append(f"- {strategy} holds against {', '.join(got) if got else 'none of the attacks'}.")
    lines += ["", "Made by:", "", provenance(rows), ""]
    attacked = [a for a in names if a is not None]
    headline = {"held": held, "attacks": attacked}
    return "\n".join(lines), headline


def _attack_table(names: list[str | None], strategies: list[str], cell: dict, pick) -> tuple[str, dict[str, list]]:
    """Attacks x strategies of ``pick(series)`` (per-seed accuracies), and the attacks each strategy
    stays within HOLD_GAP points of its clean run against."""
    body, held = [], {s: [] for s in strategies}
    for attack in names:
        cells = [attack or "none (clean)"]
        for strategy in strategies:
            s, clean = cell.get((attack, strategy)), cell.get((None, strategy))
            if s is None:
                cells.append("–")
                continue
            text = spread(pick(s))
            if attack is not None and clean is not None:
                gap = mean(pick(s)) - mean(pick(clean))
                text += f" ({gap:+.1f})"
                if gap >= -HOLD_GAP:
                    held[strategy].append(attack)
            cells.append(text)
        body.append(cells)
    return table(["attack", *strategies], body), held


def cross_check_section(grid: Grid, rows: list[dict], order: list[str]) -> list[str]:
    real = series_of(rows, "real")
    sim = series_of(rows)
    if not real:
        return [f"Cross-check on real processes: not run yet (`python benchmarks/experiments.py run {grid.name} "
                "--backend real --cross-check`).", ""]
    body = []
    for key, r in real.items():
        s = sim.get(key)
        same_seeds = [seed for seed in r.seeds if s and seed in s.by_seed]
        rounds = min(r.rounds, s.rounds) if s else r.rounds
        max_diff = None
        if s and same_seeds:
            max_diff = max(abs(r.by_seed[seed][i]["test_accuracy"] - s.by_seed[seed][i]["test_accuracy"]) * 100
                           for seed in same_seeds for i in range(rounds))
        real_at = [100 * r.by_seed[seed][rounds - 1]["test_accuracy"] for seed in r.seeds]
        sim_at = [100 * s.by_seed[seed][rounds - 1]["test_accuracy"] for seed in same_seeds] if s else []
        body.append([key, ",".join(map(str, r.seeds)), str(rounds), spread(real_at), spread(sim_at) if sim_at else "–",
                     f"{max_diff:.2f}" if max_diff is not None else "–"])
    note = ("" if not grid.base.get("test_examples") else
            " Here the two paths score on different 2,000-example samples of the test split (the simulation draws "
            "its own seeded sample, the server's evaluation takes its FEDPLATFORM_EVAL_LIMIT sample), so their "
            "accuracies differ by the sampling; the CIFAR-10 grid scores on the whole test split on both paths.")
    return ["Cross-check: the same configuration and seeds through a real server, engine and worker processes "
            "(HTTP on loopback, float32 downloads as in the simulation) against the one-process simulation." + note, "",
            table(["configuration", "seeds", "rounds", "real: last round (%)", "simulation, same seeds and round (%)",
                   "largest difference in any round (points)"], body),
            "", "Round 1 trains identically on both paths; from round 2 the models differ by float32 rounding, "
            "because the server folds updates in the order they arrive and the simulation in client order.", ""]


def render() -> str:
    sections, headlines = [], {}
    for grid in GRIDS.values():
        rows = load(grid)
        if not rows:
            sections.append(f"## {grid.title}\n\nNot run yet: `python benchmarks/experiments.py run {grid.name}`.\n")
            continue
        section = (strategies_section if grid.name.startswith("strategies") else
                   poisoning_section if grid.name.startswith("poisoning") else prototype_section)
        text, headline = section(grid, rows)
        sections.append(text)
        headlines[grid.name] = headline
    summary = ["| what | measured | target | verdict |", "|---|---|---|---|"]
    for name, h in headlines.items():
        if "iid5" in h:
            summary.append(f"| {GRIDS[name].title}: IID K = 5 vs centralized | {h['final_gap']:+.2f} final, "
                           f"{h['gap']:+.2f} last {TAIL} (points) | within {HEADLINE_GAP:g} | {h['verdict']} |")
        if "best" in h:
            extra = f", {h['to_central']:+.2f} vs centralized" if h["to_central"] is not None else ""
            summary.append(f"| {GRIDS[name].title}: best strategy ({h['best']}) vs FedAvg | "
                           f"{h['gain']:+.2f}{extra} (points) | ≥ {STRATEGY_GAIN:g} above FedAvg, "
                           f"or within {STRATEGY_GAIN:g} of centralized | {h['verdict']} |")
        if "held" in h:
            held = "; ".join(f"{strategy} {len(got)} of {len(h['attacks'])}" for strategy, got in h["held"].items())
            summary.append(f"| {GRIDS[name].title}: attacks each rule holds against | {held} | none set (holding: "
                           f"within {HOLD_GAP:g} points of its clean run, final and last {TAIL}) | – |")
    head = ("# Results\n\nGenerated by `python benchmarks/results_report.py` from "
            "`benchmarks/results/experiments/*.jsonl`, which `python benchmarks/experiments.py run GRID` writes (one "
            "row per configuration, seed and round, with the command, commit and machine). Protocol: fixed seeds; "
            "each device's held-out split is disjoint from its training data and the test split is never used to "
            "choose anything; the global model is scored on the test "
            "split after every round; tables give the final round and the mean of the last 5 rounds, never the best "
            "round, as mean ± sd over seeds; the centralized baseline is the same model, data and total epochs trained "
            "by the same code (one client holding all the data, float32).\n\n")
    return head + "\n".join(summary) + "\n\n" + "\n".join(sections)


def main() -> int:
    text = render()
    TARGET.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
