"""What each update encoding costs in accuracy: the same federated run, float32 vs lossy wires.

One process per encoding simulates the whole federation with fedcore, exactly as the platform
runs it: every round each client loads the global model, trains locally
(``fedcore.training.train``), sends ``trained - global`` through ``fedcore.feedback.ErrorFeedback``
and the codec (as ``worker.agent`` does), and the server averages the *decoded* updates with
the strategy layer's FedAvg (``fedcore.strategies``, the engine's path). Seeds, data split and client
order are the same for every encoding, so the only difference between runs is the wire.

    python benchmarks/accuracy_cost.py --task fashion-mnist
    python benchmarks/accuracy_cost.py --task cifar10 --device cuda --jobs 8

Encodings are given as ``NAME`` with optional flags: ``NAME:noef`` (without error feedback, to
show what error feedback buys) and ``NAME:down=ENC`` (devices are sent the broadcast replica's
delta in ENC each round, with the server's error feedback, as ``rounds.broadcast`` sends it,
instead of the full float32 model each round). Per-round results stream to JSON lines, so a run cut short by
``--time-budget`` still reports every round all encodings reached; they end up beside the table
as ``<name>.rounds.jsonl``, the input of ``seed_summary.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import REPO, mb, table, write

DEFAULT_ENCODINGS = "float32,bfloat16,int8,int4,topk10-int8,topk3-int8,topk1-int8,topk1-int8:noef"
TASKS = {  # dataset -> (architecture, default data location)
    "fashion-mnist": ("cnn", None),
    "cifar10": ("resnet18", REPO.parent / "shared" / "data" / "cifar10-subset.npz"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=tuple(TASKS), default="fashion-mnist")
    p.add_argument("--arch", help="default: cnn for fashion-mnist, resnet18 for cifar10")
    p.add_argument("--data", type=Path, help="dataset file or directory (default: the usual places)")
    p.add_argument("--encodings", default=DEFAULT_ENCODINGS)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--examples-per-client", type=int, default=2000)
    p.add_argument("--test-examples", type=int, default=0, help="0: the whole test split")
    p.add_argument("--partition", choices=("iid", "dirichlet"), default="iid")
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=1, help="encodings simulated at once (processes)")
    p.add_argument("--time-budget", type=float, default=0, help="seconds; 0: no limit")
    p.add_argument("--name", help="results file name (default accuracy_cost_<task>)")
    p.add_argument("--out-dir", type=Path, help="where the .md goes (default benchmarks/results)")
    p.add_argument("--jsonl-dir", type=Path,
                   help="where each encoding streams its rounds while running (default: a temp dir)")
    p.add_argument("--from-jsonl", type=Path, help="only render the table from saved per-round lines")
    p.add_argument("--child", help=argparse.SUPPRESS)  # one encoding, in a worker process
    p.add_argument("--jsonl", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- one simulated federation


def parse_spec(spec: str) -> tuple[str, bool, str]:
    """``NAME[:noef][:down=ENC]`` -> (upload encoding, error feedback on, download encoding)."""
    encoding, *flags = spec.split(":")
    download = next((f.split("=", 1)[1] for f in flags if f.startswith("down=")), "float32")
    return encoding, "noef" not in flags, download


def simulate(args: argparse.Namespace, spec: str, sink: Path) -> None:
    import numpy as np
    import torch

    from fedcore import codec
    from fedcore.data import DATASETS, load_dataset, to_tensors
    from fedcore.feedback import ErrorFeedback
    from fedcore.nets import build_model
    from fedcore.partition import partition
    from fedcore.state import buffer_names, load_arrays, state_to_arrays, subtract
    from fedcore.training import evaluate, pick_device, train
    from fedcore.strategies import build_strategy

    encoding, use_feedback, download_encoding = parse_spec(spec)
    device = pick_device(args.device)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True  # the float32 run is then repeatable
    info = DATASETS[args.task]
    arch = args.arch or TASKS[args.task][0]
    root = args.data or TASKS[args.task][1]

    x, y = load_dataset(args.task, root=root, train=True)
    rng = np.random.default_rng(args.seed)
    chosen = rng.permutation(len(y))[: args.clients * args.examples_per_client]
    parts = partition(y[chosen], num_partitions=args.clients, scheme=args.partition, seed=args.seed)
    clients = []
    for part in parts:
        cx, cy = to_tensors(x[chosen[part]], y[chosen[part]], info)
        clients.append((cx.to(device), cy.to(device), len(part)))
    tx, ty = load_dataset(args.task, root=root, train=False)
    if args.test_examples:
        keep = np.random.default_rng(args.seed + 1).permutation(len(ty))[: args.test_examples]
        tx, ty = tx[keep], ty[keep]
    test_x, test_y = (t.to(device) for t in to_tensors(tx, ty, info))

    model = build_model(arch, in_channels=info.in_channels, num_classes=info.num_classes,
                        image_size=info.image_size, seed=args.seed).to(device)
    global_arrays = state_to_arrays(model)
    strategy = build_strategy("fedavg")  # the engine's aggregation path
    feedback = [ErrorFeedback() for _ in clients]
    downlink = Broadcast(download_encoding, buffer_names(model))
    bytes_up = bytes_down = 0
    started = time.perf_counter()
    with sink.open("w") as out:
        for rnd in range(1, args.rounds + 1):
            # Devices train from the replica and send deltas against it; the server adds their
            # mean to the exact global model, as rounds.engine does.
            replica, sent = downlink.send(global_arrays, base_version=rnd - 2)
            contributions, sizes, residuals = [], [], []
            for index, (cx, cy, count) in enumerate(clients):
                base = {k: v.copy() for k, v in replica.items()}
                bytes_down += sent
                load_arrays(model, base)
                train(model, cx, cy, epochs=args.local_epochs, batch_size=args.batch_size, lr=args.lr,
                      momentum=args.momentum, device=device, seed=rnd + index)  # the worker's seeding
                delta = subtract(state_to_arrays(model), base)
                sender = feedback[index] if use_feedback else ErrorFeedback()
                pending = sender.encode(delta, encoding=encoding, base_version=rnd - 1)
                sender.commit(pending)
                decoded = codec.decode(pending.body, kind="delta", manifest=codec.manifest_of(delta))
                contributions.append((decoded.arrays, count))
                sizes.append(len(pending.body))
                residuals.append(pending.residual_norm)
            global_arrays = strategy.aggregate(global_arrays, contributions).model
            bytes_up += sum(sizes)
            load_arrays(model, global_arrays)
            ev = evaluate(model, test_x, test_y, device=device)
            record = {
                "encoding": spec, "round": rnd, "accuracy": ev["accuracy"], "loss": ev["loss"],
                "update_bytes": sum(sizes) / len(sizes), "bytes_up": bytes_up, "bytes_down": bytes_down,
                "residual_norm": sum(residuals) / len(residuals),
                "seconds": round(time.perf_counter() - started, 2),
            }
            out.write(json.dumps(record) + "\n")
            out.flush()
            print(f"[{spec}] round {rnd}: acc {ev['accuracy']:.4f} update {mb(record['update_bytes'])} "
                  f"({record['seconds']:.0f}s)", flush=True)


class Broadcast:
    """The server's broadcast replica (``fedcore.broadcast``, as ``rounds.broadcast`` keeps it) and
    so what every device holds: every client takes part in every round here, so each holds the
    previous replica and is sent the round's one broadcast delta; the first round, and a float32
    run (the reference: the full lossless model every round), send the float32 model.
    """

    def __init__(self, encoding: str, exact: frozenset[str] = frozenset()) -> None:
        self.encoding, self.exact = encoding, exact
        self.replica = None

    def send(self, global_arrays: dict, base_version: int) -> tuple[dict, int]:
        """(the model every device trains from this round, bytes sent to each device)."""
        import numpy as np

        from fedcore import codec
        from fedcore.broadcast import step

        if self.replica is not None and self.encoding != "float32":
            s = step(self.replica, global_arrays, encoding=self.encoding, base_version=base_version, exact=self.exact)
            if s.delta is not None:
                self.replica = s.replica
                return {k: np.array(v) for k, v in s.replica.items()}, len(s.delta)
        self.replica = dict(global_arrays)
        full_bytes = len(codec.encode(global_arrays, encoding="float32", kind="full"))
        return {k: np.array(v) for k, v in global_arrays.items()}, full_bytes


# ---------------------------------------------------------------- orchestration and the report


def run_all(args: argparse.Namespace, argv: list[str]) -> dict[str, list[dict]]:
    specs = [s.strip() for s in args.encodings.split(",") if s.strip()]
    sink_dir = args.jsonl_dir or Path(tempfile.mkdtemp(prefix="accuracy_cost_"))
    sink_dir.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1"}
    deadline = time.monotonic() + args.time_budget if args.time_budget else None
    sinks = {spec: sink_dir / f"{args.task}-{spec.replace(':', '-')}.jsonl" for spec in specs}
    queue, running = list(specs), []
    while queue or running:
        while queue and len(running) < max(1, args.jobs):
            spec = queue.pop(0)
            cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", spec, "--jsonl", str(sinks[spec])]
            running.append((spec, subprocess.Popen(cmd, env=env)))
        time.sleep(0.5)
        for spec, proc in list(running):
            if proc.poll() is not None:
                running.remove((spec, proc))
                if proc.returncode:
                    print(f"[{spec}] exited with {proc.returncode}", flush=True)
        if deadline and time.monotonic() > deadline:
            for spec, proc in running:
                print(f"[{spec}] stopped by --time-budget", flush=True)
                proc.terminate()
                proc.wait(timeout=30)
            running, queue = [], []
    results = {}
    for spec, sink in sinks.items():
        lines = sink.read_text().splitlines() if sink.exists() else []
        results[spec] = [json.loads(line) for line in lines if line.strip()]
    return results


def raw_float32_bytes(args: argparse.Namespace) -> int:
    """Bytes of one update as raw float32: the reference the compression targets are set against."""
    from fedcore import codec
    from fedcore.data import DATASETS
    from fedcore.nets import build_model
    from fedcore.state import state_to_arrays

    info = DATASETS[args.task]
    model = build_model(args.arch or TASKS[args.task][0], in_channels=info.in_channels,
                        num_classes=info.num_classes, image_size=info.image_size)
    return codec.float32_size(codec.manifest_of(state_to_arrays(model)))


def render(args: argparse.Namespace, results: dict[str, list[dict]]) -> str:
    reached = min((len(r) for r in results.values()), default=0)
    if reached == 0:
        return "No encoding finished a round."
    ref = results.get("float32", [])
    ref_final = ref[reached - 1]["accuracy"] if len(ref) >= reached else None
    tail = min(3, reached)

    def mean_tail(recs: list[dict]) -> float:
        return sum(r["accuracy"] for r in recs[reached - tail : reached]) / tail

    ref_tail = mean_tail(ref) if ref_final is not None else None
    raw = raw_float32_bytes(args)
    rows = []
    for spec, recs in results.items():
        last = recs[reached - 1]
        final = last["accuracy"]
        encoding, use_feedback, download = parse_spec(spec)
        rows.append([
            f"`{encoding}`", "float32 full" if download == "float32" else f"{download} deltas",
            "yes" if use_feedback else "no",
            mb(last["bytes_up"] / reached / args.clients),
            f"{raw / (last['bytes_up'] / reached / args.clients):.1f}x",
            f"{100 * final:.2f}",
            f"{100 * (final - ref_final):+.2f}" if ref_final is not None else "",
            f"{100 * mean_tail(recs):.2f}",
            f"{100 * (mean_tail(recs) - ref_tail):+.2f}" if ref_tail is not None else "",
            mb(last["bytes_up"]), mb(last["bytes_down"]), f"{last['seconds']:.0f}",
        ])
    arch = args.arch or TASKS[args.task][0]
    summary = table(
        ["encoding", "download", "error feedback", "bytes per update", f"smaller than raw float32 ({mb(raw)})",
         f"accuracy after round {reached} (%)", "vs float32 (points)", f"mean of last {tail} rounds (%)",
         "vs float32 (points)", "bytes up (total)", "bytes down (total)", "seconds"],
        rows,
    )
    per_round = table(
        ["round", *[f"`{s}`" for s in results]],
        [[str(i + 1), *[f"{100 * recs[i]['accuracy']:.2f}" for recs in results.values()]] for i in range(reached)],
    )
    truncated = (f"\n\nStopped by the time budget: every encoding reached round {reached} of {args.rounds}."
                 if reached < args.rounds else "")
    return (
        f"{arch} on {args.task}: {args.clients} clients x {args.examples_per_client} examples "
        f"({args.partition}), {args.rounds} rounds of {args.local_epochs} local epoch(s), batch "
        f"{args.batch_size}, lr {args.lr}, momentum {args.momentum}, seed {args.seed}; every client "
        f"takes part in every round; test accuracy of the global model on "
        f"{args.test_examples or 'all'} test examples.{truncated}\n\n{summary}\n\n"
        f"Accuracy (%) per round:\n\n{per_round}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        simulate(args, args.child, args.jsonl)
        return 0
    if args.from_jsonl:
        results: dict[str, list[dict]] = {}
        for line in args.from_jsonl.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                results.setdefault(record["encoding"], []).append(record)
        order = [s.strip() for s in args.encodings.split(",")]
        results = {k: results[k] for k in sorted(results, key=lambda k: order.index(k) if k in order else len(order))}
        print(render(args, results))
        return 0
    results = run_all(args, argv)
    name = args.name or f"accuracy_cost_{args.task}"
    table_path = write(name, f"Accuracy cost of the update encodings ({args.task})", render(args, results),
                       out_dir=args.out_dir)
    write_records(table_path.with_suffix(".rounds.jsonl"), results)
    return 0


def write_records(path: Path, results: dict[str, list[dict]]) -> None:
    """Every round's record beside the table: what seed_summary.py and --from-jsonl read back."""
    path.write_text("".join(json.dumps(r) + "\n" for recs in results.values() for r in recs))


if __name__ == "__main__":
    sys.exit(main())
