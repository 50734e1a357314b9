"""Everything a device sends besides its tensors is range-checked before use (issue 12).

Property tests: each parser of device input (rounds.device_input, the metric mean) answers any
input with a clean value or its documented 4xx, never anything else. API tests: each concrete
case the issue lists, and a run whose hostile device sends the worst metadata it can, which still
closes its rounds.
"""
import io
import json
import math

import numpy as np
import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.conf import settings as django_settings
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings, strategies as st
from rest_framework.test import APIClient

from clients.models import Client
from fedcore import codec
from fedcore.aggregation import weighted_metric
from fedplatform.asgi import http_app
from fedplatform.errors import Invalid, TooLarge
from fedplatform.limits import MAX_METRIC_ABS, MAX_METRICS, MAX_METRICS_HEADER, MAX_NUM_EXAMPLES
from rounds import blobs, device_input, protocol, runtask
from rounds.lifecycle import run_configure
from rounds.models import Round, RoundStatus, Update

from protocol_helpers import Device, delta_body

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Text a device might put in a header: any Unicode, Unicode digits, ASCII digits, long runs.
ODD_DIGITS = "0123456789²³¹٣۴߅୭༣፩៦᠓１"
header_text = st.one_of(
    st.none(),
    st.text(),
    st.text(alphabet=ODD_DIGITS, max_size=30),
    st.from_regex(r"[0-9]{1,25}", fullmatch=True),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=1, max_value=5000).map(lambda n: "9" * n),
)


# ---------------------------------------------------------------- properties of the parsers


@PROPERTY
@given(raw=header_text, registered=st.integers(min_value=0, max_value=MAX_NUM_EXAMPLES))
def test_num_examples_is_a_positive_ascii_count_within_the_registered_one_or_a_400(raw, registered):
    try:
        value = device_input.parse_num_examples(raw, registered=registered)
    except Invalid as exc:
        assert exc.http_status == 400 and exc.code in {"bad_num_examples", "too_many_examples"}
        return
    assert raw.isascii() and raw.isdigit() and int(raw) == value
    assert 1 <= value <= registered


json_scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=20),
    st.integers(min_value=-(10**40), max_value=10**40), st.floats(allow_nan=True, allow_infinity=True),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
metric_keys = st.one_of(st.from_regex(r"[A-Za-z0-9_.\-]{1,70}", fullmatch=True), st.text(max_size=70))
metric_numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, MAX_METRIC_ABS, 10**400]),
)
metrics_text = st.one_of(
    header_text,
    json_values.map(json.dumps),
    st.dictionaries(metric_keys, metric_numbers, max_size=40).map(json.dumps),
    st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n),
    st.integers(min_value=1, max_value=2000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)


@PROPERTY
@given(raw=metrics_text)
def test_metrics_are_a_bounded_flat_object_of_finite_numbers_or_a_400(raw):
    try:
        metrics = device_input.parse_metrics(raw)
    except Invalid as exc:
        assert exc.http_status == 400 and exc.code == "bad_metrics"
        return
    assert isinstance(metrics, dict) and len(metrics) <= MAX_METRICS
    assert raw is None or len(raw) <= MAX_METRICS_HEADER
    for key, value in metrics.items():
        assert isinstance(key, str) and key.isascii() and 0 < len(key) <= 64
        assert type(value) in (int, float) and math.isfinite(value) and abs(value) <= MAX_METRIC_ABS
    json.dumps(metrics, allow_nan=False)


@PROPERTY
@given(raw=header_text)
def test_query_integers_are_ascii_digits_or_a_400(raw):
    try:
        value = device_input.parse_query_int(raw, name="version", code="bad_version")
        wait = device_input.parse_wait(raw, longest=30)
    except Invalid as exc:
        assert exc.http_status == 400 and exc.code in {"bad_version", "bad_wait"}
        return
    assert (value is None) == (raw is None)
    assert value is None or (raw.isascii() and raw.isdigit() and len(raw) <= 18 and int(raw) == value)
    assert 0 <= wait <= 30


