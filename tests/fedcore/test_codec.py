import json
import struct
import tracemalloc

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedcore import codec
from fedcore.codec import CodecError, decode, encode, manifest_of
from quantized_bounds import quantized_within_bound

# Hypothesis must not write a .hypothesis/ database into the repo.
SETTINGS = settings(database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def weights(seed: int = 0, n: int = 4096) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": (rng.standard_normal((n // 16, 16)) * 0.05).astype(np.float32),
        "conv.bias": rng.standard_normal(16).astype(np.float32),
        "bn.num_batches_tracked": np.array(123456789012, dtype=np.int64),
    }


def forge(header: dict, payload: bytes, *, content_size: bool = True, header_len: int | None = None) -> bytes:
    """Build a blob by hand, bypassing encode(), to test the decoder against hostile input."""
    raw = json.dumps(header).encode()
    frame = zstandard.ZstdCompressor(write_content_size=content_size).compress(payload)
    return struct.pack("<4sBI", b"FEDT", 1, len(raw) if header_len is None else header_len) + raw + frame


def tensor_entry(name="w", dtype="float32", shape=(4,), encoding="float32", nbytes=None) -> dict:
    itemsize = {"float32": 4, "bfloat16": 2, "float16": 2}.get(encoding, 8)
    return {
        "name": name,
        "dtype": dtype,
        "shape": list(shape),
        "encoding": encoding,
        "shuffle": False,
        "nbytes": int(np.prod(shape)) * itemsize if nbytes is None else nbytes,
    }


def header(*tensors, kind="full", base_version=None) -> dict:
    return {"kind": kind, "base_version": base_version, "meta": {}, "tensors": list(tensors)}


def code_of(data: bytes, **kwargs) -> str:
    with pytest.raises(CodecError) as info:
        decode(data, **kwargs)
    return info.value.code


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("shuffle", [True, False])
def test_float32_encoding_round_trips_exactly(shuffle):
    arrays = weights()
    out = decode(encode(arrays, encoding="float32", shuffle=shuffle)).arrays
    for name, a in arrays.items():
        np.testing.assert_array_equal(out[name], a)


@pytest.mark.parametrize("encoding", codec.ENCODINGS)
def test_integer_and_bool_tensors_are_exact_under_every_encoding(encoding):
    arrays = {
        "big": np.array([2**62 + 1, -(2**62) - 3], dtype=np.int64),
        "small": np.array([-128, 0, 127], dtype=np.int8),
        "mask": np.array([[True, False], [False, True]]),
        "u": np.arange(5, dtype=np.uint16),
    }
    decoded = decode(encode(arrays, encoding=encoding, kind="delta", base_version=0))
    for name, a in arrays.items():
        assert decoded.arrays[name].dtype == a.dtype
        np.testing.assert_array_equal(decoded.arrays[name], a)
    assert decoded.encodings == {"raw"}


def test_bfloat16_relative_error_is_at_most_2_to_the_minus_8():
    x = np.random.default_rng(1).standard_normal(100_000).astype(np.float32) * 10.0
    y = decode(encode({"x": x}, encoding="bfloat16")).arrays["x"]
    assert np.max(np.abs(y - x) / np.abs(x)) <= 2.0**-8


def test_float16_relative_error_is_at_most_2_to_the_minus_11_for_normal_values():
    x = np.random.default_rng(2).uniform(-60000, 60000, 100_000).astype(np.float32)
    x = x[np.abs(x) >= 2.0**-14]  # float16's smallest normal
    y = decode(encode({"x": x}, encoding="float16")).arrays["x"]
    assert np.max(np.abs(y - x) / np.abs(x)) <= 2.0**-11


def test_bfloat16_rounds_ties_to_even():
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8)], dtype=np.float32)
    y = decode(encode({"x": x}, encoding="bfloat16")).arrays["x"]
    np.testing.assert_array_equal(y, np.array([1.0, 1 + 2**-6, -1.0], dtype=np.float32))


def test_float_tensors_decode_to_writable_contiguous_float32():
    arrays = {"h": np.ones((3, 4), np.float16), "d": np.ones((2, 3), np.float64).T}
    for a in decode(encode(arrays)).arrays.values():
        assert a.dtype == np.float32 and a.flags.writeable and a.flags.c_contiguous


