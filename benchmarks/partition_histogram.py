"""Print a partition's per-client label histogram and save it as a PNG.

The split is the one devices make (``fedcore.partition`` through the built-in task's
``load_data``, with the same seed, subset and held-out fraction), so what it shows is what each
client trains on.

    python benchmarks/partition_histogram.py --dataset fashion-mnist --clients 10 --partition dirichlet --alpha 0.1
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from report import RESULTS, table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from fedcore.partition import SCHEMES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "cifar10"))
    p.add_argument("--data", type=Path, help="dataset file or directory (default: the usual places)")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--partition", choices=SCHEMES, default="dirichlet")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--shards-per-client", type=int, default=2)
    p.add_argument("--train-examples", type=int, default=0, help="the task's seeded subset (0: the whole split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", type=Path, help="where the plot goes (default results/plots/partition-<...>.png)")
    return p.parse_args(argv)


def histogram(args: argparse.Namespace) -> tuple[np.ndarray, list[str]]:
    """(clients x classes training-example counts, class names)."""
    from fedcore.data import DATASETS
    from fedcore.tasks import DataRequest
    from fedcore.tasks.registry import BUILTIN_TASK, load_task

    task = load_task(BUILTIN_TASK)
    config = task.validate_config({"dataset": args.dataset, "train_examples": args.train_examples})
    info = DATASETS[args.dataset]
    counts = np.zeros((args.clients, info.num_classes), dtype=np.int64)
    for index in range(args.clients):
        data = task.load_data(config, DataRequest(
            root=args.data, partition=args.partition, alpha=args.alpha, shards_per_partition=args.shards_per_client,
            num_partitions=args.clients, partition_index=index, seed=args.seed))
        counts[index] = np.bincount(data.train.y.numpy(), minlength=info.num_classes)
    return counts, list(info.classes)


def draw(counts: np.ndarray, classes: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(counts) + 3), 4.5), dpi=110)
    bottom = np.zeros(len(counts))
    colours = plt.get_cmap("tab10")
    for cls in range(counts.shape[1]):
        ax.bar(range(len(counts)), counts[:, cls], bottom=bottom, color=colours(cls % 10), label=classes[cls])
        bottom += counts[:, cls]
    ax.set_xticks(range(len(counts)), [str(i) for i in range(len(counts))])
    ax.set_xlabel("client (partition index)")
    ax.set_ylabel("training examples")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts, classes = histogram(args)
    alpha = f" alpha={args.alpha:g}" if args.partition in ("dirichlet", "quantity") else ""
    name = f"{args.dataset} {args.partition}{alpha}"
    title = f"{name}, {args.clients} clients, seed {args.seed}"
    rows = [[str(i), str(int(row.sum())), *[str(int(c)) for c in row]] for i, row in enumerate(counts)]
    print(title + "\n")
    print(table(["client", "examples", *classes], rows))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    overall = counts.sum(axis=0) / counts.sum()
    skew = float(np.mean(0.5 * np.abs(shares - overall).sum(axis=1)))
    print(f"\nmean total-variation distance from the overall label mix: {skew:.3f} (0: every client looks alike)")
    png = args.png or RESULTS / "plots" / f"partition-{args.dataset}-{args.partition}-{args.clients}clients.png"
    draw(counts, classes, title, png)
    print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