@PROPERTY
@given(declared=header_text, body=st.binary(max_size=300), limit=st.integers(min_value=0, max_value=200))
def test_a_body_is_read_within_its_limit_or_refused(declared, body, limit):
    try:
        data = device_input.read_body(io.BytesIO(body), declared=declared, limit=limit)
    except (Invalid, TooLarge) as exc:
        assert exc.code in {"empty_body", "too_large", "bad_content_length"}
        return
    assert data == body and 0 < len(data) <= limit


@PROPERTY
@given(pairs=st.lists(st.tuples(st.one_of(metric_numbers, st.none(), st.text(max_size=3)),
                                st.one_of(metric_numbers, st.none())), max_size=8))
def test_the_mean_of_device_metrics_is_finite_or_none_and_never_raises(pairs):
    mean = weighted_metric(pairs)
    assert mean is None or (isinstance(mean, float) and math.isfinite(mean))


TINY_MODEL = {
    "conv.weight": np.full((4, 3), 0.5, np.float32), "conv.bias": np.zeros(4, np.float32),
    "bn.running_var": np.ones(4, np.float32), "bn.num_batches_tracked": np.array(3, np.int64),
}
BUFFERS = frozenset({"bn.running_var", "bn.num_batches_tracked"})


@settings(max_examples=100, deadline=None)
@given(asked=st.sampled_from(codec.ENCODINGS), sent=st.sampled_from(codec.ENCODINGS), buffers_exact=st.booleans())
def test_an_upload_passes_the_encoding_check_exactly_when_it_travels_as_the_round_asked(asked, sent, buffers_exact):
    """As the worker sends it (the model's buffers lossless) or as a client that does not know
    the buffers does (everything in the round's encoding)."""
    manifest = codec.manifest_of(TINY_MODEL)
    blob = codec.encode(TINY_MODEL, encoding=sent, kind="delta", base_version=0, exact=BUFFERS if buffers_exact else ())
    tensors = codec.peek_header(blob)["tensors"]

    def fits(t: dict) -> bool:
        layout = manifest[t["name"]]
        return t["encoding"] == codec.wire_encoding(asked, *layout) or (
            t["name"] in BUFFERS and t["encoding"] == codec.wire_encoding(asked, *layout, exact=True))

    try:
        device_input.check_upload_encoding(tensors, manifest, asked, lossless=BUFFERS)
    except Invalid as exc:
        assert exc.code == "wrong_encoding" and not all(fits(t) for t in tensors)
    else:
        assert all(fits(t) for t in tensors)
        assert sent == asked or (codec.wire_encoding(sent, "float32", (4, 3))
                                 == codec.wire_encoding(asked, "float32", (4, 3)))


def test_an_upload_limit_follows_the_model_and_fits_every_valid_upload_of_it(run):
    manifest = runtask.run_manifest(run)
    limit = device_input.upload_limit(manifest, cap=1 << 40)
    assert codec.float32_size(manifest) < limit < codec.float32_size(manifest) * 1.1
    assert device_input.upload_limit(manifest, cap=1000) == 1000
    noise = {name: np.random.default_rng(0).standard_normal(shape).astype(dtype) if dtype.startswith("float")
             else np.zeros(shape, dtype) for name, (dtype, shape) in manifest.items()}
    for encoding in codec.ENCODINGS:  # incompressible noise: the largest a valid upload gets
        assert len(codec.encode(noise, encoding=encoding, kind="delta", base_version=0)) <= limit


# ---------------------------------------------------------------- the API, case by case

pytestmark = pytest.mark.django_db


@pytest.fixture
def selected(run, device):
    """Alpha (100 examples) holds a task of an open round; beta is the round's other client."""
    alpha, beta = device("alpha", 100), device("beta", 100)
    task = alpha.task().json()
    return alpha, beta, task


