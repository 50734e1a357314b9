"""A strategy: what a round asks of clients, and how their updates become the next global model.

In the spirit of Flower's ``Strategy``, cut along the lines of the literature's FedOpt framework:

- ``client_instructions()``: what each round's task carries beyond the run's hyper-parameters
  (FedProx's ``proximal_mu``, applied by the worker's training, see ``fedcore.strategies.proximal``);
- ``begin(base, total_weight, state)``: one round's aggregation. Each client delta is clipped
  (``clip_norm``, any strategy), combined by a rule (``rules``: weighted mean, median, trimmed
  mean, Multi-Krum) and applied by a server optimizer (``optimizers``: SGD, momentum, Adam, Yogi,
  Adagrad), whose state the result carries to be stored beside the new version;
- ``AggregateResult.metrics``: what the round reports about the aggregation.

No Django here: the server's engine, its audit and the benchmarks' simulation call the same code.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedcore.aggregation import Arrays

from . import optimizers, rules


class StrategyConfigError(ValueError):
    """An unknown strategy or an invalid strategy configuration; the message says what is valid."""


@dataclass(frozen=True)
class Param:
    """One tunable number of a strategy, with its valid range."""

    default: float | int
    low: float
    high: float
    help: str
    integer: bool = False
    low_exclusive: bool = False

    def check(self, key: str, value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StrategyConfigError(f"{key!r} must be a number, got {value!r}")
        if self.integer and (not float(value).is_integer()):
            raise StrategyConfigError(f"{key!r} must be a whole number, got {value!r}")
        number = int(value) if self.integer else float(value)
        too_low = number <= self.low if self.low_exclusive else number < self.low
        if not math.isfinite(number) or too_low or number > self.high:
            bracket = "(" if self.low_exclusive else "["
            raise StrategyConfigError(f"{key!r} must be in {bracket}{self.low}, {self.high}], got {value!r}")
        return number


CLIP_NORM = Param(0.0, 0.0, 1e6, "clip each update's L2 norm to this (0: no clipping)")


@dataclass(frozen=True)
class StrategySpec:
    """A named composition of a rule and a server optimizer, with its parameters' defaults."""

    name: str
    title: str
    rule: str  # "mean", "median", "trimmed_mean", "krum"
    optimizer: str  # one of optimizers.OPTIMIZERS
    params: Mapping[str, Param] = field(default_factory=dict)
    client_params: tuple[str, ...] = ()  # sent to clients with each round's task

    @property
    def streaming(self) -> bool:
        """Whether updates are folded in one at a time (memory independent of their number)."""
        return self.rule == "mean"

    def all_params(self) -> dict[str, Param]:
        return {**self.params, "clip_norm": CLIP_NORM}

    def defaults(self) -> dict[str, float | int]:
        return {key: p.default for key, p in self.all_params().items()}

    def validate(self, config: Any) -> dict[str, float | int]:
        """The full configuration, defaults filled in, or StrategyConfigError saying what is valid."""
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise StrategyConfigError(f"the strategy configuration must be a JSON object, got {type(config).__name__}")
        known = self.all_params()
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise StrategyConfigError(
                f"unknown keys {unknown} for strategy {self.name!r}; it takes: {', '.join(sorted(known))}")
        values = self.defaults()
        for key, value in config.items():
            values[key] = known[key].check(key, value)
        return values


@dataclass
class AggregateResult:
    model: dict[str, np.ndarray]
    state: dict[str, np.ndarray]  # the server optimizer's, stored beside the version
    metrics: dict[str, float | int] = field(default_factory=dict)


class RoundAggregation:
    """One round: ``add`` each client's delta with its example count, then ``result``."""

    def __init__(
        self, strategy: "Strategy", base: Arrays, total_weight: int | None, state: Mapping[str, np.ndarray]
    ) -> None:
        self.strategy, self.base, self.state = strategy, base, state
        self.streaming = strategy.spec.streaming
        self.rule = strategy.new_rule(total_weight)
        self.clip = float(strategy.params["clip_norm"])
        self.clipped = 0
        self.norms: list[float] = []

    def add(self, delta: Arrays, weight: int) -> None:
        if self.clip > 0:
            norm = rules.update_norm(delta, self.strategy.exempt)
            self.norms.append(norm)
            factor = rules.clip_factor(norm, self.clip)
            self.clipped += factor < 1.0
            delta = rules.Scaled(delta, factor, self.strategy.exempt)
        self.rule.add(delta, weight)

    def result(self) -> AggregateResult:
        combined = self.rule.result()
        model, state = optimizers.step(
            self.strategy.spec.optimizer, self.base, combined, self.state, self.strategy.params,
            plain=self.strategy.exempt,
        )
        metrics: dict[str, float | int] = dict(self.rule.info())
        if self.clip > 0:
            metrics["clipped_updates"] = int(self.clipped)
            metrics["update_norm_mean"] = round(float(np.mean(self.norms)), 6) if self.norms else 0.0
        return AggregateResult(model=model, state=state, metrics=metrics)


class Strategy:
    """A strategy with its validated parameters, for one run.

    ``exempt`` names the tensors that are statistics rather than weights (BatchNorm buffers): they
    are left out of clipping norms and take the plain combined delta, never a server optimizer's step.
    """

    def __init__(self, spec: StrategySpec, config: Any = None, *, exempt: Iterable[str] = ()) -> None:
        self.spec = spec
        self.params = spec.validate(config)
        self.exempt = frozenset(exempt)

    @property
    def name(self) -> str:
        return self.spec.name

    def client_instructions(self) -> dict[str, float | int]:
        return {key: self.params[key] for key in self.spec.client_params}

    def new_rule(self, total_weight: int | None = None) -> rules.Rule:
        kind = self.spec.rule
        if kind == "mean":
            return rules.WeightedMean(total_weight)
        if kind == "median":
            return rules.CoordinateMedian()
        if kind == "trimmed_mean":
            return rules.TrimmedMean(float(self.params["trim_fraction"]))
        if kind == "krum":
            return rules.MultiKrum(int(self.params["byzantine"]), int(self.params["keep"]))
        raise StrategyConfigError(f"unknown rule {kind!r}")

    def begin(
        self, base: Arrays, total_weight: int | None = None, state: Mapping[str, np.ndarray] | None = None
    ) -> RoundAggregation:
        """One round's aggregation. ``total_weight`` (the examples to come), when known, is checked
        by the weighted mean at the end; folding as updates arrive leaves it out."""
        return RoundAggregation(self, base, total_weight, state or {})

    def aggregate(
        self, base: Arrays, contributions: Iterable[tuple[Arrays, int]], state: Mapping[str, np.ndarray] | None = None,
        *, total_weight: int | None = None,
    ) -> AggregateResult:
        """Convenience for a list of contributions (a streaming caller uses :meth:`begin`)."""
        items = contributions if total_weight is not None else list(contributions)
        total = total_weight if total_weight is not None else sum(w for _, w in items)
        round_ = self.begin(base, total, state)
        for delta, weight in items:
            round_.add(delta, weight)
        return round_.result()
