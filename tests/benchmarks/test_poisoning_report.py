"""The poisoning table of RESULTS.md is computed from the grid's rows: final accuracy per attack and
strategy, mean over seeds, beside the same strategy's clean run."""
import results_report
from grids import GRIDS, expand, label

GRID = GRIDS["poisoning-fmnist"]


def _rows(accuracy) -> list[dict]:
    rows = []
    for config, seeds in expand(GRID):
        for seed in seeds:
            for number in range(1, config["rounds"] + 1):
                rows.append({"config": label(config), "params": config, "seed": seed, "round": number,
                             "backend": "sim", "test_accuracy": accuracy(config, seed, number),
                             "command": "python benchmarks/experiments.py run poisoning-fmnist --jobs 1",
                             "commit": "abc1234", "machine": "CPU test (2 logical cores)"})
    return rows


def _accuracy(config, seed, number):
    if number < config["rounds"]:
        return 0.5  # only the final round counts
    if config["attack"] is None:
        return 0.80 + 0.02 * seed  # clean: 81 % on average
    if config["strategy"] == "fedavg" and not config["strategy_config"]:
        return 0.10  # FedAvg falls to 10 %
    return 0.78  # the others lose 3 points


def test_each_cell_is_the_final_rounds_mean_over_seeds_beside_the_clean_run():
    text, headline = results_report.poisoning_section(GRID, _rows(_accuracy))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| attack |"))
    assert header == ("| attack | fedavg | fedavg[clip_norm=1] | median | trimmed_mean[trim_fraction=0.2] | "
                      "krum[byzantine=2] |")
    assert "| none (clean) | 81.00 | 81.00 | 81.00 | 81.00 | 81.00 |" in lines
    assert "| sign_flip | 10.00 (-71.0) | 78.00 (-3.0) | 78.00 (-3.0) | 78.00 (-3.0) | 78.00 (-3.0) |" in lines
    assert "- fedavg holds against none of the attacks." in lines
    assert "- median holds against sign_flip, scale1000, gaussian, label_flip, max_weight." in lines
    assert headline["held"]["fedavg"] == [] and len(headline["held"]["median"]) == 5
    assert "`python benchmarks/experiments.py run poisoning-fmnist --jobs 1` at commit abc1234" in text


def test_a_missing_cell_is_a_dash_and_the_rest_still_reports():
    rows = [r for r in _rows(_accuracy) if "krum" not in r["config"] or r["params"]["attack"] is not None]
    text, _ = results_report.poisoning_section(GRID, rows)
    assert "| none (clean) | 81.00 | 81.00 | 81.00 | 81.00 | – |" in text.splitlines()
    assert "| gaussian | 10.00 (-71.0) | 78.00 (-3.0) | 78.00 (-3.0) | 78.00 (-3.0) | 78.00 |" in text.splitlines()