def upload(dev: Device, task: dict, body: bytes, **headers):
    meta = {"HTTP_X_NUM_EXAMPLES": "100", "HTTP_X_METRICS": "{}"}
    meta.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    meta = {k: v for k, v in meta.items() if v is not None}
    return dev.api.generic("PUT", task["upload_url"], body, content_type=codec.CONTENT_TYPE, **meta)


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == code and response.json()["detail"]


def test_an_empty_body_is_a_clear_400(selected):
    alpha, _, task = selected
    refused(upload(alpha, task, b""), 400, "empty_body")


@pytest.mark.parametrize(
    "claim, code",
    [("²", "bad_num_examples"), ("9" * 5000, "bad_num_examples"), (str(10**12), "bad_num_examples"),
     ("101", "too_many_examples"), ("0", "bad_num_examples"), ("-5", "bad_num_examples"),
     ("1e3", "bad_num_examples"), (" 100", "bad_num_examples"), ("", "bad_num_examples"), (None, "bad_num_examples")],
)
def test_an_example_count_that_is_not_1_to_the_registered_count_is_refused(run, selected, claim, code):
    alpha, _, task = selected
    refused(upload(alpha, task, delta_body(run, task, 0.01)[0], X_NUM_EXAMPLES=claim), 400, code)


@pytest.mark.parametrize(
    "metrics",
    [
        '{"train_loss": [[[[1]]]]}', "[" * 4000, '{"a":' * 1000 + "1" + "}" * 1000,
        '{"train_loss": 1e308}', '{"download_bytes": ' + "9" * 400 + "}", '{"train_loss": NaN}',
        '{"train_loss": Infinity}', '{"train_loss": 1e999}', '{"train_loss": "0.1"}', '{"train_loss": true}',
        '{"train_loss": null}', json.dumps({f"m{i}": 1 for i in range(MAX_METRICS + 1)}),
        json.dumps({"k" * 65: 1}), '{"<script>": 1}', '{"a": 1, "a": 2}', "[1, 2]", "0.5", "{",
        json.dumps({"note": 1, "pad": "x" * MAX_METRICS_HEADER}),
    ],
)
def test_metrics_that_are_not_a_bounded_flat_object_of_finite_numbers_are_refused(run, selected, metrics):
    alpha, _, task = selected
    refused(upload(alpha, task, delta_body(run, task, 0.01)[0], X_METRICS=metrics), 400, "bad_metrics")
    assert not Update.objects.exists()


def test_a_float32_upload_in_an_int4_round_is_refused(run, selected):
    alpha, _, task = selected
    assert task["upload_encoding"] == "int4"
    refused(upload(alpha, task, delta_body(run, task, 0.01, encoding="float32")[0]), 400, "wrong_encoding")


def test_an_int4_upload_in_a_float32_round_is_refused(run, device):
    run_configure(run=run, changes={"upload_encoding": "float32"}, author="test")
    alpha, _ = device("alpha"), device("beta")
    task = alpha.task().json()
    refused(upload(alpha, task, delta_body(run, task, 0.01, encoding="int4")[0]), 400, "wrong_encoding")


def upload_limit_of(task: dict) -> int:
    return protocol.round_upload_limit(task["round"], cap=django_settings.FEDPLATFORM["MAX_UPLOAD_BYTES"])


def test_a_declared_length_over_the_models_limit_is_refused_with_413(run, selected):
    alpha, _, task = selected
    limit = upload_limit_of(task)
    assert limit < django_settings.FEDPLATFORM["MAX_UPLOAD_BYTES"]  # the model's, not the global cap
    refused(upload(alpha, task, b"\0" * (limit + 1)), 413, "too_large")


def test_a_refused_upload_loses_nothing_the_same_update_is_then_accepted(run, selected):
    alpha, _, task = selected
    body = delta_body(run, task, 0.01)[0]
    refused(upload(alpha, task, body, X_NUM_EXAMPLES="²"), 400, "bad_num_examples")
    refused(upload(alpha, task, body, X_METRICS="[[["), 400, "bad_metrics")
    assert upload(alpha, task, body).status_code == 201


