"""Every strategy on literal arrays, against results computed by hand."""
import math

import numpy as np
import pytest
import torch

from fedcore import codec
from fedcore.aggregation import apply_delta, weighted_mean
from fedcore.strategies import STRATEGIES, StrategyConfigError, build_strategy, validate_strategy
from fedcore.strategies.proximal import proximal_term
from fedcore.strategies.rules import krum_select


def f32(*values):
    return np.array(values, dtype=np.float32)


def run(name, base, contributions, state=None, config=None, exempt=()):
    return build_strategy(name, config, exempt=exempt).aggregate(base, contributions, state)


def test_fedavg_adds_the_example_weighted_mean_delta():
    result = run("fedavg", {"w": f32(1, 2)}, [({"w": f32(1, 0)}, 1), ({"w": f32(3, 4)}, 3)])
    np.testing.assert_array_equal(result.model["w"], f32(3.5, 5))
    assert result.state == {}


def test_fedavg_is_bit_for_bit_the_base_plus_the_float32_weighted_mean():
    rng = np.random.default_rng(0)
    base = {"a": rng.normal(size=(7, 5)).astype(np.float32), "n": np.array(3, dtype=np.int64)}
    deltas = [({"a": rng.normal(size=(7, 5)).astype(np.float32) * 1e-3, "n": np.array(k, dtype=np.int64)}, w)
              for k, w in ((1, 10), (2, 33), (5, 7))]
    result = run("fedavg", base, deltas)
    expected = apply_delta(base, weighted_mean(deltas))  # base + the weighted mean, in float32
    for name in base:
        assert result.model[name].tobytes() == expected[name].tobytes()
        assert result.model[name].dtype == base[name].dtype


def test_fedprox_aggregates_like_fedavg_and_tells_clients_mu():
    strategy = build_strategy("fedprox", {"proximal_mu": 0.5})
    assert strategy.client_instructions() == {"proximal_mu": 0.5}
    assert build_strategy("fedavg").client_instructions() == {}
    result = strategy.aggregate({"w": f32(0)}, [({"w": f32(2)}, 1), ({"w": f32(4)}, 1)])
    np.testing.assert_array_equal(result.model["w"], f32(3))


def test_the_proximal_term_adds_mu_times_the_distance_from_the_start_to_every_gradient():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0]]))
    with proximal_term(model, 0.5):
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[3.0, 0.0]]))  # moved by (2, 1) since the term began
        (model.weight.sum() * 0).backward()  # the loss itself has no gradient
        np.testing.assert_allclose(model.weight.grad.numpy(), [[1.0, 0.5]])
    model.weight.grad = None
    (model.weight.sum() * 0).backward()  # outside the block: no term
    np.testing.assert_allclose(model.weight.grad.numpy(), [[0.0, 0.0]])


def test_fedavgm_accumulates_server_momentum_across_rounds():
    strategy = build_strategy("fedavgm", {"server_momentum": 0.9, "server_lr": 1.0})
    first = strategy.aggregate({"w": f32(0)}, [({"w": f32(1)}, 1)])
    assert first.model["w"][0] == pytest.approx(1.0)
    np.testing.assert_allclose(first.state["v:w"], f32(1))
    second = strategy.aggregate(first.model, [({"w": f32(1)}, 1)], first.state)
    np.testing.assert_allclose(second.state["v:w"], f32(1.9), rtol=1e-6)  # 0.9 * 1 + 1
    assert second.model["w"][0] == pytest.approx(2.9, rel=1e-6)


ADAPTIVE = {"server_lr": 1.0, "beta1": 0.9, "tau": 0.1}


@pytest.mark.parametrize(
    "name, v, config",
    [
        # v starts at tau^2 = 0.01; d = 0.5, d^2 = 0.25
        ("fedadam", 0.99 * 0.01 + 0.01 * 0.25, {**ADAPTIVE, "beta2": 0.99}),
        ("fedyogi", 0.01 + 0.01 * 0.25, {**ADAPTIVE, "beta2": 0.99}),  # sign(0.01 - 0.25) = -1
        ("fedadagrad", 0.01 + 0.25, ADAPTIVE),
    ],
)
def test_adaptive_server_optimizers_take_the_papers_step(name, v, config):
    result = run(name, {"w": f32(0)}, [({"w": f32(0.5)}, 2)], config=config)
    m = 0.1 * 0.5
    assert result.state["m:w"][0] == pytest.approx(m, rel=1e-6)
    assert result.state["v:w"][0] == pytest.approx(v, rel=1e-6)
    assert result.model["w"][0] == pytest.approx(m / (math.sqrt(v) + 0.1), rel=1e-5)


