"""The worker's side of delta downloads and of error feedback on lossy uploads, over real HTTP."""
from __future__ import annotations

import io
from urllib.parse import parse_qs

import numpy as np
import pytest
from worker_stubhttp import Reply, error

from fedcore import codec
from fedcore.codec import CONTENT_TYPE, decode, encode, manifest_of
from fedcore.feedback import ErrorFeedback
from fedcore.state import subtract
from worker.agent import Agent
from worker.config import WorkerConfig
from worker.log import Log
from worker.modelcache import MAX_LOSSY_DELTAS, ModelCache
from worker.session import ApiSession
from worker.task import Task

MODEL = "/api/v1/runs/1/model/"


def versions(count: int) -> list[dict[str, np.ndarray]]:
    """Global models as FedAvg makes them: each is the last plus a float32 mean delta."""
    rng = np.random.default_rng(0)
    models = [{"w": rng.standard_normal((8, 16)).astype(np.float32), "n": np.array(5, np.int64)}]
    for _ in range(count - 1):
        last = models[-1]
        step = (rng.standard_normal((8, 16)) * 1e-2).astype(np.float32)
        models.append({"w": last["w"] + step, "n": last["n"] + 1})
    return models


class ModelServer:
    """Serves versions: the full float32 model, or with ``base`` the delta in ``encoding``."""

    def __init__(self, stub_server, models, encoding: str = "float32") -> None:
        self.models, self.encoding = models, encoding
        self.server = stub_server({("GET", MODEL): self.answer})

    def answer(self, request) -> Reply:
        query = {k: int(v[0]) for k, v in parse_qs(request.query).items()}
        version, base = query["version"], query.get("base")
        headers = {"Content-Type": CONTENT_TYPE, "X-Model-Version": str(version), "ETag": f'"{version}"'}
        if base is None:
            return Reply(200, encode(self.models[version], encoding="float32", kind="full"), headers)
        delta = subtract(self.models[version], self.models[base])
        return Reply(200, encode(delta, encoding=self.encoding, kind="delta", base_version=base), headers)

    def queries(self) -> list[dict[str, list[str]]]:
        return [parse_qs(r.query) for r in self.server.requests]


def cache_for(server: ModelServer) -> ModelCache:
    return ModelCache(ApiSession(server.server.url, max_retry_seconds=1))


def fetch(cache: ModelCache, version: int, models) -> dict[str, np.ndarray]:
    return cache.fetch(f"{MODEL}?version={version}", version, manifest=manifest_of(models[0]))


def test_the_next_version_is_asked_for_as_a_delta_from_the_held_one(stub_server):
    models = versions(3)
    server = ModelServer(stub_server, models)
    cache = cache_for(server)
    fetch(cache, 0, models)
    fetch(cache, 2, models)
    assert "base" not in server.queries()[0]
    assert server.queries()[1]["base"] == ["0"] and cache.last_was_delta


def test_a_float32_delta_rebuilds_the_servers_version_bit_for_bit(stub_server):
    models = versions(4)
    server = ModelServer(stub_server, models)
    cache = cache_for(server)
    fetch(cache, 0, models)
    for version in (1, 2, 3):
        got = fetch(cache, version, models)
        for name, expected in models[version].items():
            assert got[name].dtype == expected.dtype
            assert got[name].tobytes() == expected.tobytes()
    assert cache.lossy_deltas == 0


def test_after_too_many_lossy_deltas_the_worker_fetches_the_full_model_again(stub_server):
    models = versions(MAX_LOSSY_DELTAS + 3)
    server = ModelServer(stub_server, models, encoding="int8")
    cache = cache_for(server)
    for version in range(MAX_LOSSY_DELTAS + 2):
        got = fetch(cache, version, models)
        assert np.allclose(got["w"], models[version]["w"], atol=1e-3)
    bases = ["base" in q for q in server.queries()]
    assert bases == [False] + [True] * MAX_LOSSY_DELTAS + [False]
    assert cache.lossy_deltas == 0


def test_a_delta_from_a_version_the_worker_does_not_hold_is_refused_and_the_cache_dropped(stub_server):
    models = versions(3)
    server = ModelServer(stub_server, models)
    cache = cache_for(server)
    fetch(cache, 1, models)
    # A confused server (or proxy) answers the request based on 1 with a delta from 0.
    server.server.routes[("GET", MODEL)] = lambda r: Reply(
        200, encode(subtract(models[2], models[0]), encoding="float32", kind="delta", base_version=0),
        {"Content-Type": CONTENT_TYPE, "X-Model-Version": "2"})
    with pytest.raises(ValueError, match="delta from version 0"):
        fetch(cache, 2, models)
    assert cache.version is None  # the next try asks for the full model


# ---------------------------------------------------------------- error feedback in the agent

