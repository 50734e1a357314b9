"""fedcore.feedback: what a lossy encoding drops is carried into the next update."""
import numpy as np
import pytest

from fedcore import codec
from fedcore.feedback import ErrorFeedback


def update(seed: int, shape=(30, 40)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": (rng.standard_normal(shape) * 1e-2).astype(np.float32),
            "b": (rng.standard_normal(shape[0]) * 1e-2).astype(np.float32),
            "n": np.array(7, np.int64)}


def received(pending) -> dict[str, np.ndarray]:
    return codec.decode(pending.body, kind="delta").arrays


def test_the_residual_is_what_was_to_be_sent_minus_what_decodes():
    fb = ErrorFeedback()
    pending = fb.encode(update(0), encoding="int4", base_version=1)
    for name in ("w", "b"):
        np.testing.assert_array_equal(pending.residual[name], update(0)[name] - received(pending)[name])


def test_the_next_update_sends_the_delta_plus_the_committed_residual():
    fb = ErrorFeedback()
    first = fb.encode(update(0), encoding="topk10-int8", base_version=1)
    fb.commit(first)
    second = fb.encode(update(1), encoding="float32", base_version=2)  # lossless: shows to_send
    np.testing.assert_array_equal(received(second)["w"], update(1)["w"] + first.residual["w"])


def test_nothing_changes_until_the_update_is_committed():
    fb = ErrorFeedback()
    fb.encode(update(0), encoding="int4", base_version=1)
    assert dict(fb.residual) == {}


def test_a_lossless_encoding_leaves_no_residual():
    fb = ErrorFeedback()
    fb.commit(fb.encode(update(0), encoding="topk1-int8", base_version=1))
    fb.commit(fb.encode(update(1), encoding="float32", base_version=2))
    assert dict(fb.residual) == {} and fb.encode(update(2), encoding="float32", base_version=3).residual_norm == 0


def test_integer_buffers_pass_through_untouched():
    fb = ErrorFeedback()
    pending = fb.encode(update(0), encoding="topk1-int8", base_version=1)
    assert received(pending)["n"] == 7 and "n" not in pending.residual


@pytest.mark.parametrize("encoding", ["int4", "topk1-int8"])
def test_what_the_server_received_in_total_trails_the_true_total_by_one_residual(encoding):
    fb, true_total, got_total = ErrorFeedback(), 0.0, 0.0
    for rnd in range(30):
        pending = fb.encode(update(rnd), encoding=encoding, base_version=rnd)
        fb.commit(pending)
        true_total = true_total + update(rnd)["w"].astype(np.float64)
        got_total = got_total + received(pending)["w"]
    np.testing.assert_allclose(got_total + fb.residual["w"], true_total, atol=1e-5)


def test_top_k_without_error_feedback_never_sends_the_small_coordinates_of_a_steady_update():
    # A steady direction, like a gradient that keeps pointing the same way across rounds.
    steady, fb = update(0), ErrorFeedback()
    with_ef = without = 0.0
    for rnd in range(100):
        pending = fb.encode(steady, encoding="topk10-int8", base_version=rnd)
        fb.commit(pending)
        with_ef = with_ef + received(pending)["w"]
        without = without + received(ErrorFeedback().encode(steady, encoding="topk10-int8", base_version=rnd))["w"]
    target = 100 * steady["w"].astype(np.float64)
    assert np.count_nonzero(without) == 120  # the same top 10 % every round
    assert np.linalg.norm(with_ef - target) < 0.2 * np.linalg.norm(without - target)


def test_a_residual_for_another_model_is_dropped_rather_than_misapplied():
    fb = ErrorFeedback()
    fb.commit(fb.encode(update(0), encoding="int4", base_version=1))
    other = update(1, shape=(10, 5))
    pending = fb.encode(other, encoding="float32", base_version=2)
    np.testing.assert_array_equal(received(pending)["w"], other["w"])


def test_tensors_named_exact_go_lossless_and_leave_no_residual():
    rng = np.random.default_rng(0)
    # A variance of 1e-5 beside one of 0.3: quantized together, the small one would turn negative.
    delta = {"w": rng.standard_normal((8, 8)).astype(np.float32),
             "running_var": np.array([1e-5, -2e-5, 0.3], np.float32)}
    pending = ErrorFeedback().encode(delta, encoding="int4", base_version=0, exact={"running_var"})
    decoded = codec.decode(pending.body, kind="delta")
    np.testing.assert_array_equal(decoded.arrays["running_var"], delta["running_var"])
    assert not np.any(pending.residual["running_var"])
    assert np.any(decoded.arrays["w"] != delta["w"])  # the weights are still quantized
