"""Peak memory of aggregating a round: the engine's streaming FedAvg against holding every update.

Makes N int4 updates of ResNet-18 (CIFAR form) as the wire carries them (random deltas of a
round's size), stores them as files, and aggregates them through the engine's own path,
the strategy layer's FedAvg (the engine's path) fed one update at a time, each decoded tensor by tensor as it is
folded in (``codec.decode_lazily``), as ``rounds.engine`` does.
Peak memory is what ``tracemalloc`` saw above the base model (numpy reports its buffers to it),
in model sizes (float32 bytes of the model). For contrast, the same updates decoded all at once
and averaged, as the engine did before streaming (only for the first ``--batch-n``).

    python benchmarks/aggregation_memory.py                  # 100 updates, batch contrast at 10
    python benchmarks/aggregation_memory.py --updates 20 --arch cnn --dataset fashion-mnist
"""
from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from report import mb, table, write


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--updates", type=int, default=100)
    p.add_argument("--batch-n", type=int, default=10, help="updates for the hold-everything contrast (0: skip)")
    p.add_argument("--encoding", default="int4")
    p.add_argument("--target-model-sizes", type=float, default=3.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from fedcore import codec
    from fedcore.aggregation import weighted_mean
    from fedcore.strategies import build_strategy
    from fedcore.data import DATASETS
    from fedcore.nets import build_model
    from fedcore.state import state_to_arrays

    info = DATASETS[args.dataset]
    model = build_model(args.arch, in_channels=info.in_channels, num_classes=info.num_classes,
                        image_size=info.image_size, seed=0)
    base = state_to_arrays(model)
    del model
    model_bytes = codec.float32_size(codec.manifest_of(base))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths, wire = [], 0
        started = time.perf_counter()
        for i in range(args.updates):
            delta = {
                k: (rng.standard_normal(a.shape).astype(np.float32) * 1e-3 if a.dtype.kind == "f" else np.zeros_like(a))
                for k, a in base.items()
            }
            data = codec.encode(delta, encoding=args.encoding, kind="delta", base_version=0)
            wire += len(data)
            path = Path(tmp) / f"u{i}.fedt"
            path.write_bytes(data)
            paths.append(path)
            del delta, data
        made = time.perf_counter() - started
        weights = [int(w) for w in rng.integers(100, 1000, size=args.updates)]

        def decoded(i: int) -> dict:
            return codec.decode(paths[i].read_bytes(), kind="delta").arrays

        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        aggregator = build_strategy("fedavg").begin(base, sum(weights))
        for i, weight in enumerate(weights):
            arrays = codec.decode_lazily(paths[i].read_bytes(), kind="delta")  # as rounds.engine does
            aggregator.add(arrays, weight)
            del arrays
        result = aggregator.result()
        streaming_seconds = time.perf_counter() - started
        streaming_peak = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
        del result, aggregator
        gc.collect()

        rows = [[
            f"streaming FedAvg (the engine), {args.updates} updates", mb(streaming_peak),
            f"{streaming_peak / model_bytes:.2f}", f"{streaming_seconds:.1f} s",
            "yes" if streaming_peak <= args.target_model_sizes * model_bytes else "NO",
        ]]
        if args.batch_n:
            n = min(args.batch_n, args.updates)
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            everything = [(decoded(i), weights[i]) for i in range(n)]
            mean = weighted_mean(everything)
            batch_seconds = time.perf_counter() - started
            batch_peak = tracemalloc.get_traced_memory()[1] - before
            tracemalloc.stop()
            del everything, mean
            rows.append([
                f"every update decoded at once (before), {n} updates", mb(batch_peak),
                f"{batch_peak / model_bytes:.2f}", f"{batch_seconds:.1f} s",
                "yes" if batch_peak <= args.target_model_sizes * model_bytes else "NO",
            ])
    body = (
        f"{args.arch} on {args.dataset}: {len(base)} tensors, one model = {mb(model_bytes)} (float32). "
        f"{args.updates} {args.encoding} updates, {mb(wire / args.updates)} each on the wire "
        f"(made in {made:.0f} s). Peak = the most memory tracemalloc saw during aggregation above what "
        f"was allocated before it (the base model stays loaded, as the engine caches it). "
        f"Target: at most {args.target_model_sizes:g} model sizes.\n\n"
        + table(["aggregation", "peak memory growth", "model sizes", "time", "within target"], rows)
    )
    write(f"aggregation_memory_{args.arch}", f"Aggregation peak memory: {args.arch}", body)


if __name__ == "__main__":
    main()
