#!/usr/bin/env python
"""Training iterations per second: IMDNModel's step vs BasicSR's plain SRModel step.

    python benchmarks/benchmark_training.py                 # CPU, IMDN x4, batch 16, 192x192 HR patches
    python benchmarks/benchmark_training.py --device cuda --amp bf16

Both models train the same network (IMDN, paper settings) on the same random batches,
steps interleaved so that machine load affects both alike; the data loader is left out
(see benchmarks/benchmark_data.py). Prints a markdown table with the median and the
interquartile range of the time per iteration and the speed ratio.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import imdn_plugin


def build(model_type: str, device: str, scale: int, train_extra: dict):
    from basicsr.models import build_model

    opt = {
        "model_type": model_type, "num_gpu": 1 if device == "cuda" else 0, "dist": False, "is_train": True,
        "network_g": {"type": "IMDN", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_block": 6, "upscale": scale},
        "path": {},
        "train": {"ema_decay": 0, "optim_g": {"type": "Adam", "lr": 2e-4, "betas": [0.9, 0.999]},
                  "scheduler": {"type": "MultiStepLR", "milestones": [200000], "gamma": 0.5},
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}, **train_extra},
    }  # fmt: skip
    torch.manual_seed(0)
    return build_model(opt)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--gt-size", type=int, default=192)
    ap.add_argument("--iters", type=int, default=8, help="timed iterations per candidate")
    ap.add_argument("--amp", default=None, choices=("bf16", "fp16"), help="autocast for IMDNModel (GPU)")
    args = ap.parse_args()
    imdn_plugin.register()
    lr = args.gt_size // args.scale
    candidates = {
        "SRModel (BasicSR, plain step)": build("SRModel", args.device, args.scale, {}),
        "IMDNModel (channels_last)": build("IMDNModel", args.device, args.scale, {"channels_last": True}),
    }
    if args.amp:
        candidates[f"IMDNModel (channels_last, {args.amp})"] = build(
            "IMDNModel", args.device, args.scale, {"channels_last": True, "amp": args.amp}
        )
    gen = torch.Generator().manual_seed(0)
    batches = [
        {"lq": torch.rand(args.batch, 3, lr, lr, generator=gen), "gt": torch.rand(args.batch, 3, args.gt_size, args.gt_size, generator=gen)}
        for _ in range(2)
    ]
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for it in range(args.iters + 2):  # 2 warm-up iterations
        for name, model in candidates.items():
            sync(args.device)
            t = time.perf_counter()
            model.feed_data(batches[it % 2])
            model.optimize_parameters(it + 1)
            sync(args.device)
            if it >= 2:
                times[name].append(time.perf_counter() - t)
    base = statistics.median(times["SRModel (BasicSR, plain step)"])
    dev = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"Training step, IMDN x{args.scale}, batch {args.batch}, HR {args.gt_size}x{args.gt_size}, "
          f"{dev}, torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print()
    print("| step | s/iter (median) | IQR | iter/s | vs SRModel |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0], ts[0], ts[0]]
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {q[0]:.3f}-{q[2]:.3f} | {1 / med:.2f} | {base / med:.2f}x |")


if __name__ == "__main__":
    main()