def test_zero_dim_and_empty_tensors_keep_their_shapes():
    arrays = {"scalar": np.array(3.5, np.float32), "empty": np.zeros((0, 7), np.float32)}
    out = decode(encode(arrays), manifest=manifest_of(arrays)).arrays
    assert out["scalar"].shape == () and out["scalar"] == 3.5
    assert out["empty"].shape == (0, 7)


def test_kind_base_version_and_meta_survive_the_round_trip():
    blob = encode(weights(), kind="delta", base_version=7, meta={"client": "a", "examples": 12})
    decoded = decode(blob)
    assert (decoded.kind, decoded.base_version, decoded.meta) == ("delta", 7, {"client": "a", "examples": 12})


def test_shuffled_bfloat16_is_about_half_the_size_of_raw_float32():
    arrays = {"w": (np.random.default_rng(3).standard_normal(200_000) * 0.02).astype(np.float32)}
    size = len(encode(arrays, encoding="bfloat16", shuffle=True))
    assert size <= 0.55 * codec.float32_size(manifest_of(arrays))


def test_byte_shuffling_makes_float32_payloads_smaller():
    arrays = {"w": (np.random.default_rng(4).standard_normal(100_000) * 0.02).astype(np.float32)}
    shuffled = encode(arrays, encoding="float32", shuffle=True)
    assert len(shuffled) < len(encode(arrays, encoding="float32", shuffle=False))


def test_float32_size_counts_float_tensors_at_4_bytes_and_ints_at_their_own_size():
    manifest = {"a": ("float16", (10,)), "b": ("int64", (3,)), "c": ("bool", (2, 2))}
    assert codec.float32_size(manifest) == 40 + 24 + 4


# ---------------------------------------------------------------- manifest and kind


@pytest.mark.parametrize(
    "changed, offender",
    [
        ({"conv.weight": np.zeros((256, 16), np.float32), "x": np.zeros(16, np.float32)}, "conv.bias"),
        ({"conv.weight": np.zeros((16, 256), np.float32), "conv.bias": np.zeros(16, np.float32)}, "conv.weight"),
        ({"conv.weight": np.zeros((256, 16), np.float32), "conv.bias": np.zeros(16, np.int32)}, "conv.bias"),
    ],
    ids=["name", "shape", "dtype"],
)
def test_it_rejects_blobs_that_do_not_match_the_manifest(changed, offender):
    expected = manifest_of({k: v for k, v in weights().items() if k != "bn.num_batches_tracked"})
    with pytest.raises(CodecError) as info:
        decode(encode(changed), manifest=expected)
    assert info.value.code == "manifest_mismatch"
    assert offender in str(info.value)


def test_it_rejects_a_blob_of_the_wrong_kind():
    assert code_of(encode(weights(), kind="full"), kind="delta") == "kind_mismatch"


def test_encode_refuses_a_delta_without_base_version():
    with pytest.raises(CodecError):
        encode(weights(), kind="delta")


# ---------------------------------------------------------------- hostile input


def test_a_header_declaring_a_huge_tensor_is_rejected_before_allocating():
    n = 1 << 40
    blob = forge(header(tensor_entry(shape=(n,), nbytes=4 * n)), b"\0" * 16)
    tracemalloc.start()
    try:
        assert code_of(blob) == "too_large"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_it_rejects_blobs_that_decode_beyond_max_bytes():
    assert code_of(encode(weights()), max_bytes=1000) == "too_large"


def test_a_zstd_frame_declaring_a_different_content_size_is_rejected():
    # Header promises 16 bytes; the frame honestly declares 1 MiB of zeros.
    blob = forge(header(tensor_entry(shape=(4,))), b"\0" * (1 << 20))
    assert code_of(blob) == "size_mismatch"


def test_a_zstd_frame_without_declared_content_size_is_rejected():
    blob = forge(header(tensor_entry(shape=(4,))), b"\0" * 16, content_size=False)
    assert code_of(blob) == "size_mismatch"


