"""Devices that speak the protocol over real HTTP without training: register, long-poll, fetch the
model, upload a synthetic update. For engine tests that need many devices or exact timing."""
import numpy as np
import requests

from fedcore import codec


class HttpDevice:
    def __init__(self, server_url: str, run_id: int, name: str, num_examples: int = 10):
        self.url = server_url
        self.num_examples = num_examples
        self.http = requests.Session()
        body = self.http.post(
            f"{server_url}/api/v1/clients/", json={"name": name, "run": run_id, "num_examples": num_examples},
            timeout=60,
        )
        body.raise_for_status()
        self.id = body.json()["id"]
        self.http.headers["Authorization"] = f"Token {body.json()['token']}"

    def poll(self, wait: int = 0) -> requests.Response:
        suffix = f"?wait={wait}" if wait else ""
        return self.http.get(f"{self.url}/api/v1/clients/{self.id}/task/{suffix}", timeout=wait + 60)

    def upload_synthetic(self, task: dict, shift: float = 0.01) -> requests.Response:
        base = codec.decode(self.http.get(self.url + task["model_url"], timeout=120).content).arrays
        delta = {k: (np.full_like(a, shift) if a.dtype.kind == "f" else np.zeros_like(a)) for k, a in base.items()}
        body = codec.encode(delta, encoding=task["upload_encoding"], kind="delta", base_version=task["base_version"])
        return self.http.put(
            self.url + task["upload_url"], data=body,
            headers={"Content-Type": codec.CONTENT_TYPE, "X-Num-Examples": str(self.num_examples)}, timeout=120,
        )