@pytest.mark.parametrize("count", [0, -1, MAX_NUM_EXAMPLES + 1, "²", "9" * 5000, 1e308, True, None])
def test_registration_needs_a_positive_bounded_example_count(run, count):
    response = APIClient().post("/api/v1/clients/", {"name": "x", "run": run.pk, "num_examples": count}, format="json")
    refused(response, 400, "invalid")
    assert not Client.objects.exists()


def test_registration_with_an_example_count_of_5000_digits_is_a_400(run):
    body = '{"name": "x", "run": %d, "num_examples": %s}' % (run.pk, "9" * 5000)
    refused(APIClient().post("/api/v1/clients/", body, content_type="application/json"), 400, "parse_error")


@pytest.mark.parametrize("query, code", [("version=%C2%B9", "bad_version"), ("version=", "bad_version"),
                                         ("version=" + "9" * 30, "bad_version"), ("version=-1", "bad_version"),
                                         ("base=%C2%B2", "bad_base"), ("version=0&base=null", "bad_base")])
def test_a_malformed_model_query_is_a_400(run, device, query, code):
    dev = device("alpha")
    refused(dev.api.get(f"/api/v1/runs/{run.pk}/model/?{query}"), 400, code)


@pytest.mark.parametrize("wait", ["garbage", "", "%C2%B9", "-1", "1.5", "9" * 20])
def test_a_malformed_wait_is_a_400(device, wait):
    dev = device("alpha")
    refused(dev.api.get(f"/api/v1/clients/{dev.id}/task/?wait={wait}"), 400, "bad_wait")


# ---------------------------------------------------------------- bodies through the ASGI server