def test_yogi_grows_v_slowly_where_adam_would_jump():
    state = {"m:w": f32(0), "v:w": f32(1.0)}  # v larger than d^2: Yogi subtracts, Adam decays
    yogi = run("fedyogi", {"w": f32(0)}, [({"w": f32(0.5)}, 1)], state, {**ADAPTIVE, "beta2": 0.9})
    adam = run("fedadam", {"w": f32(0)}, [({"w": f32(0.5)}, 1)], state, {**ADAPTIVE, "beta2": 0.9})
    assert yogi.state["v:w"][0] == pytest.approx(1.0 - 0.1 * 0.25, rel=1e-6)
    assert adam.state["v:w"][0] == pytest.approx(0.9 * 1.0 + 0.1 * 0.25, rel=1e-6)


def test_statistics_skip_the_server_optimizer():
    base = {"w": f32(0), "bn.running_var": f32(1.0), "bn.num_batches_tracked": np.array(4, np.int64)}
    delta = {"w": f32(0.5), "bn.running_var": f32(0.25), "bn.num_batches_tracked": np.array(2, np.int64)}
    result = run("fedadam", base, [(delta, 1)], config=ADAPTIVE | {"beta2": 0.99},
                 exempt={"bn.running_var", "bn.num_batches_tracked"})
    assert result.model["bn.running_var"][0] == pytest.approx(1.25)
    assert int(result.model["bn.num_batches_tracked"]) == 6
    assert "m:bn.running_var" not in result.state and "m:w" in result.state


def test_median_is_coordinate_wise_and_ignores_claimed_weights():
    deltas = [({"w": f32(1, -5)}, 1), ({"w": f32(2, 0)}, 1), ({"w": f32(100, 1)}, 10**9)]
    result = run("median", {"w": f32(0, 0)}, deltas)
    np.testing.assert_array_equal(result.model["w"], f32(2, 0))


def test_trimmed_mean_drops_the_extremes_of_each_coordinate():
    deltas = [({"w": f32(v, -v)}, 1) for v in (1, 2, 3, 4, 100)]
    result = run("trimmed_mean", {"w": f32(0, 0)}, deltas, config={"trim_fraction": 0.2})
    np.testing.assert_allclose(result.model["w"], f32(3, -3))
    assert result.metrics["trimmed_each_side"] == 1


def test_trimmed_mean_keeps_a_value_when_the_round_is_small():
    result = run("trimmed_mean", {"w": f32(0)}, [({"w": f32(1)}, 1), ({"w": f32(3)}, 1)],
                 config={"trim_fraction": 0.49})
    np.testing.assert_allclose(result.model["w"], f32(2))


def test_multi_krum_keeps_the_central_updates_and_leaves_the_outlier_out():
    deltas = [({"w": f32(v)}, 1) for v in (0.0, 0.1, 0.2, 0.3, 10.0)]
    multi = run("krum", {"w": f32(0)}, deltas, config={"byzantine": 1})
    np.testing.assert_allclose(multi.model["w"], f32(0.15), rtol=1e-6)  # mean of the n - f = 4 closest
    assert multi.metrics == {"krum_selected": 4, "krum_f": 1}
    single = run("krum", {"w": f32(0)}, deltas, config={"byzantine": 1, "keep": 1})
    np.testing.assert_allclose(single.model["w"], f32(0.1))  # scores 0.05, 0.02, 0.02, 0.05: the first best


def test_krum_scores_by_the_n_minus_f_minus_2_nearest():
    # Squared distances of five points on a line at 0, 1, 2, 3, 50.
    points = np.array([0.0, 1.0, 2.0, 3.0, 50.0])
    distances = (points[:, None] - points[None, :]) ** 2
    # f = 1: two nearest neighbours each; scores 1+4, 1+1, 1+1, 1+4, 47^2+48^2
    assert krum_select(distances, 1, 1) == [1]
    assert krum_select(distances, 1, 0) == [0, 1, 2, 3]


