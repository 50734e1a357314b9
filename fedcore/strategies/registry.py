"""Every strategy a run can name (``Run.strategy``), with its parameters and their defaults.

Defaults follow the papers that introduced each method (server learning rates and ``tau`` from
Reddi et al., 2021); a run's ``strategy_config`` overrides any of them, within the ranges below.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import Param, Strategy, StrategyConfigError, StrategySpec

DEFAULT_STRATEGY = "fedavg"

_SERVER_LR = "step size of the server optimizer on the round's mean delta"
_BETA1 = Param(0.9, 0.0, 0.9999, "first-moment decay (momentum of the server update)")
_BETA2 = Param(0.99, 0.0, 0.9999, "second-moment decay")
_TAU = Param(1e-3, 0.0, 1.0, "adaptivity: added to sqrt(v) (larger = closer to SGD)", low_exclusive=True)


def _adaptive(name: str, title: str, optimizer: str, lr: float, *, beta2: bool = True) -> StrategySpec:
    params = {"server_lr": Param(lr, 0.0, 10.0, _SERVER_LR, low_exclusive=True), "beta1": _BETA1, "tau": _TAU}
    if beta2:
        params["beta2"] = _BETA2
    return StrategySpec(name, title, "mean", optimizer, params)


STRATEGIES: dict[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec("fedavg", "FedAvg (example-weighted mean of deltas)", "mean", "sgd"),
        StrategySpec(
            "fedprox", "FedProx (FedAvg; clients add (mu/2)||w - w_global||^2 to their loss)", "mean", "sgd",
            {"proximal_mu": Param(0.01, 0.0, 10.0, "weight of the proximal term clients train with")},
            client_params=("proximal_mu",),
        ),
        StrategySpec(
            "fedavgm", "FedAvgM (FedAvg with server momentum)", "mean", "momentum",
            {"server_lr": Param(1.0, 0.0, 10.0, _SERVER_LR, low_exclusive=True),
             "server_momentum": Param(0.9, 0.0, 0.9999, "momentum of the server update")},
        ),
        _adaptive("fedadam", "FedAdam (Adam on the server, Reddi et al.)", "adam", 0.01),
        _adaptive("fedyogi", "FedYogi (Yogi on the server, Reddi et al.)", "yogi", 0.01),
        _adaptive("fedadagrad", "FedAdagrad (Adagrad on the server, Reddi et al.)", "adagrad", 0.03, beta2=False),
        StrategySpec("median", "Coordinate-wise median (robust; unweighted)", "median", "sgd"),
        StrategySpec(
            "trimmed_mean", "Trimmed mean (robust; unweighted)", "trimmed_mean", "sgd",
            {"trim_fraction": Param(0.1, 0.0, 0.49, "share of values dropped at each end, per coordinate")},
        ),
        StrategySpec(
            "krum", "Multi-Krum (robust; unweighted mean of the most central updates)", "krum", "sgd",
            {"byzantine": Param(1, 0, 1000, "attackers to tolerate (f)", integer=True),
             "keep": Param(0, 0, 100000, "updates averaged (0: n - f; 1: Krum)", integer=True)},
        ),
    )
}


def strategy_spec(name: str) -> StrategySpec:
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise StrategyConfigError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}") from None


def build_strategy(name: str, config: Any = None, *, exempt: Iterable[str] = ()) -> Strategy:
    """The strategy ``name`` with ``config`` validated (StrategyConfigError when it is not valid)."""
    return Strategy(strategy_spec(name), config, exempt=exempt)


def validate_strategy(name: str, config: Any = None) -> dict[str, float | int]:
    """``config`` with the strategy's defaults filled in, or StrategyConfigError."""
    return strategy_spec(name).validate(config)


def describe_strategies() -> list[dict[str, Any]]:
    """What an operator may choose from: names, titles, parameters with defaults and ranges."""
    return [
        {
            "name": spec.name,
            "title": spec.title,
            "streaming": spec.streaming,
            "params": {
                key: {"default": p.default, "min": p.low, "max": p.high, "integer": p.integer, "help": p.help}
                for key, p in spec.all_params().items()
            },
        }
        for spec in STRATEGIES.values()
    ]
