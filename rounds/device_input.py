"""Parsers for what a device sends besides its update's tensors (the codec checks those).

Each function takes the raw value (a header, a query parameter, a body stream), returns a clean
value within the bounds of ``fedplatform.limits``, or raises ``Invalid`` / ``TooLarge`` (a 4xx
with a stable code). Nothing else escapes them, whatever the input: tests/server/test_device_input.py
checks that with Hypothesis. No database, no settings: the callers pass what they know.
"""
from __future__ import annotations

import json
import math
import re
from typing import IO, Any

from fedcore import codec
from fedplatform.errors import Invalid, TooLarge
from fedplatform.limits import (
    MAX_ID_DIGITS,
    MAX_METRIC_ABS,
    MAX_METRIC_KEY,
    MAX_METRICS,
    MAX_METRICS_HEADER,
    MAX_NUM_EXAMPLES,
    MAX_WAIT_DIGITS,
)

_DIGITS = re.compile(r"[0-9]+\Z")  # ASCII only: str.isdigit() also accepts '²' and '٣'
_METRIC_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,%d}\Z" % MAX_METRIC_KEY)
_MAX_METRIC_INT_CHARS = len(str(int(MAX_METRIC_ABS))) + 1  # digits and a sign


def _digits(raw: str, max_digits: int) -> int | None:
    """The value of 1..max_digits ASCII digits, else None (checked before int() ever runs)."""
    if not isinstance(raw, str) or not 0 < len(raw) <= max_digits or not _DIGITS.match(raw):
        return None
    return int(raw)


def parse_num_examples(raw: str | None, *, registered: int) -> int:
    """``X-Num-Examples``: the update's FedAvg weight, 1 to the count the client registered.

    An over-claim is refused rather than clamped: a device that says more than it has is either
    misconfigured or lying, and either way it should hear so instead of being silently reweighted.
    """
    value = _digits(raw or "", len(str(MAX_NUM_EXAMPLES)))
    if value is None or value < 1:
        raise Invalid(
            f"X-Num-Examples must be a positive integer of ASCII digits, at most {MAX_NUM_EXAMPLES}",
            "bad_num_examples",
        )
    if value > registered:
        raise Invalid(
            f"X-Num-Examples is {value}, but this client registered {registered} examples; "
            "register again with the real count",
            "too_many_examples",
        )
    return value


