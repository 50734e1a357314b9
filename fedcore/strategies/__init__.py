"""The strategy layer: one aggregation path for the server's engine, its audit and the benchmarks."""
from .base import AggregateResult, Param, RoundAggregation, Strategy, StrategyConfigError, StrategySpec
from .registry import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    build_strategy,
    describe_strategies,
    strategy_spec,
    validate_strategy,
)

__all__ = [
    "AggregateResult", "DEFAULT_STRATEGY", "Param", "RoundAggregation", "STRATEGIES", "Strategy",
    "StrategyConfigError", "StrategySpec", "build_strategy", "describe_strategies", "strategy_spec",
    "validate_strategy",
]
