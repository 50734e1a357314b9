"""Bytes, speed and error of every way to put a model (or an update) on the wire.

For ResNet-18 and ResNet-50 in CIFAR form (10 classes) it measures the full weights and a real
update: the delta after one local epoch of training on part of the CIFAR-10 subset. Rows:
JSON, pickled float32, raw float32, the prototype (bfloat16 torch tensors, pickled, zstd level
3), every encoding in ``fedcore.codec.ENCODINGS``, and two int4 design alternatives that are not
on the wire (groups of 128 along the flattened tensor; stochastic rounding), measured with the
same quantizer so the choice made in fedcore.quantize can be checked.

    python benchmarks/codec_sizes.py                       # both models, 512 training images
    python benchmarks/codec_sizes.py --archs resnet18 --examples 256 --repeats 3

Pickle appears here only to measure the prototype; product code never unpickles.
"""
from __future__ import annotations

import argparse
import functools
import json
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from report import REPO, mb, table, write

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-subset.npz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 .npz (default: %(default)s)")
    p.add_argument("--archs", default="resnet18,resnet50")
    p.add_argument("--examples", type=int, default=512, help="training images for the real update")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--repeats", type=int, default=5, help="timings are the median of this many runs")
    p.add_argument("--threads", type=int, default=0, help="torch threads for the training (0: default)")
    p.add_argument("--name", default="codec_sizes")
    p.add_argument("--out-dir", type=Path)
    return p.parse_args(argv)


# ---------------------------------------------------------------- the tensors to measure


