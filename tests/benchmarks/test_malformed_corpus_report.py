"""The corpus benchmark's own HTTP: targets encoded as a client would, chunked answers read whole."""
import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
# Loaded under its own name: "malformed_corpus" is the corpus generator the server tests import.
_spec = importlib.util.spec_from_file_location("malformed_corpus_benchmark", BENCHMARKS / "malformed_corpus.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
dechunk, shaped, wire_target = bench.dechunk, bench.shaped, bench.wire_target


def test_a_target_keeps_its_escapes_and_encodes_what_may_not_travel_raw():
    assert wire_target("/api/v1/runs/%FF/model/?version=²") == "/api/v1/runs/%FF/model/?version=%C2%B2"
    assert wire_target("/x/?wait= 1") == "/x/?wait=%201"
    assert wire_target("/api/v1/clients/null,null/{id}/") == "/api/v1/clients/null,null/{id}/"


def test_a_chunked_answer_is_read_as_its_content():
    assert dechunk(b'4\r\n{"a"\r\n3\r\n: 1\r\n1;ext=1\r\n}\r\n0\r\n\r\n') == b'{"a": 1}'
    assert shaped(dechunk(b'2e\r\n{"code":"not_found","detail":"no such client"}\r\n0\r\n\r\n')) == "not_found"
    assert shaped(b"") is None and shaped(b'{"code": 1, "detail": "x"}') is None
