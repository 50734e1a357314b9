"""The quantized update encodings: int8 per row, int4 per row, top-k with compact indices (values
as int8 or as signs on one magnitude)."""
import json
import struct
import tracemalloc

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedcore import codec, quantize
from fedcore.codec import CodecError, decode, encode, encode_with_reconstruction, manifest_of
from quantized_bounds import quantized_within_bound

SETTINGS = settings(database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUANTIZED = sorted(codec.DELTA_ONLY_ENCODINGS)


def update(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": (rng.standard_normal((8, 4, 3, 3)) * 0.01).astype(np.float32),
        "conv.bias": (rng.standard_normal(8) * 0.01).astype(np.float32),
        "bn.num_batches_tracked": np.array(12, dtype=np.int64),
    }


def as_delta(arrays: dict, encoding: str) -> bytes:
    return encode(arrays, encoding=encoding, kind="delta", base_version=3)


def forge(tensors: list[dict], payload: bytes, kind: str = "delta") -> bytes:
    """A blob built by hand, bypassing encode(), to test the decoder against hostile input."""
    header = json.dumps({"kind": kind, "base_version": 3 if kind == "delta" else None, "meta": {},
                         "tensors": tensors}).encode()
    frame = zstandard.ZstdCompressor(write_content_size=True).compress(payload)
    return struct.pack("<4sBI", b"FEDT", 1, len(header)) + header + frame


def entry(encoding: str, shape: tuple[int, ...], nbytes: int, name: str = "w") -> dict:
    return {"name": name, "dtype": "float32", "shape": list(shape), "encoding": encoding,
            "shuffle": False, "nbytes": nbytes}


def code_of(blob: bytes, **kwargs) -> str:
    with pytest.raises(CodecError) as info:
        decode(blob, **kwargs)
    return info.value.code


def int8_payload(scales, q) -> bytes:
    return np.asarray(scales, "<f4").tobytes() + np.asarray(q, np.int8).tobytes()


# ---------------------------------------------------------------- behaviour


def test_int8_gives_each_output_channel_its_own_scale():
    w = np.stack([np.linspace(-1, 1, 64), np.linspace(-1e-4, 1e-4, 64)]).astype(np.float32)
    out = decode(as_delta({"w": w}, "int8")).arrays["w"]
    # The tiny row keeps its own precision instead of rounding to zero under the big row's scale.
    assert np.max(np.abs(out[1] - w[1])) <= 1e-4 / 254 * 1.001
    assert np.max(np.abs(out[0] - w[0])) <= 1 / 254 * 1.001


def test_int4_packs_two_values_a_byte_after_one_float32_scale_per_row():
    w = np.random.default_rng(1).standard_normal((6, 7)).astype(np.float32)
    header = codec.peek_header(as_delta({"w": w}, "int4"))
    assert header["tensors"][0]["encoding"] == "int4"
    assert header["tensors"][0]["nbytes"] == 6 * 4 + (42 + 1) // 2


def test_int4_rounds_with_a_deadzone_and_keeps_each_rows_maximum():
    # Row maximum 7 -> step 1: fractions up to 1/2 + 1/6 round down, larger ones up; the deadzone
    # is what brings a ResNet-18 round under 8 MB (benchmarks/results/round_bytes.md).
    assert quantize.INT4_DEADZONE == pytest.approx(1 / 6)
    w = np.array([[7.0, 0.6, -0.6, 0.7, -0.7, 2.62, 2.7, -7.0]], np.float32)
    _, q = quantize.quantize_rows(w, quantize.INT4_MAX, quantize.INT4_DEADZONE)
    assert q.tolist() == [7, 0, 0, 1, -1, 2, 3, -7]
    _, nearest = quantize.quantize_rows(w, quantize.INT4_MAX)
    assert nearest.tolist() == [7, 1, -1, 1, -1, 3, 3, -7]
    out = decode(as_delta({"w": w}, "int4")).arrays["w"]
    assert out.tolist() == [[7.0, 0.0, 0.0, 1.0, -1.0, 2.0, 3.0, -7.0]]


@pytest.mark.parametrize("deadzone", [-0.1, 0.5, 1.0])
def test_a_deadzone_outside_zero_to_one_half_is_refused(deadzone):
    with pytest.raises(ValueError):
        quantize.quantize_rows(np.ones((2, 2), np.float32), quantize.INT4_MAX, deadzone)


def test_int8_still_rounds_to_nearest():
    w = np.array([[127.0, 0.6, -0.6]], np.float32)
    assert decode(as_delta({"w": w}, "int8")).arrays["w"].tolist() == [[127.0, 1.0, -1.0]]


def test_int4_error_is_within_its_rounding_bound_on_each_row():
    w = (np.random.default_rng(2).standard_normal((16, 50)) * 0.02).astype(np.float32)
    out = decode(as_delta({"w": w}, "int4")).arrays["w"]
    assert quantized_within_bound(w, out, "int4")
    assert 0 < np.linalg.norm(out - w) / np.linalg.norm(w) < 0.25


@pytest.mark.parametrize("encoding, percent", [("topk10-int8", 10), ("topk3-int8", 3), ("topk1-int8", 1)])
def test_top_k_keeps_exactly_the_largest_magnitudes_and_zeroes_the_rest(encoding, percent):
    w = np.random.default_rng(3).standard_normal((40, 25)).astype(np.float32)
    out = decode(as_delta({"w": w}, encoding)).arrays["w"].reshape(-1)
    k = -(-1000 * percent // 100)
    expected = np.sort(np.argsort(np.abs(w.reshape(-1)))[-k:])
    np.testing.assert_array_equal(np.flatnonzero(out), expected)
    assert quantized_within_bound(w, out.reshape(w.shape), encoding)


@pytest.mark.parametrize("encoding, percent", [("topk20-ternary", 20), ("topk10-ternary", 10), ("topk5-ternary", 5)])
def test_ternary_top_k_sends_the_largest_values_as_signs_on_their_mean_magnitude(encoding, percent):
    w = np.random.default_rng(3).standard_normal((40, 25)).astype(np.float32)
    out = decode(as_delta({"w": w}, encoding)).arrays["w"].reshape(-1)
    k = 1000 * percent // 100
    largest = np.sort(np.argsort(np.abs(w.reshape(-1)))[-k:])
    np.testing.assert_array_equal(np.flatnonzero(out), largest)
    np.testing.assert_allclose(np.abs(out[largest]), np.abs(w.reshape(-1)[largest]).mean(), rtol=1e-6)
    np.testing.assert_array_equal(np.sign(out[largest]), np.sign(w.reshape(-1)[largest]))


def test_ternary_magnitude_of_values_near_the_float32_maximum_does_not_overflow():
    w = np.full((4, 10), 3e38, np.float32)
    w[0, :2] = -3e38
    out = decode(as_delta({"w": w}, "topk10-ternary")).arrays["w"]
    assert np.isfinite(out).all() and np.abs(out[out != 0]).min() == np.float32(3e38)


def test_ternary_values_cost_one_bit_each():
    w = np.random.default_rng(3).standard_normal((40, 25)).astype(np.float32)
    int8_values = codec.peek_header(as_delta({"w": w}, "topk10-int8"))["tensors"][0]["nbytes"]
    sign_values = codec.peek_header(as_delta({"w": w}, "topk10-ternary"))["tensors"][0]["nbytes"]
    assert int8_values - sign_values == 100 - 100 // 8 - 1  # 100 bytes of int8 against 13 of signs


def test_top_k_of_a_non_empty_tensor_keeps_at_least_one_value():
    assert quantize.topk_count(5, 1) == 1 and quantize.topk_count(0, 1) == 0


def test_sparse_indices_travel_as_varint_gaps_and_dense_ones_as_a_bitmap():
    n = 10_000
    sparse = quantize.encode_indices(np.arange(0, n, 100), n)
    dense = quantize.encode_indices(np.arange(0, n, 3), n)
    assert sparse[0] == quantize.INDEX_VARINT and sparse.size == 1 + 100
    assert dense[0] == quantize.INDEX_BITMAP and dense.size == 1 + n // 8
    np.testing.assert_array_equal(quantize.decode_indices(sparse, n, 100), np.arange(0, n, 100))
    np.testing.assert_array_equal(quantize.decode_indices(dense, n, 3334), np.arange(0, n, 3))


def test_varints_round_trip_values_of_every_length():
    values = np.array([0, 1, 127, 128, 16383, 16384, 2**35 + 5], np.uint64)
    buf = quantize.varint_encode(values)
    np.testing.assert_array_equal(quantize.varint_decode(buf, values.size, 9), values)


@pytest.mark.parametrize("encoding", ["int4", "topk10-int8", "topk1-int8", "topk10-ternary"])
def test_vectors_and_scalars_travel_as_int8_under_the_coarser_encodings(encoding):
    header = codec.peek_header(as_delta(update(), encoding))
    assert [t["encoding"] for t in header["tensors"]] == [encoding, "int8", "raw"]


@pytest.mark.parametrize("encoding", QUANTIZED)
def test_integer_buffers_stay_exact_under_quantized_encodings(encoding):
    assert decode(as_delta(update(), encoding)).arrays["bn.num_batches_tracked"] == 12


@pytest.mark.parametrize("encoding", QUANTIZED)
def test_quantized_encodings_are_refused_for_full_weights(encoding):
    with pytest.raises(CodecError) as info:
        encode(update(), encoding=encoding, kind="full")
    assert info.value.code == "bad_argument"


def test_a_full_blob_carrying_a_quantized_tensor_is_rejected():
    blob = forge([entry("int8", (2,), 4 + 2)], int8_payload([1.0], [1, 2]), kind="full")
    assert code_of(blob) == "bad_header"


@pytest.mark.parametrize("encoding", codec.ENCODINGS)
def test_the_reconstruction_from_encoding_is_bit_identical_to_decoding(encoding):
    arrays = update(4)
    blob, recon = encode_with_reconstruction(arrays, encoding=encoding, kind="delta", base_version=3)
    decoded = decode(blob).arrays
    for name in arrays:
        assert recon[name].dtype == decoded[name].dtype
        np.testing.assert_array_equal(recon[name], decoded[name])


def test_int4_of_a_gaussian_update_costs_under_four_and_a_half_bits_per_value():
    w = (np.random.default_rng(5).standard_normal((256, 1152)) * 1e-3).astype(np.float32)
    assert len(as_delta({"w": w}, "int4")) * 8 / w.size < 4.5


@pytest.mark.parametrize("encoding", ["topk1-int8", "topk10-ternary"])
def test_sparse_encodings_cost_under_a_fortieth_of_float32(encoding):
    w = (np.random.default_rng(6).standard_normal((256, 1152)) * 1e-3).astype(np.float32)
    assert len(as_delta({"w": w}, encoding)) * 40 < w.size * 4


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "tensor",
    [
        entry("int8", (2, 3), 2 * 4 + 6 - 1),
        entry("int4", (2, 3), 2 * 4 + 4),
        entry("topk10-int8", (100,), 4 + 10 + 1 + 9),  # below the smallest index section
        entry("topk10-int8", (100,), 4 + 10 + 1 + 10 * 1 + 14),  # above the largest
        {**entry("int8", (2, 3), 2 * 4 + 6), "shuffle": True},
        entry("topk1-int8", (0, 3), 1),
        entry("topk10-ternary", (100,), 4 + 2 + 1 + 9),  # signs of 10 values fill 2 bytes, not 1
    ],
    ids=["int8-size", "int4-size", "topk-too-small", "topk-too-big", "shuffled", "empty-with-bytes",
         "ternary-too-small"],
)
def test_declared_sizes_that_no_encoder_produces_are_rejected_before_decompressing(tensor):
    assert code_of(forge([tensor], b"\0" * tensor["nbytes"])) == "bad_header"


def test_a_quantized_tensor_declaring_a_huge_shape_is_rejected_before_allocating():
    n = 1 << 40
    k = quantize.topk_count(n, 1)
    tensor = entry("topk1-int8", (n,), 4 + k + 1 + (n + 7) // 8)
    tracemalloc.start()
    try:
        assert code_of(forge([tensor], b"\0" * 64)) == "too_large"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("scale", [np.nan, np.inf, -1.0])
def test_scales_that_are_not_finite_and_non_negative_are_rejected(scale):
    blob = forge([entry("int8", (2,), 4 + 2)], int8_payload([scale], [1, 2]))
    assert code_of(blob) == "bad_payload"


def test_int8_minus_128_is_rejected():
    assert code_of(forge([entry("int8", (2,), 6)], int8_payload([1.0], [-128, 2]))) == "bad_payload"


def test_a_4_bit_minus_8_is_rejected():
    payload = np.array([1.0], "<f4").tobytes() + bytes([0x80, 0x88])  # low nibble 0 means -8
    assert code_of(forge([entry("int4", (1, 4), 4 + 2)], payload)) == "bad_payload"


def test_a_non_zero_padding_nibble_is_rejected():
    payload = np.array([1.0], "<f4").tobytes() + bytes([0x89, 0x99])  # 3 values, pad nibble 9
    assert code_of(forge([entry("int4", (1, 3), 4 + 2)], payload)) == "bad_payload"


def test_decoded_values_that_overflow_float32_are_rejected():
    blob = forge([entry("int8", (2,), 6)], int8_payload([3e38], [127, 1]))
    assert code_of(blob) == "non_finite"


def topk_blob(index_section: bytes, n: int = 100, values=(1,) * 10) -> bytes:
    payload = np.array([0.5], "<f4").tobytes() + np.asarray(values, np.int8).tobytes() + index_section
    return forge([entry("topk10-int8", (n,), len(payload))], payload)


def test_a_valid_forged_top_k_blob_decodes():
    out = decode(topk_blob(bytes([0]) + bytes([0] * 9) + bytes([90]))).arrays["w"]
    np.testing.assert_array_equal(np.flatnonzero(out), [*range(9), 99])


@pytest.mark.parametrize(
    "section",
    [
        bytes([0]) + bytes([0] * 9) + bytes([91]),  # the last index would be 100
        bytes([0]) + bytes([0] * 8) + bytes([0x80, 0x00]),  # an overlong varint
        bytes([0]) + bytes([0] * 11),  # eleven varints for ten values
        bytes([0]) + bytes([0] * 9) + bytes([0x81]),  # ends inside a varint
        bytes([2]) + bytes([0] * 13),  # unknown index coding
        bytes([1]) + bytes([0xFF, 0x03]) + bytes(10),  # bitmap selecting ten, one byte short
        bytes([1]) + bytes([0xFF]) + bytes(11) + bytes([0x03 << 4]),  # bit 100 is past the end
        bytes([1]) + bytes([0xFF]) + bytes(12),  # bitmap selecting 8, not 10
    ],
    ids=["index-out-of-range", "overlong", "too-many", "unterminated", "unknown-mode",
         "bitmap-size", "bitmap-past-end", "bitmap-count"],
)
def test_index_sections_that_are_not_k_increasing_indices_in_range_are_rejected(section):
    assert code_of(topk_blob(section)) in ("bad_payload", "bad_header")


def test_top_k_values_of_minus_128_are_rejected():
    section = bytes([0]) + bytes([0] * 10)
    assert code_of(topk_blob(section, values=(-128,) + (1,) * 9)) == "bad_payload"


def ternary_blob(signs: bytes, magnitude: float = 0.5) -> bytes:
    payload = np.array([magnitude], "<f4").tobytes() + signs + bytes([0]) + bytes([0] * 9) + bytes([90])
    return forge([entry("topk10-ternary", (100,), len(payload))], payload)


def test_a_valid_forged_ternary_blob_decodes():
    out = decode(ternary_blob(bytes([0b101, 0]))).arrays["w"]
    np.testing.assert_array_equal(out[[0, 1, 2, 3, 99]], [-0.5, 0.5, -0.5, 0.5, 0.5])
    assert np.count_nonzero(out) == 10


@pytest.mark.parametrize("signs, magnitude", [(bytes([0, 0b100]), 0.5), (bytes([0, 0]), -1.0), (bytes([0, 0]), np.nan)],
                         ids=["padding-bit-set", "negative-magnitude", "nan-magnitude"])
def test_ternary_blobs_with_set_padding_or_a_bad_magnitude_are_rejected(signs, magnitude):
    assert code_of(ternary_blob(signs, magnitude)) == "bad_payload"


def test_manifest_checks_apply_to_quantized_blobs():
    blob = as_delta(update(), "int4")
    wrong = manifest_of({**update(), "conv.bias": np.zeros(9, np.float32)})
    assert code_of(blob, manifest=wrong) == "manifest_mismatch"


# ---------------------------------------------------------------- properties

matrices = hnp.arrays(
    np.float32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9),
    elements=st.floats(-1e3, 1e3, width=32),
)


@SETTINGS
@given(arrays=st.dictionaries(st.sampled_from("abcdef"), matrices, min_size=1, max_size=4),
       encoding=st.sampled_from(QUANTIZED))
def test_random_updates_round_trip_within_each_quantized_bound(arrays, encoding):
    blob, recon = encode_with_reconstruction(arrays, encoding=encoding, kind="delta", base_version=0)
    decoded = decode(blob, manifest=manifest_of(arrays), kind="delta").arrays
    for name, a in arrays.items():
        np.testing.assert_array_equal(decoded[name], recon[name])
        assert quantized_within_bound(a, decoded[name], encoding)


_VALID = as_delta(
    {"w": (np.random.default_rng(7).standard_normal((4, 40)) * 0.1).astype(np.float32),
     "v": (np.random.default_rng(8).standard_normal(300)).reshape(3, 100).astype(np.float32),
     "b": np.ones(5, np.float32), "n": np.array(3, np.int64)},
    "topk10-int8",
)
_VALID_TERNARY = as_delta({"w": (np.random.default_rng(10).standard_normal((5, 40))).astype(np.float32)},
                          "topk20-ternary")
_VALID_INT4 = as_delta({"w": (np.random.default_rng(9).standard_normal((3, 33))).astype(np.float32)}, "int4")


def _decode_or_codec_error(data: bytes) -> None:
    try:
        decode(data, max_bytes=1 << 20)
    except CodecError:
        pass


@SETTINGS
@given(
    which=st.sampled_from([_VALID, _VALID_INT4, _VALID_TERNARY]),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.integers(0, 10**6),
    tail=st.binary(max_size=8),
)
def test_mutated_quantized_blobs_only_ever_raise_codec_error(which, edits, cut, tail):
    blob = bytearray(which)
    for pos, byte in edits:
        blob[pos % len(blob)] = byte
    _decode_or_codec_error(bytes(blob))
    _decode_or_codec_error(bytes(blob[: cut % (len(blob) + 1)]) + tail)


@SETTINGS
@given(payload=st.binary(min_size=0, max_size=64), n=st.integers(1, 200),
       encoding=st.sampled_from(QUANTIZED), rows=st.integers(1, 4))
def test_random_payloads_under_valid_quantized_headers_only_ever_raise_codec_error(payload, n, encoding, rows):
    shape = (rows, n)
    _decode_or_codec_error(forge([entry(encoding, shape, len(payload))], payload))


# ---------------------------------------------------------------- validate() and decode() agree


def _outcome(fn, blob: bytes) -> str:
    try:
        fn(blob, kind="delta")
    except CodecError as exc:
        return exc.code
    return "ok"


@SETTINGS
@given(
    encoding=st.sampled_from(sorted(codec.DELTA_ONLY_ENCODINGS | {"float32", "bfloat16"})),
    seed=st.integers(0, 2**16),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=3),
)
def test_validate_refuses_exactly_what_decode_refuses(encoding, seed, flips):
    """The server accepts an upload on validate() and the engine aggregates it with decode():
    a blob one accepts and the other refuses would stall a round."""
    blob = as_delta(update(seed), encoding)
    header_end = 9 + struct.unpack("<4sBI", blob[:9])[2]  # damage the payload, past the JSON header
    payload = bytearray(zstandard.ZstdDecompressor().decompress(blob[header_end:]))
    for at, xor in flips:
        payload[at % len(payload)] ^= xor
    damaged = blob[:header_end] + zstandard.ZstdCompressor(write_content_size=True).compress(bytes(payload))
    assert _outcome(codec.validate, damaged) == _outcome(decode, damaged)


@pytest.mark.parametrize("encoding", ["int8", "int4"])
def test_validate_refuses_a_scale_whose_values_would_overflow(encoding):
    level = 127 if encoding == "int8" else 7
    fitting = np.float32(np.finfo(np.float32).max / level)
    if float(fitting) * level > float(np.finfo(np.float32).max):
        fitting = np.nextafter(fitting, np.float32(0))  # the largest scale whose values fit
    scale = np.nextafter(fitting, np.float32(np.inf))
    q = [level, 1] if encoding == "int8" else None
    if encoding == "int8":
        blob = forge([entry("int8", (2,), 6)], int8_payload([scale], q))
    else:
        blob = forge([entry("int4", (2,), 5)], np.asarray([scale], "<f4").tobytes() + bytes([0x9F]))
    assert _outcome(codec.validate, blob) == _outcome(decode, blob) == "non_finite"
    if encoding == "int8":
        ok = forge([entry("int8", (2,), 6)], int8_payload([fitting], q))
    else:
        ok = forge([entry("int4", (2,), 5)], np.asarray([fitting], "<f4").tobytes() + bytes([0x9F]))
    assert np.isfinite(decode(ok, kind="delta").arrays["w"]).all()
    assert _outcome(codec.validate, ok) == "ok"
