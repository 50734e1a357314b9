"""The statistics behind the codec's accuracy claims: the t interval and the margin verdict."""
import json
import math

import pytest
from seed_summary import mean_interval, runs_by_seed, seed_gaps, summarize, t_quantile, verdict


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706), (2, 4.303), (5, 2.571), (11, 2.201), (30, 2.042)])
def test_t_quantile_matches_the_published_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_t_quantile_approaches_the_normal_quantile():
    assert t_quantile(0.975, 10_000) == pytest.approx(1.960, abs=1e-3)
    assert t_quantile(0.5, 4) == pytest.approx(0.0, abs=1e-9)


def test_mean_interval_is_mean_plus_minus_t_times_standard_error():
    mean, low, high = mean_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182 * math.sqrt(5 / 3) / 2
    assert mean == 2.5
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half), abs=1e-3)
    assert mean_interval([0.3]) == (0.3, -math.inf, math.inf)


def test_verdict_needs_the_whole_interval_on_one_side_of_the_margin():
    assert verdict(-0.4, 0.8, 0.5) == "within 0.5 points"
    assert verdict(-0.6, 0.8, 0.5) == "not resolved"
    assert verdict(-2.0, -0.7, 0.5) == "costs more than 0.5 points"
    assert verdict(-0.9, 0.2, 1.0) == "within 1 point"


def test_seed_gaps_pairs_rounds_both_encodings_reached():
    lines = [{"encoding": "float32", "round": r, "accuracy": a} for r, a in [(1, 0.5), (2, 0.6), (3, 0.7), (4, 0.8)]]
    lines += [{"encoding": "int4", "round": r, "accuracy": a} for r, a in [(1, 0.5), (2, 0.58), (3, 0.71)]]
    last, base, lossy, final_gap, tail_gap = seed_gaps(lines, "int4")
    assert (last, base, lossy) == (3, pytest.approx(70.0), pytest.approx(71.0))
    assert final_gap == pytest.approx(1.0)
    assert tail_gap == pytest.approx(100 * ((0.5 + 0.58 + 0.71) - (0.5 + 0.6 + 0.7)) / 3)


def test_summary_counts_for_each_encoding_only_the_seeds_that_ran_it():
    both = [{"encoding": e, "round": 1, "accuracy": a, "update_bytes": b}
            for e, a, b in [("float32", 0.6, 100.0), ("int4", 0.59, 10.0), ("topk3-int8", 0.55, 2.0)]]
    no_topk = [r for r in both if r["encoding"] != "topk3-int8"]
    text = summarize({"seed0": both, "seed1": no_topk}, ["int4", "topk3-int8"], margin=0.5, raw_bytes=400)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0].split(" | ")[2:4] == ["2", "-1.00"]  # int4: two seeds, both -1 point
    assert rows[2].split(" | ")[2:4] == ["1", "-5.00"]  # topk3-int8: one seed
    assert "40.0x smaller than raw float32" in text  # int4: 400 / 10 bytes


def test_summary_compares_download_bytes_for_delta_download_runs():
    records = [{"encoding": e, "round": 1, "accuracy": 0.6, "update_bytes": 10.0, "bytes_down": d}
               for e, d in [("float32", 900.0), ("int4:down=int8", 300.0)]]
    text = summarize({"seed0": records}, ["int4:down=int8"], margin=0.5, raw_bytes=400)
    assert "downloads 3.0x smaller than `float32`'s" in text


def test_a_download_encoding_is_compared_with_the_same_uploads_and_float32_downloads():
    records = [{"encoding": e, "round": 1, "accuracy": a, "update_bytes": 10.0, "bytes_down": d}
               for e, a, d in [("float32", 0.70, 900.0), ("int4", 0.60, 900.0), ("int4:down=int4", 0.59, 100.0)]]
    text = summarize({"seed0": records}, ["int4:down=int4"], margin=0.5, raw_bytes=400, baseline="int4")
    row = next(line for line in text.splitlines() if line.startswith("| `int4:down=int4` | last round"))
    assert row.split(" | ")[3] == "-1.00"  # against int4 (0.60), not float32 (0.70)
    assert "downloads 9.0x smaller than `int4`'s" in text


def write_records(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_runs_pair_across_files_by_the_seed_in_their_names(tmp_path):
    base = [{"encoding": "float32", "round": 1, "accuracy": 0.6}]
    later = [{"encoding": "topk10-ternary", "round": 1, "accuracy": 0.58}]
    runs = runs_by_seed([write_records(tmp_path / "a_seed3.rounds.jsonl", base),
                         write_records(tmp_path / "b_seed3.rounds.jsonl", later + base),
                         write_records(tmp_path / "a_seed12.rounds.jsonl", base)])
    assert list(runs) == ["seed 3", "seed 12"]  # in seed order
    assert sorted(r["encoding"] for r in runs["seed 3"]) == ["float32", "topk10-ternary"]
    assert seed_gaps(runs["seed 3"], "topk10-ternary")[3] == pytest.approx(-2.0)


def test_files_of_one_seed_that_disagree_are_refused(tmp_path):
    write_records(tmp_path / "a_seed3.rounds.jsonl", [{"encoding": "float32", "round": 1, "accuracy": 0.6}])
    write_records(tmp_path / "b_seed3.rounds.jsonl", [{"encoding": "float32", "round": 1, "accuracy": 0.61}])
    with pytest.raises(ValueError, match="differs"):
        runs_by_seed(sorted(tmp_path.iterdir()))