TASK = {
    "round": 12, "round_number": 3, "run": 1, "task": "fedcore.tasks.vision:image_classification",
    "task_config": {"arch": "cnn", "dataset": "fashion-mnist"},
    "base_version": 2, "model_url": f"{MODEL}?version=2", "upload_url": "/api/v1/rounds/12/updates/5/",
    "upload_encoding": "topk1-int8", "seed": 3,
    "hyperparameters": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.05},
}
UPLOAD = ("PUT", "/api/v1/rounds/12/updates/5/")


def agent_for(server) -> Agent:
    config = WorkerConfig(server=server.url, name="ef", max_retry_seconds=1)
    return Agent(config, log=Log("ef", stream=io.StringIO()))


def delta(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": (rng.standard_normal((20, 30)) * 1e-2).astype(np.float32), "n": np.array(1, np.int64)}


def test_an_accepted_lossy_upload_leaves_what_it_dropped_as_the_residual(stub_server):
    server = stub_server({UPLOAD: lambda r: Reply(201, {})})
    agent = agent_for(server)
    agent._upload(Task.from_json(TASK), delta(1), 10, {})
    (sent,) = server.calls(*UPLOAD)
    decoded = decode(sent.body, kind="delta").arrays
    np.testing.assert_array_equal(agent.feedback.residual["w"], delta(1)["w"] - decoded["w"])
    assert np.count_nonzero(decoded["w"]) == 6  # top 1 % of 600


def test_the_next_upload_carries_the_residual_of_the_accepted_one(stub_server):
    server = stub_server({UPLOAD: lambda r: Reply(201, {})})
    agent = agent_for(server)
    agent._upload(Task.from_json(TASK), delta(1), 10, {})
    agent._upload(Task.from_json(TASK), delta(2), 10, {})
    expected = ErrorFeedback()
    expected.commit(expected.encode(delta(1), encoding="topk1-int8", base_version=2))
    second = expected.encode(delta(2), encoding="topk1-int8", base_version=2)
    assert server.calls(*UPLOAD)[1].body == second.body


def test_a_refused_upload_leaves_the_residual_as_it_was(stub_server):
    server = stub_server({UPLOAD: lambda r: error(409, "round_closed", "too late")})
    agent = agent_for(server)
    agent._upload(Task.from_json(TASK), delta(1), 10, {})
    assert len(server.calls(*UPLOAD)) == 1 and dict(agent.feedback.residual) == {}


def test_every_encoding_the_codec_has_is_declared_at_registration():
    from worker.registration import ACCEPTS

    assert ACCEPTS == list(codec.ENCODINGS)


# ---------------------------------------------------------------- broadcast chains and digests

def chain_reply(models, base: int, version: int, *, body: bytes | None = None, digest_of=None) -> Reply:
    from fedcore.broadcast import CHAIN_CONTENT_TYPE, digest, pack_chain

    blobs = [encode(subtract(models[v + 1], models[v]), encoding="float32", kind="delta", base_version=v)
             for v in range(base, version)]
    headers = {"Content-Type": CHAIN_CONTENT_TYPE, "X-Model-Version": str(version),
               "X-Model-Digest": digest(digest_of if digest_of is not None else models[version])}
    return Reply(200, pack_chain(blobs) if body is None else body, headers)


def test_a_chain_is_applied_delta_by_delta_and_checked_against_the_servers_digest(stub_server):
    models = versions(5)
    server = ModelServer(stub_server, models)
    cache = cache_for(server)
    fetch(cache, 1, models)
    server.server.routes[("GET", MODEL)] = lambda r: chain_reply(models, 1, 4)
    got = fetch(cache, 4, models)
    assert all(got[k].tobytes() == models[4][k].tobytes() for k in models[4]) and cache.last_was_delta
    asked = server.server.requests[-1]
    assert "application/x-fedplatform-tensor-chain" in asked.headers["Accept"]


def test_a_malformed_chain_is_refused_and_the_held_copy_dropped(stub_server):
    models = versions(4)
    server = ModelServer(stub_server, models)
    cache = cache_for(server)
    fetch(cache, 1, models)
    good = chain_reply(models, 1, 3).body
    server.server.routes[("GET", MODEL)] = lambda r: chain_reply(models, 1, 3, body=good[:-1])
    with pytest.raises(ValueError, match="chain"):
        fetch(cache, 3, models)
    assert cache.version is None


def test_a_snapshot_that_does_not_match_its_digest_is_refused(stub_server):
    from fedcore.broadcast import digest

    models = versions(2)
    server = ModelServer(stub_server, models)
    server.server.routes[("GET", MODEL)] = lambda r: Reply(
        200, encode(models[1], encoding="float32", kind="full"),
        {"Content-Type": CONTENT_TYPE, "X-Model-Version": "1", "X-Model-Digest": digest(models[0])})
    with pytest.raises(ValueError, match="digest"):
        fetch(cache_for(server), 1, models)
