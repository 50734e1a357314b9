"""Helpers for speaking the device protocol through Django's test client."""
import numpy as np
from rest_framework.test import APIClient

from fedcore import codec
from fedcore.state import subtract
from rounds import blobs


class Device:
    """A registered client as the server sees it over HTTP."""

    def __init__(self, run_id: int, name: str, num_examples: int = 100, *, poll: bool = True):
        """With ``poll``, the device asks for work once right after registering, as the worker
        does: that first poll is what makes it selectable for rounds."""
        self.api = APIClient()
        response = self.api.post(
            "/api/v1/clients/", {"name": name, "run": run_id, "num_examples": num_examples}, format="json"
        )
        assert response.status_code == 201, response.content
        self.id = response.json()["id"]
        self.token = response.json()["token"]
        self.api.credentials(HTTP_AUTHORIZATION=f"Token {self.token}")
        if poll:
            self.first_task = self.task()

    def task(self):
        return self.api.get(f"/api/v1/clients/{self.id}/task/")

    def upload(self, task: dict, body: bytes, num_examples: int = 100, metrics: str = "{}"):
        return self.api.generic(
            "PUT", task["upload_url"], body, content_type=codec.CONTENT_TYPE,
            HTTP_X_NUM_EXAMPLES=str(num_examples), HTTP_X_METRICS=metrics,
        )


def base_arrays(run, version: int = 0) -> dict:
    v = run.versions.get(number=version)
    return {k: np.array(a) for k, a in blobs.decoded_version(v.blob.name, v.sha256).items()}


def delta_body(run, task: dict, shift: float, *, encoding: str | None = None) -> tuple[bytes, dict]:
    """A real delta: the base model with every float moved by ``shift``, in the encoding the task
    asks for unless told otherwise (the server refuses any other)."""
    encoding = encoding or task["upload_encoding"]
    base = base_arrays(run, task["base_version"])
    trained = {k: (a + shift).astype(a.dtype) if a.dtype.kind == "f" else a + 1 for k, a in base.items()}
    delta = subtract(trained, base)
    return codec.encode(delta, encoding=encoding, kind="delta", base_version=task["base_version"]), delta
