"""fedcore.broadcast: the replica devices rebuild, with the server's error feedback."""
import numpy as np
import pytest

from fedcore import codec
from fedcore.broadcast import (
    MAX_CHAIN,
    ChainError,
    digest,
    pack_chain,
    rebuild,
    same_bits,
    step,
    unpack_chain,
    use_chain,
)


def f32(rows) -> np.ndarray:
    return np.array(rows, np.float32)


def sent(s) -> dict[str, np.ndarray]:
    return codec.decode(s.delta, kind="delta").arrays


def test_an_int4_broadcast_sends_the_quantized_delta_and_the_replica_is_what_devices_rebuild():
    # Row scale 0.875 / 7 = 0.125: 0.875 -> 7 steps exactly, 0.3 -> 2.4 steps -> 2 -> 0.25.
    previous, target = {"w": f32([[0, 0]])}, {"w": f32([[0.875, 0.3]])}
    s = step(previous, target, encoding="int4", base_version=0)
    np.testing.assert_array_equal(sent(s)["w"], f32([[0.875, 0.25]]))
    np.testing.assert_array_equal(s.replica["w"], f32([[0.875, 0.25]]))
    assert not s.exact
    assert same_bits(rebuild(previous, sent(s)), s.replica)


def test_what_one_broadcast_drops_goes_out_with_the_next():
    previous, target = {"w": f32([[0, 0]])}, {"w": f32([[0.875, 0.3]])}
    first = step(previous, target, encoding="int4", base_version=0)
    # The global model did not move; the next broadcast still carries the 0.05 the first dropped.
    second = step(first.replica, target, encoding="int4", base_version=1)
    np.testing.assert_allclose(sent(second)["w"], f32([[0, 0.05]]), atol=1e-7)
    np.testing.assert_allclose(second.replica["w"], target["w"], atol=1e-7)


def test_the_replica_stays_within_one_broadcast_of_the_global_model_while_naive_deltas_drift():
    rng = np.random.default_rng(0)
    exact = {"w": rng.standard_normal((16, 64)).astype(np.float32)}
    replica = dict(exact)
    naive = dict(exact)  # a device that adds Q(x_t - x_(t-1)) and never hears what it missed
    for t in range(1, 201):
        new = {"w": exact["w"] + (rng.standard_normal((16, 64)) * 1e-2 + 2e-3).astype(np.float32)}
        replica = step(replica, new, encoding="int4", base_version=t - 1).replica
        naive_delta = codec.decode(codec.encode({"w": new["w"] - exact["w"]}, encoding="int4", kind="delta",
                                                base_version=t - 1), kind="delta").arrays
        naive = rebuild(naive, naive_delta)
        exact = new
    replica_error = float(np.abs(replica["w"] - exact["w"]).max())
    naive_error = float(np.abs(naive["w"] - exact["w"]).max())
    # One int4 step of a ~0.03 delta is ~0.002; the naive copy carries 200 rounds of rounding.
    assert replica_error < 0.005 < naive_error


def test_a_float32_broadcast_leaves_the_replica_equal_to_the_global_model():
    previous, target = {"w": f32([[1.5, -2.0]])}, {"w": f32([[1.25, -2.5]])}
    s = step(previous, target, encoding="float32", base_version=3)
    assert s.exact and s.delta is not None and same_bits(s.replica, target)
    assert same_bits(rebuild(previous, sent(s)), target)


def test_a_float32_step_that_would_not_rebuild_exactly_sends_no_delta():
    # 1e-12 - 1.0 rounds to -1.0 in float32, so previous + delta gives 0, not 1e-12.
    previous, target = {"w": f32([[1.0]])}, {"w": f32([[1e-12]])}
    s = step(previous, target, encoding="float32", base_version=0)
    assert s.delta is None and same_bits(s.replica, target)


