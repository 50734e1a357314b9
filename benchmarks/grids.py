"""The experiment grids: each a base configuration and the configurations it varies.

A configuration is the base updated by one entry of ``configs``; ``seeds`` in an entry overrides
the grid's. ``centralized: True`` is the baseline: the same model, data and total epochs, trained
by the same code as one client holding all of it (float32, so each round is plain SGD). It runs
at a few learning rates (the federated runs' and smaller: one client takes K times the steps of
a round's clients), and the report takes the one with the best accuracy on the held-out split,
never the test split.
``attack`` (a name in ``attacks.ATTACKS``, or absent) makes the first ``attackers`` clients attack
in every round (``benchmarks/attacks.py``); the poisoning grid crosses attacks with strategies.
Hyper-parameters are fixed before any run and never chosen on the test split. Sizes fit a 2-core
CPU: a seeded 6,000-example subset of Fashion-MNIST's training split and 5,000 of the CIFAR-10
subset's, every round scored on 2,000 test examples (a seeded sample of Fashion-MNIST's test
split; the CIFAR-10 subset's whole test split).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from attacks import ATTACKS

PARTITIONS = (("iid", None), ("quantity", 0.5), ("dirichlet", 0.5), ("dirichlet", 0.1))
HEADLINE_SEEDS = (0, 1, 2)
# The poisoning grid: as many rounds as the prototype's (its clean FedAvg run is the prototype's
# K = 10 IID run, bit for bit), which keeps the 60 runs near 75 minutes on a 2-core CPU. Clipping
# bounds each update's L2 norm at about an honest update's: a clean FedAvg run's mean update norm
# (seed 0, measured before any attacked run) falls from 2.8 in round 1 to about 1.1 from round 6.
POISONING_ROUNDS = 20
CLIP_NORM = 1.0

BASE = {
    "dataset": "fashion-mnist", "arch": "cnn", "train_examples": 6000, "test_examples": 2000,
    "clients": 5, "partition": "iid", "alpha": None, "rounds": 20, "local_epochs": 1,
    "batch_size": 32, "lr": 0.05, "momentum": 0.9, "strategy": "fedavg", "strategy_config": {},
    "upload_encoding": "int4", "centralized": False,
}


@dataclass(frozen=True)
class Grid:
    name: str
    title: str
    base: dict
    configs: list[dict]
    seeds: tuple[int, ...] = (0,)
    cross_check: dict = field(default_factory=dict)  # the configuration also run through real processes
    central_lrs: tuple[float, ...] = ()  # the centralized baseline's candidate learning rates
    target_accuracy: float | None = None  # for "rounds to reach it"


def _centralized(lrs: tuple[float, ...], **extra) -> list[dict]:
    return [{"centralized": True, "lr": lr, **extra} for lr in lrs]


def _prototype(name: str, title: str, central_lrs: tuple[float, ...], **base) -> Grid:
    configs: list[dict] = _centralized(central_lrs, seeds=HEADLINE_SEEDS)
    for clients in (2, 3, 5, 10):
        for partition, alpha in PARTITIONS:
            entry: dict = {"clients": clients, "partition": partition, "alpha": alpha}
            if clients == 5 and partition == "iid":
                entry["seeds"] = HEADLINE_SEEDS  # the headline comparison with centralized
            configs.append(entry)
    return Grid(name, title, {**BASE, **base}, configs, cross_check={"clients": 5, "partition": "iid", "alpha": None},
                central_lrs=central_lrs)


def _strategies() -> Grid:
    central_lrs = (0.05, 0.02, 0.01)
    configs: list[dict] = _centralized(central_lrs)
    for strategy, config in (
        ("fedavg", {}), ("fedprox", {"proximal_mu": 0.01}), ("fedavgm", {}), ("fedadam", {}), ("fedyogi", {}),
    ):
        configs.append({"strategy": strategy, "strategy_config": config})
    return Grid(
        "strategies-fmnist-dirichlet0.1",
        "Strategies under label skew: Fashion-MNIST CNN, K = 10, Dirichlet alpha 0.1",
        {**BASE, "clients": 10, "partition": "dirichlet", "alpha": 0.1, "rounds": 30},
        configs, seeds=HEADLINE_SEEDS, cross_check={"strategy": "fedadam", "strategy_config": {}},
        target_accuracy=0.80, central_lrs=central_lrs,
    )


def _poisoning() -> Grid:
    # Each rule that takes a number of attackers to tolerate is told there are two: trimmed mean
    # drops the 2 largest and 2 smallest of 10 values per coordinate, Multi-Krum assumes f = 2.
    strategies = (
        ("fedavg", {}), ("fedavg", {"clip_norm": CLIP_NORM}), ("median", {}),
        ("trimmed_mean", {"trim_fraction": 0.2}), ("krum", {"byzantine": 2}),
    )
    configs: list[dict] = []
    for attack in (None, *ATTACKS):
        for strategy, config in strategies:
            configs.append({"attack": attack, "strategy": strategy, "strategy_config": config})
    return Grid(
        "poisoning-fmnist",
        "Poisoning: Fashion-MNIST CNN, K = 10 IID, clients 0 and 1 attacking in every round",
        {**BASE, "clients": 10, "rounds": POISONING_ROUNDS, "attack": None, "attackers": 2},
        configs, seeds=(0, 1),
    )


GRIDS = {
    grid.name: grid
    for grid in (
        _prototype("prototype-fmnist", "The prototype's grid: Fashion-MNIST CNN (6,000 training examples)",
                   (0.05, 0.02, 0.01)),
        _prototype("prototype-cifar10", "The prototype's grid: CIFAR-10 subset CNN (5,000 training examples)",
                   (0.02, 0.01, 0.005), dataset="cifar10", train_examples=5000, test_examples=0, lr=0.02),
        _strategies(),
        _poisoning(),
    )
}


def expand(grid: Grid) -> list[tuple[dict, tuple[int, ...]]]:
    """Every configuration of the grid, complete, with its seeds."""
    out = []
    for entry in grid.configs:
        entry = dict(entry)
        seeds = tuple(entry.pop("seeds", grid.seeds))
        config = {**grid.base, **entry}
        if config["centralized"]:
            config.update(clients=1, partition="iid", alpha=None, upload_encoding="float32", strategy="fedavg",
                          strategy_config={})
        out.append((config, seeds))
    return out


def label(config: dict) -> str:
    """A configuration's name in tables: what varies in the grids."""
    if config["centralized"]:
        return f"centralized lr={config['lr']:g}"
    partition = config["partition"] + (f"({config['alpha']:g})" if config.get("alpha") is not None else "")
    params = ",".join(f"{k}={v:g}" for k, v in sorted(config["strategy_config"].items()))
    name = f"K={config['clients']} {partition} {config['strategy']}" + (f"[{params}]" if params else "")
    if config.get("attack"):
        name += f" attack={config['attack']} attackers={config['attackers']}"
    return name
