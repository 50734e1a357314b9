"""Drive the real services (no HTTP) to produce the events and rows the dashboard shows."""
import numpy as np

from clients.models import Client
from clients.services import client_polled, client_register
from fedcore import codec
from rounds import blobs
from rounds.models import Run
from rounds.lifecycle import run_control, run_create
from rounds.protocol import task_for, update_accept

MAX_BYTES = 512 * 1024 * 1024


def running_run(**config) -> Run:
    """A running one-client-per-round run (a round opens as soon as one client asks)."""
    defaults = dict(name="dash run", rounds=3, min_clients=1, clients_per_round=1, min_updates=1, round_timeout=300)
    return run_control(run=run_create(**{**defaults, **config}), action="start")


def join(run: Run, name: str, num_examples: int = 50) -> Client:
    """A registered client that has proven liveness (its first poll), so rounds may select it."""
    client, _token = client_register(run=run, name=name, num_examples=num_examples, device_info={}, accepts=[])
    client_polled(client=client)
    return client


def small_delta(run: Run, base_version: int, encoding: str = "float32") -> bytes:
    """A real, valid update: every float weight nudged by a small step."""
    version = run.versions.get(number=base_version)
    base = blobs.decoded_version(version.blob.name, version.sha256)
    delta = {k: (np.full_like(a, 0.001) if a.dtype.kind == "f" else np.zeros_like(a)) for k, a in base.items()}
    return codec.encode(delta, encoding=encoding, kind="delta", base_version=base_version)


def train_one_round(run: Run, client: Client, metrics: dict | None = None) -> dict:
    """The client takes its task and uploads; with one expected client the round closes."""
    task = task_for(client=client)
    assert task is not None, "no task: is the run running with min_clients=1?"
    update_accept(
        round_id=task["round"], client=client, body=small_delta(run, task["base_version"], task["upload_encoding"]),
        num_examples=50,
        metrics=metrics or {"train_seconds": 0.5, "download_seconds": 0.1, "eval_seconds": 0.05},
        max_bytes=MAX_BYTES,
    )
    return task