def test_every_truncation_of_a_valid_blob_is_rejected_as_truncated():
    blob = encode(weights(n=256))
    codes = {code_of(blob[:cut]) for cut in range(len(blob))}
    assert codes == {"truncated"}


def test_it_rejects_trailing_bytes_after_the_zstd_frame():
    assert code_of(encode(weights()) + b"\0") == "trailing_data"


def test_it_rejects_bad_magic():
    assert code_of(b"PK\x03\x04" + encode(weights())[4:]) == "bad_magic"


def test_it_rejects_an_unknown_format_version():
    blob = bytearray(encode(weights()))
    blob[4] = 2
    assert code_of(bytes(blob)) == "bad_version"


def test_it_rejects_a_header_length_above_the_cap_without_reading_it():
    blob = forge(header(), b"", header_len=codec.MAX_HEADER_BYTES + 1)
    assert code_of(blob) == "header_too_large"


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"\xff\xfe", b"[]", b'{"kind": "full"}', b'{"a": 1, "a": 2}', b"[" * 100_000],
    ids=["syntax", "utf8", "not-object", "missing-keys", "duplicate-keys", "deep-nesting"],
)
def test_it_rejects_garbage_header_json(raw):
    blob = struct.pack("<4sBI", b"FEDT", 1, len(raw)) + raw
    assert code_of(blob) == "bad_header"


@pytest.mark.parametrize(
    "entry",
    [
        tensor_entry(dtype="object"),
        tensor_entry(dtype="int64", encoding="float32"),
        tensor_entry(dtype="float32", encoding="raw"),
        tensor_entry(shape=(-1, 4), nbytes=16),
        tensor_entry(shape=(4,), nbytes=15),
        {**tensor_entry(), "extra": 1},
        tensor_entry(dtype=["float32"]),
    ],
    ids=["object-dtype", "int-as-float", "float-as-raw", "negative-dim", "wrong-nbytes", "unknown-key", "list-dtype"],
)
def test_it_rejects_invalid_tensor_entries(entry):
    assert code_of(forge(header(entry), b"\0" * 16)) == "bad_header"


def test_it_rejects_duplicate_tensor_names():
    blob = forge(header(tensor_entry(), tensor_entry()), b"\0" * 32)
    assert code_of(blob) == "bad_header"


def test_it_rejects_bool_bytes_other_than_zero_and_one():
    entry = {**tensor_entry(dtype="bool", encoding="raw", shape=(2,)), "nbytes": 2}
    assert code_of(forge(header(entry), b"\x01\x07")) == "bad_payload"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_encode_refuses_non_finite_values(value):
    with pytest.raises(CodecError) as info:
        encode({"w": np.array([1.0, value], np.float32)})
    assert info.value.code == "non_finite"


def test_encode_refuses_values_that_overflow_float16():
    with pytest.raises(CodecError) as info:
        encode({"w": np.array([1e5], np.float32)}, encoding="float16")
    assert info.value.code == "non_finite"


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_decode_rejects_non_finite_values_in_the_payload(value):
    payload = np.array([1.0, value, 0.0, 0.0], "<f4").tobytes()
    assert code_of(forge(header(tensor_entry()), payload)) == "non_finite"


def test_encode_rejects_object_arrays():
    with pytest.raises(CodecError) as info:
        encode({"w": np.array([object()])})
    assert info.value.code == "bad_dtype"


# ---------------------------------------------------------------- helpers


def test_peek_header_describes_tensors_without_decoding_the_payload():
    blob = encode(weights(), encoding="float16")
    corrupt_payload = blob[:-8] + b"\0" * 8
    names = [t["name"] for t in codec.peek_header(corrupt_payload)["tensors"]]
    assert names == list(weights())


def test_to_json_output_can_be_serialised_with_json_dumps():
    decoded = decode(encode(weights(n=64), meta={"round": 1}))
    rendered = json.loads(json.dumps(codec.to_json(decoded)))
    assert rendered["meta"] == {"round": 1}
    assert rendered["tensors"][2] == {
        "name": "bn.num_batches_tracked", "dtype": "int64", "shape": [], "values": 123456789012,
    }
    assert len(rendered["tensors"][0]["values"]) == 4


# ---------------------------------------------------------------- properties

