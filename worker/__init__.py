"""The device side of fedplatform: ``python -m worker --server URL``.

A worker registers with the server, then repeatedly asks for a task, downloads the global model,
evaluates it on its held-out split, trains on its own partition and uploads the weight delta.
It depends only on ``fedcore``, the standard library, torch, numpy, requests and tqdm, so a device
needs nothing but ``requirements-worker.txt``.
"""
