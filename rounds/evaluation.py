"""Server-side evaluation of global models on the task's test data, when the server has it."""
import functools
import json
import logging
import math

import numpy as np
import torch
from django.conf import settings

from fedcore.state import load_arrays
from fedcore.tasks import TensorSplit, canonical_config, load_task, seeded_model

log = logging.getLogger("fedplatform.evaluation")


@functools.lru_cache(maxsize=4)
def _test_data(path: str, config_json: str):
    root = settings.FEDPLATFORM["DATA_DIR"] or None
    data = load_task(path).test_data(json.loads(config_json), root=root)
    if data is None:
        log.warning("no server-side evaluation for %s %s: the task gives no test data here", path, config_json)
        return None
    limit = settings.FEDPLATFORM["EVAL_LIMIT"]
    if limit and isinstance(data, TensorSplit) and len(data) > limit:
        # A seeded, class-mixed subset: the test split is ordered in some sources.
        keep = torch.from_numpy(np.sort(np.random.default_rng(0).permutation(len(data))[:limit]))
        data = TensorSplit(data.x[keep], data.y[keep])
    return data


def evaluate_arrays(run, arrays: dict[str, np.ndarray]) -> dict | None:
    """Test metrics of one of ``run``'s global models, or None when the server holds no test data.

    Only finite numbers are kept: they go into JSON columns and onto the dashboard."""
    config_json = canonical_config(run.task_config)
    data = _test_data(run.task, config_json)
    if data is None:
        return None
    task = load_task(run.task)
    model = seeded_model(task, run.task_config, seed=0)
    load_arrays(model, arrays)
    metrics = task.evaluate(model, data, device=torch.device("cpu"))
    found = {str(k): float(v) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    found["examples"] = len(data)
    return found
