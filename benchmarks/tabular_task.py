"""The tutorial's tabular task, federated over label-skewed devices, against the same model
trained centrally on the union of their data by the same task code.

Federated: K devices (Dirichlet label skew), each round every device runs the worker's own
``local_round`` and uploads int4 with error feedback (the default), the server takes FedAvg
(the strategy layer's FedAvg, the engine's path). Centralized: one device holding every
device's training rows, trained for the same number of epochs (rounds x local epochs).
Both are evaluated by the task on the server's test rows after the last round; several seeds.

    python benchmarks/tabular_task.py --seeds 5 --rounds 30
"""
from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import torch

import report
from fedcore import codec
from fedcore.feedback import ErrorFeedback
from fedcore.state import buffer_names, load_arrays, state_to_arrays
from fedcore.strategies import build_strategy
from fedcore.tasks import DataRequest, DeviceData, TensorSplit, TrainParams, load_task, seeded_model
from worker.task import Hyperparameters
from worker.trainer import local_round

# The tutorial's file, under the module name its task path uses (a user puts its folder on
# PYTHONPATH instead). This script's own name is the same, hence a file import, not a path entry.
report.load_file(report.REPO / "examples" / "tabular" / "tabular_task.py", "tabular_task")
TASK_PATH = "tabular_task:task"
CPU = torch.device("cpu")


def _accuracy(task, config, arrays) -> float:
    model = seeded_model(task, config, seed=0)
    load_arrays(model, arrays)
    return task.evaluate(model, task.test_data(config), device=CPU)["accuracy"]


def federated(
    task, config, devices: list[DeviceData], hp: Hyperparameters, rounds: int, seed: int, encoding: str,
) -> list[float]:
    global_model = state_to_arrays(seeded_model(task, config, seed=seed))
    model = seeded_model(task, config, seed=0)
    feedback = [ErrorFeedback() for _ in devices]
    manifest = codec.manifest_of(global_model)
    curve = []
    for number in range(1, rounds + 1):
        deltas = []
        for index, data in enumerate(devices):
            result = local_round(task, model, global_model, data, hp, seed=number + index, device=CPU)
            pending = feedback[index].encode(result.delta, encoding=encoding, base_version=number - 1,
                                             exact=buffer_names(model))
            feedback[index].commit(pending)
            decoded = codec.decode(pending.body, kind="delta", manifest=manifest).arrays
            deltas.append((decoded, result.num_examples))
        global_model = build_strategy("fedavg").aggregate(global_model, deltas).model
        curve.append(_accuracy(task, config, global_model))
    return curve


def centralized(task, config, devices: list[DeviceData], hp: Hyperparameters, epochs: int, seed: int) -> float:
    union = TensorSplit(torch.cat([d.train.x for d in devices]), torch.cat([d.train.y for d in devices]))
    model = seeded_model(task, config, seed=seed)
    params = TrainParams(epochs=epochs, batch_size=hp.batch_size, learning_rate=hp.learning_rate,
                         momentum=hp.momentum, weight_decay=hp.weight_decay, seed=seed)
    task.train(model, DeviceData(union), params, device=CPU)
    return _accuracy(task, config, state_to_arrays(model))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew (smaller: stronger)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--encoding", default="int4")
    args = parser.parse_args()
    torch.set_num_threads(1)

    task = load_task(TASK_PATH)
    config = task.validate_config({})
    hp = Hyperparameters(args.local_epochs, args.batch_size, args.learning_rate)
    rows, records = [], []
    for seed in range(args.seeds):
        devices = [task.load_data(config, DataRequest(partition="dirichlet", alpha=args.alpha,
                                                      num_partitions=args.devices, partition_index=i, seed=seed,
                                                      eval_fraction=0.1))
                   for i in range(args.devices)]
        curve = federated(task, config, devices, hp, args.rounds, seed, args.encoding)
        central = centralized(task, config, devices, hp, args.rounds * args.local_epochs, seed)
        sizes = [d.num_train for d in devices]
        malignant = [int((d.train.y == 0).sum()) for d in devices]
        records.append({"seed": seed, "federated_final": curve[-1], "federated_last5_mean": float(np.mean(curve[-5:])),
                        "centralized": central, "device_rows": sizes, "device_malignant": malignant, "curve": curve})
        rows.append([seed, " / ".join(f"{m}/{n}" for m, n in zip(malignant, sizes)), f"{central:.3f}",
                     f"{curve[-1]:.3f}", f"{np.mean(curve[-5:]):.3f}", f"{(curve[-1] - central) * 100:+.1f}"])
    final = [r["federated_final"] for r in records]
    central = [r["centralized"] for r in records]
    gaps = [(f - c) * 100 for f, c in zip(final, central)]
    spread = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
    rows.append(["mean", "", f"{np.mean(central):.3f}", f"{np.mean(final):.3f}",
                 f"{np.mean([r['federated_last5_mean'] for r in records]):.3f}",
                 f"{np.mean(gaps):+.1f} (sd {spread:.1f})"])
    headers = ["seed", "malignant/rows per device", "centralized", "federated (final round)",
               "federated (mean of last 5)", "gap, points"]
    body = (
        f"{TASK_PATH} ({task.title}); {args.devices} devices, Dirichlet alpha {args.alpha} label skew, "
        f"{args.rounds} rounds x {args.local_epochs} local epoch(s), batch {args.batch_size}, lr {args.learning_rate}, "
        f"{args.encoding} uploads with error feedback, FedAvg; centralized: the union of the devices' rows, "
        f"{args.rounds * args.local_epochs} epochs, same task code. Test accuracy on the server's 114 held-out rows "
        f"(one row is 0.9 points).\n\n" + report.table(headers, rows)
    )
    name = f"tabular_task_{args.devices}dev_alpha{args.alpha:g}"
    report.write(name, "The tutorial's tabular task: federated (label skew) vs centralized", body)
    jsonl = report.RESULTS / f"{name}.jsonl"
    with jsonl.open("w") as out:
        for record in records:
            row = {"command": report.command(), "commit": report.commit(), **vars(args), **record}
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
