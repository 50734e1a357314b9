"""The poisoning table of RESULTS.md is computed from the grid's rows: final accuracy per attack and
strategy, mean over seeds, beside the same strategy's clean run."""
import results_report
from grids import GRIDS, expand, label

GRID = GRIDS["poisoning-fmnist"]
CLEAN = " 81.00 ± 1.41 |"  # a clean run's cell: 80 % and 82 %
LOST = " 78.00 ± 0.00 (-3.0) |"  # an attacked run's cell that lost 3 points


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
    if number <= config["rounds"] - 5:
        return 0.5  # only the final round and the last 5 count
    if config["attack"] is None:
        return 0.80 + 0.02 * seed  # clean: 81 % on average
    if config["strategy"] == "fedavg" and not config["strategy_config"]:
        return 0.10  # FedAvg falls to 10 %
    if config["strategy"] == "median" and config["attack"] == "gaussian" and number < config["rounds"]:
        return 0.30  # fine at the final round only
    return 0.78  # the others lose 3 points


def test_each_cell_is_the_mean_over_seeds_beside_the_clean_run():
    text, headline = results_report.poisoning_section(GRID, _rows(_accuracy))
    lines = text.splitlines()
    header = ("| attack | fedavg | fedavg[clip_norm=1] | median | trimmed_mean[trim_fraction=0.2] | "
              "krum[byzantine=2] |")
    assert lines.count(header) == 2  # the final round, then the mean of the last 5
    assert lines.count("| none (clean) |" + CLEAN * 5) == 2
    assert lines.count("| sign_flip | 10.00 ± 0.00 (-71.0) |" + LOST * 4) == 2
    gaussian = "| gaussian | 10.00 ± 0.00 (-71.0) |" + LOST
    assert gaussian + LOST * 3 in lines  # the final round
    assert gaussian + " 39.60 ± 0.00 (-41.4) |" + LOST * 2 in lines  # the last 5
    assert "- fedavg holds against none of the attacks." in lines
    assert "- median holds against sign_flip, scale1000, label_flip, max_weight." in lines  # not gaussian
    assert "- krum[byzantine=2] holds against sign_flip, scale1000, gaussian, label_flip, max_weight." in lines
    assert headline["held"]["fedavg"] == [] and len(headline["held"]["median"]) == 4
    assert "`python benchmarks/experiments.py run poisoning-fmnist --jobs 1` at commit abc1234" in text


def test_a_missing_cell_is_a_dash_and_the_rest_still_reports():
    rows = [r for r in _rows(_accuracy) if "krum" not in r["config"] or r["params"]["attack"] is not None]
    lines = results_report.poisoning_section(GRID, rows)[0].splitlines()
    assert "| none (clean) |" + CLEAN * 4 + " – |" in lines
    assert "| label_flip | 10.00 ± 0.00 (-71.0) |" + LOST * 3 + " 78.00 ± 0.00 |" in lines
    assert "- krum[byzantine=2] holds against none of the attacks." in lines