def _nested(text: str) -> bool:
    """Whether JSON text opens an array or object inside another, found without parsing it (a
    parser recurses once per level, and ``[[[[...`` of 4 KiB is past Python's recursion limit)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > 1:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _bad_metrics(detail: str) -> Invalid:
    return Invalid(f"X-Metrics: {detail}", "bad_metrics")


def _metric_int(text: str) -> int:
    if len(text) > _MAX_METRIC_INT_CHARS:  # before int(): a 4,000-digit literal costs real CPU
        raise _bad_metrics(f"numbers must be within ±{MAX_METRIC_ABS:g}")
    return int(text)


def _metric_constant(text: str) -> float:
    raise _bad_metrics(f"{text} is not a finite number")


def _metric_pairs(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    if len(pairs) > MAX_METRICS:
        raise _bad_metrics(f"at most {MAX_METRICS} metrics")
    if len({key for key, _ in pairs}) != len(pairs):
        raise _bad_metrics("a metric appears twice")
    return dict(pairs)


def parse_metrics(raw: str | None) -> dict[str, int | float]:
    """``X-Metrics``: a flat JSON object of finite numbers (see ``fedplatform.limits``)."""
    if raw is None or raw == "":
        return {}
    if len(raw) > MAX_METRICS_HEADER:
        raise _bad_metrics(f"at most {MAX_METRICS_HEADER} characters")
    if _nested(raw):
        raise _bad_metrics("must be a flat object of numbers, nothing nested")
    try:
        value = json.loads(
            raw, parse_int=_metric_int, parse_constant=_metric_constant, object_pairs_hook=_metric_pairs
        )
    except ValueError as exc:  # JSONDecodeError, and a surrogate the decoder refuses
        raise _bad_metrics(f"not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise _bad_metrics("must be a JSON object")
    clean: dict[str, int | float] = {}
    for key, item in value.items():
        if not _METRIC_KEY.match(key):
            raise _bad_metrics(f"keys are 1 to {MAX_METRIC_KEY} ASCII letters, digits, '_', '.' or '-'")
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise _bad_metrics(f"{key} must be a number")
        if not (math.isfinite(item) and abs(item) <= MAX_METRIC_ABS):
            raise _bad_metrics(f"{key} must be finite and within ±{MAX_METRIC_ABS:g}")
        clean[key] = item
    return clean


def parse_query_int(raw: str | None, *, name: str, code: str, max_digits: int = MAX_ID_DIGITS) -> int | None:
    """A non-negative integer query parameter (``?version=``, ``?base=``), or None when absent."""
    if raw is None:
        return None
    value = _digits(raw, max_digits)
    if value is None:
        raise Invalid(f"{name} must be a non-negative integer of at most {max_digits} ASCII digits", code)
    return value


def parse_wait(raw: str | None, *, longest: float) -> float:
    """``?wait=`` seconds for a long-poll, clamped to ``longest``; absent: 0 (answer at once)."""
    value = parse_query_int(raw, name="wait", code="bad_wait", max_digits=MAX_WAIT_DIGITS)
    return 0.0 if value is None else min(float(value), longest)


def upload_limit(manifest: codec.Manifest, cap: int) -> int:
    """The largest body a valid upload for this model can be, and never more than ``cap``.

    Every encoding's payload is at most the model's float32 size plus a few bytes a tensor (one
    scale and an index header on a scalar); zstd adds under 1/256 on incompressible bytes; the
    JSON header names each tensor once. Anything larger cannot be a valid update of this model,
    so it is refused from its declared length, before it is read.
    """
    payload = codec.float32_size(manifest) + 16 * len(manifest)
    header = 64 * 1024 + sum(len(name) + 512 for name in manifest)
    return min(cap, payload + payload // 128 + header)


def read_body(stream: IO[bytes], *, declared: str | None, limit: int) -> bytes:
    """An upload's body, read through a bound: a declared ``Content-Length`` over ``limit`` is
    refused before a byte is read, and a body without one (chunked) is read to ``limit`` + 1 at
    most, to tell "at the limit" from "over it"."""
    if declared not in (None, ""):
        length = _digits(declared, 20)
        if length is None:
            raise Invalid("Content-Length must be ASCII digits", "bad_content_length")
        if length > limit:
            raise TooLarge(f"body of {length} bytes exceeds this upload's limit of {limit}", "too_large")
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"body exceeds this upload's limit of {limit} bytes", "too_large")
    if not data:
        raise Invalid("the body is empty: send the update as a codec blob", "empty_body")
    return data


def check_upload_encoding(
    tensors: list[dict], manifest: codec.Manifest, encoding: str, *, lossless: frozenset[str] = frozenset()
) -> None:
    """Every tensor of an upload travels in the encoding its round asked for, as encode() writes
    it: a device may not upload float32 into an int4 round, nor int4 into a float32 one. Integer
    tensors travel raw. The model's buffers (``lossless``: BatchNorm statistics) may also travel
    as float32, as the worker sends them; a client that does not know them sends the round's."""
    for tensor in tensors:
        layout = manifest.get(tensor["name"])
        if layout is None:
            continue  # the manifest check names it (manifest_mismatch)
        allowed = {codec.wire_encoding(encoding, *layout)}
        if tensor["name"] in lossless:
            allowed.add(codec.wire_encoding(encoding, *layout, exact=True))
        if tensor["encoding"] not in allowed:
            raise Invalid(
                f"this round takes {encoding} updates: tensor {tensor['name']!r} must travel as "
                f"{' or '.join(sorted(allowed))}, not {tensor['encoding']}",
                "wrong_encoding",
            )