def test_krum_lowers_f_when_the_round_is_too_small_for_it():
    result = run("krum", {"w": f32(0)}, [({"w": f32(1)}, 1), ({"w": f32(3)}, 1)], config={"byzantine": 3})
    assert result.metrics["krum_f"] == 0
    np.testing.assert_allclose(result.model["w"], f32(2))


def test_clipping_scales_each_update_to_the_norm_and_composes_with_the_mean():
    deltas = [({"w": f32(3, 4)}, 1), ({"w": f32(0, 0.5)}, 1)]
    result = run("fedavg", {"w": f32(0, 0)}, deltas, config={"clip_norm": 1.0})
    np.testing.assert_allclose(result.model["w"], f32(0.3, 0.65), rtol=1e-6)
    assert result.metrics["clipped_updates"] == 1
    assert result.metrics["update_norm_mean"] == pytest.approx(2.75)


def test_clipping_composes_with_a_robust_rule_and_leaves_statistics_alone():
    deltas = [({"w": f32(30, 40), "s": f32(7)}, 1)] * 3
    result = run("median", {"w": f32(0, 0), "s": f32(0)}, deltas, config={"clip_norm": 5.0}, exempt={"s"})
    np.testing.assert_allclose(result.model["w"], f32(3, 4), rtol=1e-6)
    np.testing.assert_allclose(result.model["s"], f32(7))


def test_lazily_decoded_updates_give_the_same_result_as_decoded_ones():
    rng = np.random.default_rng(1)
    base = {"a": rng.normal(size=(6, 4)).astype(np.float32)}
    blobs = [codec.encode({"a": rng.normal(size=(6, 4)).astype(np.float32)}, encoding="int8", kind="delta",
                          base_version=0) for _ in range(3)]
    for name in ("fedavg", "fedadam", "median"):
        lazy = run(name, base, [(codec.decode_lazily(b, kind="delta"), 5) for b in blobs], config={"clip_norm": 1.0})
        eager = run(name, base, [(codec.decode(b).arrays, 5) for b in blobs], config={"clip_norm": 1.0})
        assert lazy.model["a"].tobytes() == eager.model["a"].tobytes()


def test_state_stored_through_the_codec_replays_the_next_round_bit_for_bit():
    strategy = build_strategy("fedyogi")
    rng = np.random.default_rng(2)
    base = {"a": rng.normal(size=(3, 3)).astype(np.float32)}
    first = strategy.aggregate(base, [({"a": rng.normal(size=(3, 3)).astype(np.float32)}, 1)])
    stored = codec.decode(codec.encode(first.state, encoding="float32", kind="full")).arrays
    delta = {"a": rng.normal(size=(3, 3)).astype(np.float32)}
    live = strategy.aggregate(first.model, [(delta, 1)], first.state)
    replay = strategy.aggregate(first.model, [(delta, 1)], stored)
    assert live.model["a"].tobytes() == replay.model["a"].tobytes()


def test_every_registered_strategy_validates_its_defaults_and_closes_a_round():
    base = {"w": f32(0, 0), "n": np.array(1, np.int64)}
    deltas = [({"w": f32(i, -i), "n": np.array(1, np.int64)}, i + 1) for i in range(4)]
    for name, spec in STRATEGIES.items():
        config = validate_strategy(name)
        assert config == spec.defaults() and "clip_norm" in config
        result = run(name, base, deltas)
        assert np.all(np.isfinite(result.model["w"])), name


@pytest.mark.parametrize(
    "name, config, message",
    [
        ("fedsgd", {}, "unknown strategy"),
        ("fedavg", {"mu": 1}, "unknown keys"),
        ("fedprox", {"proximal_mu": -1}, "must be in"),
        ("fedadam", {"tau": 0}, "must be in (0.0"),
        ("fedadam", {"server_lr": float("nan")}, "must be in"),
        ("fedavgm", {"server_momentum": True}, "must be a number"),
        ("krum", {"byzantine": 1.5}, "whole number"),
        ("fedavg", [1], "JSON object"),
        ("fedavg", {"clip_norm": "1"}, "must be a number"),
    ],
)
def test_invalid_configurations_say_what_is_valid(name, config, message):
    with pytest.raises(StrategyConfigError, match=message.replace("(", r"\(")):
        validate_strategy(name, config)
