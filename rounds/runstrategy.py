"""A run's strategy on the server: checking its configuration, building it for a round, and the
server optimizer's state stored beside each version."""
from __future__ import annotations

from typing import Any

import numpy as np

from fedcore import codec
from fedcore.strategies import Strategy, StrategyConfigError, build_strategy, validate_strategy
from fedcore.strategies.base import RoundAggregation
from fedplatform.errors import Invalid

from . import blobs, runtask


def checked_config(name: str, config: Any) -> dict[str, float | int]:
    """The full strategy configuration, or a 400 naming what is valid."""
    try:
        return validate_strategy(name, config)
    except StrategyConfigError as err:
        code = "unknown_strategy" if str(err).startswith("unknown strategy") else "invalid_strategy_config"
        raise Invalid(str(err), code) from err


def for_round(rnd) -> Strategy:
    """The strategy as the round's configuration version set it (later changes wait for the next round)."""
    run = rnd.run
    config = rnd.config.values.get("strategy_config", run.strategy_config)
    return build_strategy(run.strategy, config, exempt=runtask.run_lossless(run))


def begin_aggregation(rnd, total_weight: int | None) -> RoundAggregation:
    """The round's aggregation, started from its base version and the strategy state stored beside
    it: what the close (``rounds.engine``) and the early fold (``rounds.prefold``) both fold into."""
    base = rnd.base_version
    return for_round(rnd).begin(
        blobs.decoded_version(base.blob.name, base.sha256), total_weight, load_state(base)
    )


def client_instructions(run) -> dict[str, float | int]:
    """What a round's task carries for the strategy (FedProx's ``proximal_mu``)."""
    return build_strategy(run.strategy, run.strategy_config).client_instructions()


def load_state(version) -> dict[str, np.ndarray]:
    if not version.strategy_state:
        return {}
    return dict(blobs.decoded_version(version.strategy_state.name, version.strategy_state_sha256))


def store_state(run, number: int, state: dict[str, np.ndarray]) -> tuple[str, str]:
    """(storage name, sha256) of the state blob, or empty strings for a stateless strategy."""
    if not state:
        return "", ""
    data = codec.encode(state, encoding="float32", kind="full",
                        meta={"run": run.pk, "version": number, "strategy": run.strategy})
    digest = blobs.sha256(data)
    return blobs.store(f"runs/{run.pk}/strategy", data, digest), digest