names = st.text(alphabet="abcdefgh._0123", min_size=1, max_size=8)
small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
float_arrays = hnp.arrays(np.float32, small_shapes, elements=st.floats(-6e4, 6e4, width=32))
int_arrays = hnp.arrays(np.int64, small_shapes)
tensor_dicts = st.dictionaries(names, st.one_of(float_arrays, int_arrays), max_size=5)


def _within_bound(x: np.ndarray, y: np.ndarray, encoding: str) -> bool:
    if x.dtype != np.float32:
        return np.array_equal(x, y)
    if encoding in codec.DELTA_ONLY_ENCODINGS:
        return quantized_within_bound(x, y, encoding)
    # Relative bound for normal values plus half the smallest subnormal step of the encoding.
    rel, absolute = {"float32": (0, 0), "bfloat16": (2.0**-8, 2.0**-133), "float16": (2.0**-11, 2.0**-25)}[encoding]
    return bool(np.all(np.abs(y - x) <= rel * np.abs(x) + absolute))


@SETTINGS
@given(arrays=tensor_dicts, encoding=st.sampled_from(codec.ENCODINGS), shuffle=st.booleans())
# 60 / (120/127) is a tie at 63.5: the error is half a step plus float32 rounding of 60.47.
@example(arrays={"x": np.array([60.0, 120.0], np.float32)}, encoding="int8", shuffle=False)
def test_random_tensor_dicts_round_trip_within_the_encoding_bound(arrays, encoding, shuffle):
    blob = encode(arrays, encoding=encoding, shuffle=shuffle, kind="delta", base_version=1)
    decoded = decode(blob, manifest=manifest_of(arrays))
    assert list(decoded.arrays) == list(arrays)
    for name, a in arrays.items():
        assert decoded.arrays[name].shape == a.shape
        assert _within_bound(a, decoded.arrays[name], encoding)


def _decode_or_codec_error(data: bytes) -> None:
    try:
        decode(data, max_bytes=1 << 20)
    except CodecError:
        pass


@SETTINGS
@given(data=st.binary(max_size=256))
def test_random_bytes_only_ever_raise_codec_error(data):
    _decode_or_codec_error(data)
    _decode_or_codec_error(b"FEDT\x01" + data)


_VALID = encode(weights(n=64), encoding="bfloat16", meta={"k": [1, 2]})


@SETTINGS
@given(
    edits=st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.integers(0, len(_VALID)),
    tail=st.binary(max_size=8),
)
def test_mutated_valid_blobs_only_ever_raise_codec_error(edits, cut, tail):
    blob = bytearray(_VALID)
    for pos, byte in edits:
        blob[pos] = byte
    _decode_or_codec_error(bytes(blob))
    _decode_or_codec_error(bytes(blob[:cut]) + tail)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


@SETTINGS
@given(
    field=st.sampled_from(["kind", "base_version", "meta", "tensors", "name", "dtype", "shape", "encoding",
                           "shuffle", "nbytes", "extra"]),
    value=json_values,
)
def test_well_formed_json_with_wrong_field_values_only_ever_raises_codec_error(field, value):
    prefix_len = 9 + struct.unpack_from("<I", _VALID, 5)[0]
    forged = codec.peek_header(_VALID)
    target = forged if field in ("kind", "base_version", "meta", "tensors") else forged["tensors"][0]
    target[field] = value
    raw = json.dumps(forged).encode()
    _decode_or_codec_error(struct.pack("<4sBI", b"FEDT", 1, len(raw)) + raw + _VALID[prefix_len:])


def test_a_lazily_decoded_blob_gives_the_same_tensors_and_checks_its_kind_up_front():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    blob = codec.encode({"a": a, "n": np.array(4, np.int64)}, encoding="float32", kind="delta", base_version=3)
    lazy = codec.decode_lazily(blob, kind="delta")
    assert list(lazy) == ["a", "n"] and len(lazy) == 2
    np.testing.assert_array_equal(lazy["a"], a)
    assert lazy["n"] == 4 and lazy["n"].dtype == np.int64
    with pytest.raises(codec.CodecError):
        codec.decode_lazily(blob, kind="full")
