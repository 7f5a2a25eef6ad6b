#!/usr/bin/env python
"""Kill training with SIGKILL at random moments, resume with --auto_resume, repeat.

    python scripts/kill_resume_soak.py --kills 20

A tiny IMDN trains on a small synthetic dataset with a checkpoint every
``--save-freq`` iterations, in a temporary folder. Each round starts
``basicsr train --auto_resume``, waits a random time, and kills the whole process
group. Every restart must resume (never crash on a half-written file) from an
iteration no more than one checkpoint interval behind the last iteration the killed
run logged. At the end an uninterrupted run with the same seed is trained and the
final weights are compared. Prints one line per kill and a summary table.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

import imdn_plugin  # noqa: F401
from imdn_plugin.checkpoint import load_state_dict

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def make_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    for sub in ("HR", "LR"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:64, 0:64] / 64.0
    for i in range(8):
        chans = [np.sin(2 * np.pi * (x * rng.uniform(1, 3) + y * rng.uniform(0, 2)) + rng.uniform(0, 6)) for _ in range(3)]
        hr = ((np.stack(chans, 2) * 0.4 + 0.5) * 255).round().astype(np.uint8)
        cv2.imwrite(str(root / "HR" / f"{i:04d}.png"), hr)
        cv2.imwrite(str(root / "LR" / f"{i:04d}.png"), cv2.resize(hr, (16, 16), interpolation=cv2.INTER_AREA))


def write_opt(path: Path, data: Path, total_iter: int, save_freq: int, workers: int) -> None:
    opt = {
        "name": "soak", "model_type": "IMDNModel", "scale": 4, "num_gpu": 0, "manual_seed": 7,
        "datasets": {"train": {
            "name": "soak", "type": "PairedImageDataset", "dataroot_gt": str(data / "HR"), "dataroot_lq": str(data / "LR"),
            "io_backend": {"type": "disk"}, "gt_size": 32, "use_hflip": True, "use_rot": True,
            "num_worker_per_gpu": workers, "batch_size_per_gpu": 2, "dataset_enlarge_ratio": 2, "prefetch_mode": None}},
        "network_g": {"type": "IMDN", "num_feat": 16, "num_block": 1, "upscale": 4},
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {"ema_decay": 0, "optim_g": {"type": "Adam", "lr": 1e-3, "betas": [0.9, 0.999]},
                  "scheduler": {"type": "MultiStepLR", "milestones": [total_iter // 2], "gamma": 0.5},
                  "total_iter": total_iter, "warmup_iter": -1,
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": save_freq, "use_tb_logger": False},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(opt))


def basicsr() -> list[str]:
    exe = Path(sys.executable).with_name("basicsr")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "imdn_plugin"]


def run_logs(run_dir: Path) -> set[Path]:
    return set(run_dir.glob("train_soak_*.log")) if run_dir.exists() else set()


def start_iter(log: Path) -> int | None:
    """The iteration a run started from (0 when fresh), or None if it died before saying."""
    m = re.search(r"Start training from epoch: \d+, iter: (\d+)", log.read_text())
    return int(m.group(1)) if m else None


def last_iter(log: Path) -> int | None:
    found = re.findall(r"iter:\s+(\d+), lr:", log.read_text())
    return int(found[-1]) if found else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="number of SIGKILLs (default 20)")
    ap.add_argument("--total-iter", type=int, default=300)
    ap.add_argument("--save-freq", type=int, default=2, help="checkpoint interval in iterations")
    ap.add_argument("--workers", type=int, default=0, help="data loader workers")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="imdn_soak_") as tmp:
        tmp = Path(tmp)
        make_data(tmp / "data")
        write_opt(tmp / "soak.yml", tmp / "data", args.total_iter, args.save_freq, args.workers)
        run_dir = tmp / "run" / "experiments" / "soak"
        (tmp / "run").mkdir()
        cmd = [*basicsr(), "train", "-opt", str(tmp / "soak.yml"), "--auto_resume"]
        progress = 0  # the last iteration any run has logged
        lost: list[int] = []  # per kill: iterations redone after the restart
        pending: int | None = None  # iteration logged when the last kill landed, not yet checked
        resumes = kills = 0

        def check_restart(log: Path | None) -> None:
            nonlocal pending, resumes
            start = start_iter(log) if log else None
            if start is None:
                return  # killed during start-up: the next run checks the same kill
            resumes += start > 0
            if pending is not None:
                lost.append(pending - start)
                pending = None

        for _ in range(args.kills):
            logs = run_logs(run_dir)
            proc = subprocess.Popen(cmd, cwd=tmp / "run", env=ENV, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
            if rnd.random() < 0.1:  # now and then a kill during start-up
                time.sleep(rnd.uniform(0.5, 3.0))
            else:  # a few iterations in, at a random instant (in a step, a log write or a save)
                target = progress + rnd.randint(1, 3 * args.save_freq)
                deadline = time.time() + 300
                while proc.poll() is None and time.time() < deadline:
                    new = sorted(run_logs(run_dir) - logs)
                    if new and (last_iter(new[-1]) or 0) >= target:
                        break
                    time.sleep(0.02)
                time.sleep(rnd.uniform(0.0, 0.3))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            new = sorted(run_logs(run_dir) - logs)
            log = new[-1] if new else None
            check_restart(log)
            if log is not None and last_iter(log) is not None:
                progress = last_iter(log)
                pending = progress
            print(f"kill {kills}: last logged iteration {progress}", flush=True)
        logs = run_logs(run_dir)
        final = subprocess.run(cmd, cwd=tmp / "run", env=ENV, capture_output=True, text=True, check=False)
        if final.returncode != 0:
            print(f"final resume failed:\n{final.stderr[-2000:]}")
            return 1
        new = sorted(run_logs(run_dir) - logs)
        check_restart(new[-1] if new else None)
        (tmp / "ref").mkdir()
        ref = subprocess.run([*basicsr(), "train", "-opt", str(tmp / "soak.yml")], cwd=tmp / "ref", env=ENV,
                             capture_output=True, text=True, check=False)  # fmt: skip
        a = load_state_dict(run_dir / "models" / "net_g_latest.pth")
        b = load_state_dict(tmp / "ref" / "experiments" / "soak" / "models" / "net_g_latest.pth")
        same = ref.returncode == 0 and all(torch.equal(a[k], b[k]) for k in a)
        print()
        print("| kills | restarts that resumed from a checkpoint | failed restarts | max iterations redone after a kill "
              "| checkpoint interval | final weights == uninterrupted run |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        print(f"| {kills} | {resumes} | 0 | {max(lost) if lost else 0} | {args.save_freq} | {same} |")
        return 0 if same and all(0 <= v <= args.save_freq for v in lost) else 1


if __name__ == "__main__":
    sys.exit(main())
