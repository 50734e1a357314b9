"""FedAvg and its helpers on tiny literal arrays with hand-computed results."""
import numpy as np
import pytest

from fedcore.aggregation import WeightedMeanAccumulator, apply_delta, weighted_mean, weighted_metric
from fedcore.strategies import build_strategy


def test_weighted_mean_weights_by_example_count():
    a = {"w": np.array([1.0, 2.0], np.float32)}
    b = {"w": np.array([3.0, 6.0], np.float32)}
    result = weighted_mean([(a, 1), (b, 3)])
    np.testing.assert_array_equal(result["w"], np.array([2.5, 5.0], np.float32))
    assert result["w"].dtype == np.float32


def test_integer_buffers_are_averaged_exactly_and_stay_integers():
    a = {"n": np.array(3, np.int64)}
    b = {"n": np.array(4, np.int64)}
    assert weighted_mean([(a, 1), (b, 1)])["n"] == 4  # 3.5 rounds half up
    assert weighted_mean([(a, 3), (b, 1)])["n"] == 3  # 3.25
    big = {"n": np.array(2**62, np.int64)}
    assert weighted_mean([(big, 1), (big, 5)])["n"] == 2**62  # no float64 rounding
    assert weighted_mean([(a, 1), (b, 1)])["n"].dtype == np.int64


def test_fedavg_adds_the_weighted_mean_delta_to_the_base():
    base = {"w": np.array([10.0, 10.0], np.float32), "n": np.array(5, np.int64)}
    d1 = {"w": np.array([1.0, -1.0], np.float32), "n": np.array(2, np.int64)}
    d2 = {"w": np.array([-1.0, 3.0], np.float32), "n": np.array(2, np.int64)}
    result = build_strategy("fedavg").aggregate(base, [(d1, 100), (d2, 300)]).model
    np.testing.assert_allclose(result["w"], [9.5, 12.0])
    assert result["n"] == 7


def test_the_order_of_contributions_does_not_change_the_result():
    rng = np.random.default_rng(0)
    parts = [({"w": rng.standard_normal(1000).astype(np.float32)}, int(n)) for n in rng.integers(1, 500, 7)]
    np.testing.assert_array_equal(weighted_mean(parts)["w"], weighted_mean(parts[::-1])["w"])


def test_mismatched_layouts_and_empty_rounds_are_refused():
    with pytest.raises(ValueError):
        weighted_mean([])
    with pytest.raises(ValueError):
        weighted_mean([({"w": np.zeros(2)}, 1), ({"v": np.zeros(2)}, 1)])
    with pytest.raises(ValueError):
        weighted_mean([({"w": np.zeros(2)}, 1), ({"w": np.zeros(3)}, 1)])
    with pytest.raises(ValueError):
        weighted_mean([({"w": np.zeros(2)}, 0)])
    with pytest.raises(ValueError):
        apply_delta({"w": np.zeros(2)}, {"v": np.zeros(2)})


def test_weighted_metric_ignores_missing_reports():
    assert weighted_metric([(0.5, 10), (None, 10), (1.0, 30)]) == pytest.approx(0.875)
    assert weighted_metric([(None, 3)]) is None


def test_streaming_fedavg_fed_lazily_decoded_updates_equals_the_batch_mean_bit_for_bit():
    from fedcore import codec

    rng = np.random.default_rng(1)
    base = {"w": rng.standard_normal((3, 4)).astype(np.float32), "n": np.array(7, np.int64)}
    deltas = [
        ({"w": rng.standard_normal((3, 4)).astype(np.float32), "n": np.array(i, np.int64)}, weight)
        for i, weight in enumerate((5, 1, 9))
    ]
    blobs = [codec.encode(d, encoding="float32", kind="delta", base_version=0) for d, _ in deltas]
    lazily = ((codec.decode_lazily(b, kind="delta"), w) for b, (_, w) in zip(blobs, deltas))
    streamed = build_strategy("fedavg").aggregate(base, lazily, total_weight=15).model
    batch = apply_delta(base, weighted_mean([(codec.decode(b).arrays, w) for b, (_, w) in zip(blobs, deltas)]))
    assert streamed.keys() == batch.keys()
    for name in batch:
        assert streamed[name].dtype == batch[name].dtype
        np.testing.assert_array_equal(streamed[name], batch[name])


def test_a_stream_whose_weights_differ_from_the_announced_total_is_refused():
    mean = WeightedMeanAccumulator(total_weight=10)
    mean.add({"w": np.ones(2, np.float32)}, 4)
    with pytest.raises(ValueError, match="differ from the total"):
        mean.result()