def asgi_put(path: str, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, bytes]:
    """One request through the server's ASGI application, the body sent as ``chunks``."""

    async def exchange():
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "PUT", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"testserver")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        }
        app = ApplicationCommunicator(http_app, scope)
        for i, chunk in enumerate(chunks):
            await app.send_input({"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1})
        start = await app.receive_output(30)
        body = b""
        while True:
            message = await app.receive_output(30)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await app.wait(5)
        return start["status"], body

    return async_to_sync(exchange)()


def device_headers(dev: Device) -> dict[str, str]:
    return {"Authorization": f"Token {dev.token}", "Content-Type": codec.CONTENT_TYPE,
            "X-Num-Examples": "100", "X-Metrics": "{}"}


@pytest.mark.django_db(transaction=True)  # the ASGI handler works on its own threads' connections
def test_a_chunked_upload_without_content_length_is_accepted(run, selected):
    alpha, _, task = selected
    body = delta_body(run, task, 0.01)[0]
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    status, answer = asgi_put(task["upload_url"], device_headers(alpha), chunks)
    assert status == 201, answer
    assert Update.objects.get(client_id=alpha.id).sha256 == blobs.sha256(body)


@pytest.mark.django_db(transaction=True)
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(run, selected):
    alpha, _, task = selected
    headers = {**device_headers(alpha), "Content-Length": str(upload_limit_of(task) + 1)}
    status, answer = asgi_put(task["upload_url"], headers, [])  # not one body byte is ever sent
    assert status == 413 and json.loads(answer)["code"] == "too_large"


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_past_the_limit_is_cut_off_with_413(run, selected):
    alpha, _, task = selected
    limit = upload_limit_of(task)
    status, answer = asgi_put(task["upload_url"], device_headers(alpha),
                              [b"\0" * (limit // 2 + 1)] * 2 + [b"never read"])
    assert status == 413 and json.loads(answer)["code"] == "too_large"
    assert not Update.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_json_body_over_the_request_limit_is_refused_before_it_is_read(run, settings):
    settings.FEDPLATFORM = {**settings.FEDPLATFORM, "MAX_REQUEST_BYTES": 1000}
    status, answer = asgi_put("/api/v1/clients/", {"Content-Type": "application/json", "Content-Length": "1001"}, [])
    assert status == 413 and json.loads(answer)["code"] == "too_large"


# ---------------------------------------------------------------- a hostile device and its run

WORST_METRICS = json.dumps({
    **{name: MAX_METRIC_ABS for name in ("train_loss", "eval_examples", "download_bytes", "train_seconds")},
    "eval_accuracy": -MAX_METRIC_ABS, "eval_loss": MAX_METRIC_ABS, "train_accuracy": -MAX_METRIC_ABS,
    **{f"x{i}": 5e-324 for i in range(MAX_METRICS - 7)},
}, separators=(",", ":"))

HOSTILE_HEADERS = [
    {"X_NUM_EXAMPLES": "²"}, {"X_NUM_EXAMPLES": "9" * 5000}, {"X_NUM_EXAMPLES": str(10**12)},
    {"X_NUM_EXAMPLES": str(MAX_NUM_EXAMPLES + 1)}, {"X_METRICS": "[" * 4000}, {"X_METRICS": '{"a": 1e308}'},
    {"X_METRICS": '{"a": ' + "1" * 400 + "}"}, {"X_METRICS": '{"a": NaN}'}, {"X_METRICS": '{"a": {"b": 1}}'},
]


def test_a_run_whose_device_sends_the_worst_metadata_it_can_still_closes_its_rounds(run, device):
    honest, hostile = device("honest", 100), device("hostile", MAX_NUM_EXAMPLES)
    task, hostile_task = honest.task().json(), hostile.task().json()
    body = delta_body(run, hostile_task, 0.01)[0]
    for headers in HOSTILE_HEADERS:
        response = upload(hostile, hostile_task, body, **{"X_NUM_EXAMPLES": str(MAX_NUM_EXAMPLES), **headers})
        assert 400 <= response.status_code < 500 and response.json()["code"], headers
    for junk in (b"", b"\x80\x04pickle", delta_body(run, hostile_task, 0.01, encoding="float32")[0]):
        assert 400 <= upload(hostile, hostile_task, junk, X_NUM_EXAMPLES=str(MAX_NUM_EXAMPLES)).status_code < 500
    assert not Update.objects.exists()

    # The worst it may send: the largest weight its registration allows, every metric at a bound.
    answer = upload(hostile, hostile_task, body, X_NUM_EXAMPLES=str(MAX_NUM_EXAMPLES), X_METRICS=WORST_METRICS)
    assert answer.status_code == 201
    assert upload(honest, task, delta_body(run, task, -0.01)[0]).status_code == 201

    rnd = Round.objects.get(pk=task["round"])
    assert rnd.status == RoundStatus.CLOSED and rnd.result_version.number == 1
    json.dumps(rnd.metrics, allow_nan=False)  # finite JSON, whatever was reported
    call_command("sweep")
    honest.task(), hostile.task()
    assert Round.objects.get(run=run, number=2).status == RoundStatus.OPEN


def test_a_round_closes_even_over_unbounded_metrics_recorded_before_the_bounds(run, device):
    """Rows written by an older server (or a bug) cannot wedge the close either."""
    alpha, beta = device("alpha", 100), device("beta", 100)
    tasks = {dev: dev.task().json() for dev in (alpha, beta)}
    unbounded = {"train_loss": 1e308, "eval_accuracy": 1e308, "eval_examples": 1e308,
                 "download_bytes": 10**400, "train_accuracy": -1e308}
    for dev, task in tasks.items():
        protocol.update_accept(
            round_id=task["round"], client=Client.objects.get(pk=dev.id), body=delta_body(run, task, 0.01)[0],
            num_examples=100, metrics=unbounded, max_bytes=1 << 30,
        )
    rnd = Round.objects.get(pk=tasks[alpha]["round"])
    assert rnd.status == RoundStatus.CLOSED
    json.dumps(rnd.metrics, allow_nan=False)
    assert rnd.metrics["train_loss"] is None and rnd.metrics["bytes_down"] == 0
