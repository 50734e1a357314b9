"""Server-side evaluation of global models on the held-out test split, when the server has it."""
import functools
import logging

import numpy as np
import torch
from django.conf import settings

from fedcore.data import DATASETS, DatasetNotFound, load_dataset, to_tensors
from fedcore.nets import build_model
from fedcore.state import load_arrays
from fedcore.training import evaluate

log = logging.getLogger("fedplatform.evaluation")


@functools.lru_cache(maxsize=4)
def _test_split(dataset: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    root = settings.FEDPLATFORM["DATA_DIR"] or None
    try:
        x, y = load_dataset(dataset, root=root, train=False)
    except DatasetNotFound as exc:
        log.warning("no server-side evaluation for %s: %s", dataset, exc)
        return None
    limit = settings.FEDPLATFORM["EVAL_LIMIT"]
    if limit:
        # A seeded, class-mixed subset: the test split is ordered in some sources.
        keep = np.sort(np.random.default_rng(0).permutation(len(y))[:limit])
        x, y = x[keep], y[keep]
    return to_tensors(x, y, DATASETS[dataset])


def evaluate_arrays(arch: str, dataset: str, arrays: dict[str, np.ndarray]) -> dict | None:
    """Test loss and accuracy of a global model, or None when the server holds no test data."""
    split = _test_split(dataset)
    if split is None:
        return None
    info = DATASETS[dataset]
    model = build_model(arch, in_channels=info.in_channels, num_classes=info.num_classes, image_size=info.image_size)
    load_arrays(model, arrays)
    return evaluate(model, *split, device=torch.device("cpu"))