def model_and_update(arch: str, args: argparse.Namespace) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(initial weights, the delta after one epoch on ``args.examples`` CIFAR-10 images)."""
    from fedcore.data import DATASETS, load_cifar_npz, to_tensors
    from fedcore.nets import build_model
    from fedcore.state import state_to_arrays, subtract
    from fedcore.training import train

    info = DATASETS["cifar10"]
    x, y = load_cifar_npz(args.data, train=True)
    pick = np.random.default_rng(0).permutation(len(y))[: args.examples]
    tx, ty = to_tensors(x[pick], y[pick], info)
    model = build_model(arch, in_channels=3, num_classes=10, image_size=32, seed=0)
    weights = state_to_arrays(model)
    started = time.perf_counter()
    train(model, tx, ty, epochs=1, batch_size=args.batch_size, lr=args.lr, device="cpu", seed=0)
    print(f"{arch}: trained one epoch on {len(ty)} images in {time.perf_counter() - started:.1f}s", flush=True)
    # np.asarray: subtract() turns 0-d buffers (num_batches_tracked) into numpy scalars.
    return weights, {k: np.asarray(v) for k, v in subtract(state_to_arrays(model), weights).items()}


# ---------------------------------------------------------------- the ways to send them


Codec = tuple[Callable[[], bytes], Callable[[bytes], dict[str, np.ndarray]]]


def baselines(arrays: dict[str, np.ndarray]) -> dict[str, Codec]:
    import torch
    import zstandard

    def json_enc() -> bytes:
        return json.dumps({k: v.tolist() for k, v in arrays.items()}).encode()

    def json_dec(b: bytes) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=arrays[k].dtype) for k, v in json.loads(b).items()}

    def raw_enc() -> bytes:
        return b"".join(np.ascontiguousarray(v, dtype=v.dtype if v.dtype.kind != "f" else np.float32).tobytes()
                        for v in arrays.values())

    def raw_dec(b: bytes) -> dict[str, np.ndarray]:
        out, pos = {}, 0
        for k, v in arrays.items():
            dtype = v.dtype if v.dtype.kind != "f" else np.dtype(np.float32)
            out[k] = np.frombuffer(b, dtype, count=v.size, offset=pos).reshape(v.shape)
            pos += v.size * dtype.itemsize
        return out

    def proto_enc() -> bytes:
        # What the prototype did: cast to bfloat16 torch tensors, pickle, zstd level 3.
        state = {k: torch.from_numpy(v).to(torch.bfloat16) if v.dtype.kind == "f" else torch.from_numpy(v)
                 for k, v in arrays.items()}
        return zstandard.ZstdCompressor(level=3).compress(pickle.dumps(state))

    def proto_dec(b: bytes) -> dict[str, np.ndarray]:
        state = pickle.loads(zstandard.ZstdDecompressor().decompress(b))  # benchmark only
        return {k: (t.float() if t.is_floating_point() else t).numpy() for k, t in state.items()}

    return {
        "JSON": (json_enc, json_dec),
        "pickled float32": (lambda: pickle.dumps(arrays), pickle.loads),
        "raw float32": (raw_enc, raw_dec),
        "prototype (bf16 + pickle + zstd 3)": (proto_enc, proto_dec),
    }


def ours(arrays: dict[str, np.ndarray], *, delta: bool) -> dict[str, Codec | None]:
    from fedcore import codec

    kind = {"kind": "delta", "base_version": 0} if delta else {"kind": "full"}
    out: dict[str, Codec | None] = {}
    for enc in codec.ENCODINGS:
        if not delta and enc in codec.DELTA_ONLY_ENCODINGS:
            out[f"`{enc}`"] = None  # refused for full weights, on purpose
            continue
        out[f"`{enc}`"] = (
            lambda enc=enc: codec.encode(arrays, encoding=enc, **kind),
            lambda b: codec.decode(b).arrays,
        )
    return out


def int4_alternatives(arrays: dict[str, np.ndarray]) -> dict[str, Codec]:
    """int4 with other scale layouts / rounding, framed like the wire (scales + nibbles, zstd 1)."""
    import zstandard

    from fedcore import quantize

    def quantize_groups(x: np.ndarray, group: int | None, stochastic: bool, rng) -> tuple[np.ndarray, np.ndarray]:
        flat = x.reshape(-1).astype(np.float32)
        if group is None:  # per row, as on the wire
            rows = quantize.row_count(x.shape)
            grid = flat.reshape(rows, -1) if rows else flat.reshape(0, 0)
        else:
            padded = np.zeros(-(-flat.size // group) * group, np.float32)
            padded[: flat.size] = flat
            grid = padded.reshape(-1, group)
        scales = (np.abs(grid).max(axis=1) / 7).astype(np.float32) if grid.size else np.zeros(0, np.float32)
        y = np.zeros(grid.shape, np.float32)
        np.divide(grid, scales[:, None], out=y, where=scales[:, None] > 0)
        y = np.floor(y + rng.random(y.shape, dtype=np.float32)) if stochastic else np.rint(y)
        q = np.clip(y, -7, 7).astype(np.int8)
        recon = (q.astype(np.float32) * scales[:, None]).reshape(-1)[: flat.size].reshape(x.shape)
        return np.concatenate([scales.view(np.uint8), quantize.pack_nibbles(q.reshape(-1))]), recon

    def variant(group: int | None, stochastic: bool) -> Codec:
        recon: dict[str, np.ndarray] = {}

        def enc() -> bytes:
            rng = np.random.default_rng(0)
            parts = []
            for k, v in arrays.items():
                if v.dtype.kind == "f" and v.ndim >= 2:
                    data, recon[k] = quantize_groups(v, group, stochastic, rng)
                    parts.append(data.tobytes())
                elif v.dtype.kind == "f":  # vectors as int8, one scale, exactly as on the wire
                    scales, q = quantize.quantize_rows(v, quantize.INT8_MAX)
                    recon[k] = quantize.dequantize_rows(scales, q, v.shape)
                    parts.append(scales.tobytes() + q.tobytes())
                else:
                    recon[k] = v
                    parts.append(np.ascontiguousarray(v).tobytes())
            return zstandard.ZstdCompressor(level=1).compress(b"".join(parts))

        return enc, lambda b: (zstandard.ZstdDecompressor().decompress(b), recon)[1]

    return {
        "int4, groups of 128 (not on the wire)": variant(128, False),
        "int4, per row, stochastic rounding (not on the wire)": variant(None, True),
    }


# ---------------------------------------------------------------- measuring


def relative_error(x: dict[str, np.ndarray], y: dict[str, np.ndarray], *, min_ndim: int = 0) -> float:
    """||y - x|| / ||x|| over the float tensors with at least ``min_ndim`` dimensions."""
    num = den = 0.0
    for k, v in x.items():
        if v.dtype.kind == "f" and v.ndim >= min_ndim:
            d = np.asarray(y[k], np.float64) - v.astype(np.float64)
            num += float(np.dot(d.reshape(-1), d.reshape(-1)))
            den += float(np.dot(v.reshape(-1).astype(np.float64), v.reshape(-1).astype(np.float64)))
    return (num / den) ** 0.5 if den else 0.0


def median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def measure(arrays: dict[str, np.ndarray], ways: dict[str, Codec | None], repeats: int) -> list[dict]:
    rows = []
    for name, way in ways.items():
        if way is None:
            rows.append({"name": name, "refused": True})
            continue
        enc, dec = way
        n = 1 if name == "JSON" else repeats  # JSON takes tens of seconds a run: once is enough
        enc_s, blob = median_seconds(enc, n)
        dec_s, decoded = median_seconds(functools.partial(dec, blob), n)
        rows.append({"name": name, "bytes": len(blob), "encode": enc_s, "decode": dec_s,
                     "error": relative_error(arrays, decoded), "runs": n,
                     "weight_error": relative_error(arrays, decoded, min_ndim=2)})
        print(f"  {name}: {mb(len(blob))}, {enc_s * 1e3:.0f} + {dec_s * 1e3:.0f} ms", flush=True)
    return rows


def render(title: str, rows: list[dict], raw: int) -> str:
    proto = next(r["bytes"] for r in rows if r["name"].startswith("prototype"))
    proto_time = next(r["encode"] + r["decode"] for r in rows if r["name"].startswith("prototype"))
    body = []
    for r in rows:
        if r.get("refused"):
            body.append([r["name"], "refused: quantizers are for updates only", "", "", "", "", "", "", ""])
            continue
        both = r["encode"] + r["decode"]
        body.append([
            r["name"], mb(r["bytes"]), f"{raw / r['bytes']:.2f}x", f"{proto / r['bytes']:.2f}x",
            f"{r['encode'] * 1e3:.0f}" + ("" if r["runs"] > 1 else " (1 run)"), f"{r['decode'] * 1e3:.0f}",
            f"{both / proto_time:.2f}", f"{r['error']:.2e}" if r["error"] else "0 (exact)",
            f"{r['weight_error']:.2e}" if r["weight_error"] else "0 (exact)",
        ])
    return f"### {title}\n\n" + table(
        ["format", "bytes", "smaller than raw float32", "smaller than the prototype", "encode ms",
         "decode ms", "encode+decode time / prototype's", "relative error (all floats)",
         "relative error (conv/linear weights)"],
        body,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from fedcore import codec

    if args.threads:
        torch.set_num_threads(args.threads)
    sections = []
    for arch in [a.strip() for a in args.archs.split(",") if a.strip()]:
        weights, update = model_and_update(arch, args)
        raw = codec.float32_size(codec.manifest_of(weights))
        floats = sum(v.size for v in weights.values() if v.dtype.kind == "f")
        for what, arrays, delta in (("real update (one local epoch)", update, True), ("full weights", weights, False)):
            print(f"{arch} {what}:", flush=True)
            ways = {**baselines(arrays), **ours(arrays, delta=delta), **(int4_alternatives(arrays) if delta else {})}
            rows = measure(arrays, ways, args.repeats)
            sections.append(render(f"{arch}, {what}: {floats / 1e6:.2f} M floats, {mb(raw)} as raw float32", rows, raw))
    intro = (
        f"Real update: one epoch of SGD (batch {args.batch_size}, lr {args.lr}, momentum 0.9) from the "
        f"seed-0 initial weights on {args.examples} images of the CIFAR-10 subset, on the CPU. Times are the "
        f"median of {args.repeats} runs on one process; relative error is ||decoded - x|| / ||x|| over all "
        "float tensors, and over the conv/linear weights alone (in an update the BatchNorm running "
        "statistics, sent as int8 under every quantized encoding, are the largest values and dominate "
        "the first figure). The errors of int4 and top-k are the loss of *one* round: error feedback "
        "(fedcore.feedback) sends what they drop in the next rounds, see accuracy_cost_*.md."
    )
    write(args.name, "Wire size, speed and error of each encoding", intro + "\n\n" + "\n\n".join(sections),
          out_dir=args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