def test_buffers_named_exact_go_as_float32_and_integers_stay_exact():
    previous = {"w": f32([[0, 0]]), "running_var": f32([1e-5, 0.3]), "n": np.array(4, np.int64)}
    target = {"w": f32([[0.875, 0.3]]), "running_var": f32([2e-5, 0.31]), "n": np.array(5, np.int64)}
    s = step(previous, target, encoding="int4", base_version=0, exact={"running_var"})
    encodings = {t["name"]: t["encoding"] for t in codec.peek_header(s.delta)["tensors"]}
    assert encodings == {"w": "int4", "running_var": "float32", "n": "raw"}
    np.testing.assert_allclose(s.replica["running_var"], target["running_var"], rtol=1e-6)
    assert s.replica["n"] == 5 and s.replica["n"].dtype == np.int64


def test_a_sparse_broadcast_carries_what_it_left_out_into_the_next():
    previous, target = {"w": f32([[0] * 10])}, {"w": f32([[10, 1, 1, 1, 1, 1, 1, 1, 1, 1]])}
    first = step(previous, target, encoding="topk10-int8", base_version=0)  # keeps 1 of 10
    np.testing.assert_allclose(first.replica["w"], f32([[10, 0, 0, 0, 0, 0, 0, 0, 0, 0]]))
    second = step(first.replica, target, encoding="topk10-int8", base_version=1)
    assert np.count_nonzero(second.replica["w"][0, 1:]) == 1  # one of the dropped ones goes out now


def test_an_unknown_encoding_is_refused():
    with pytest.raises(ValueError):
        step({"w": f32([[0]])}, {"w": f32([[1]])}, encoding="int3", base_version=0)


def test_the_digest_names_the_bits_not_the_order_of_the_tensors():
    a = {"w": f32([[0.0, 1.0]]), "n": np.array(1, np.int64)}
    assert digest(a) == digest({"n": np.array(1, np.int64), "w": f32([[0.0, 1.0]])})
    assert digest(a) != digest({"w": f32([[-0.0, 1.0]]), "n": np.array(1, np.int64)})  # signed zero
    assert digest(a) != digest({"w": f32([0.0, 1.0]), "n": np.array(1, np.int64)})  # shape
    assert digest(a) != digest({"w": f32([[0.0, 1.0]]), "n": np.array(1, np.int32)})  # dtype


@pytest.mark.parametrize("sizes, snapshot, expected", [
    ([10], 100, True),
    ([40, 40], 100, True),
    ([40, 40, 40], 100, False),  # the chain would be larger than the snapshot
    ([10, None, 10], 100, False),  # a version sent no delta: the chain is broken
    ([], 100, False),
    ([1] * (MAX_CHAIN + 1), 10 ** 6, False),
])
def test_a_device_gets_the_chain_only_when_it_is_whole_and_smaller_than_the_snapshot(sizes, snapshot, expected):
    assert use_chain(sizes, snapshot) is expected


def test_a_chain_body_gives_back_its_blobs_in_order():
    blobs = [b"first", b"", b"third one"]
    assert unpack_chain(pack_chain(blobs), max_bytes=1 << 20) == blobs


@pytest.mark.parametrize("mangle", [
    lambda body: body[:-1],  # truncated
    lambda body: body + b"x",  # trailing bytes
    lambda body: b"FEDT" + body[4:],  # wrong magic
    lambda body: body[:4] + b"\x02" + body[5:],  # unknown version
    lambda body: body[:5] + (0).to_bytes(4, "little") + body[9:],  # no blobs
    lambda body: body[:5] + (2 ** 32 - 1).to_bytes(4, "little") + body[9:],  # absurd count
    lambda body: body[:4],  # too short for a prefix
])
def test_a_malformed_chain_body_is_refused(mangle):
    with pytest.raises(ChainError):
        unpack_chain(mangle(pack_chain([b"abc", b"defg"])), max_bytes=1 << 20)


def test_a_chain_body_over_the_limit_is_refused():
    with pytest.raises(ChainError):
        unpack_chain(pack_chain([b"x" * 100]), max_bytes=50)
