"""A real (tiny) accuracy benchmark run leaves its table and, beside it, the records that rebuild it."""
import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy_cost.py"
TINY = ["--task", "fashion-mnist", "--encodings", "float32,int4", "--rounds", "2", "--clients", "2",
        "--examples-per-client", "64", "--test-examples", "200", "--batch-size", "16", "--seed", "3"]


def _table(markdown: str) -> str:
    return markdown[markdown.index("cnn on fashion-mnist"):].strip()


def test_a_run_writes_its_rounds_beside_its_table_and_they_rebuild_it(tmp_path):
    subprocess.run([sys.executable, str(BENCHMARK), *TINY, "--jobs", "2", "--out-dir", str(tmp_path),
                    "--name", "tiny_seed3"], check=True, capture_output=True, timeout=300)
    records = [json.loads(line) for line in (tmp_path / "tiny_seed3.rounds.jsonl").read_text().splitlines()]
    assert [(r["encoding"], r["round"]) for r in records] == [
        ("float32", 1), ("float32", 2), ("int4", 1), ("int4", 2)]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in records)
    int4_up = [r["bytes_up"] for r in records if r["encoding"] == "int4"]
    float32_up = [r["bytes_up"] for r in records if r["encoding"] == "float32"]
    assert int4_up[-1] * 5 < float32_up[-1]  # the wire really differed

    rebuilt = subprocess.run([sys.executable, str(BENCHMARK), *TINY, "--from-jsonl",
                              str(tmp_path / "tiny_seed3.rounds.jsonl")],
                             check=True, capture_output=True, text=True, timeout=120).stdout
    assert _table(rebuilt) == _table((tmp_path / "tiny_seed3.md").read_text())
