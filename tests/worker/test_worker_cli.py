"""worker.cli: argument parsing."""
from __future__ import annotations

import os
import socket

import pytest

from worker.cli import build_parser, parse_args


def test_only_the_server_is_required_and_the_defaults_are_as_documented():
    config = parse_args(["--server", "http://localhost:8000"])
    assert config.server == "http://localhost:8000"
    assert config.name == f"{socket.gethostname()}-{os.getpid()}"
    assert config.run is None and config.dataset is None and config.data is None
    assert config.partition == "iid"
    assert (config.num_partitions, config.partition_index, config.seed) == (1, 0, 0)
    assert config.limit is None
    assert config.eval_fraction == 0.1
    assert config.device == "auto"
    assert config.download is False and config.quiet is False
    assert 60 <= config.max_retry_seconds <= 600


def test_every_option_reaches_the_config():
    config = parse_args([
        "--server", "http://s", "--name", "w1", "--run", "4", "--dataset", "cifar10",
        "--data", "/tmp/d", "--download", "--partition", "dirichlet", "--alpha", "0.3",
        "--shards-per-client", "3", "--num-partitions", "5", "--partition-index", "4",
        "--seed", "9", "--limit", "100", "--eval-fraction", "0.2", "--device", "cpu",
        "--threads", "2", "--enrollment-key", "k", "--quiet", "--max-retry-seconds", "30",
    ])
    assert (config.name, config.run, config.dataset, str(config.data)) == ("w1", 4, "cifar10", "/tmp/d")
    assert (config.partition, config.alpha, config.shards_per_client) == ("dirichlet", 0.3, 3)
    assert (config.num_partitions, config.partition_index, config.seed) == (5, 4, 9)
    assert (config.limit, config.eval_fraction, config.device, config.threads) == (100, 0.2, "cpu", 2)
    assert (config.enrollment_key, config.quiet, config.max_retry_seconds) == ("k", True, 30.0)


@pytest.mark.parametrize("argv", [
    [],  # no --server
    ["--server", "http://s", "--num-partitions", "2", "--partition-index", "2"],
    ["--server", "http://s", "--eval-fraction", "1.0"],
    ["--server", "http://s", "--limit", "0"],
    ["--server", "http://s", "--dataset", "imagenet"],
])
def test_bad_arguments_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        parse_args(argv)
    assert caught.value.code == 2
    assert "error" in capsys.readouterr().err


def test_the_help_epilog_documents_the_exit_codes():
    text = build_parser().format_help()
    for code in ("0", "1", "2", "3", "4", "5"):
        assert f"\n  {code}  " in text
    assert "kicked" in text
