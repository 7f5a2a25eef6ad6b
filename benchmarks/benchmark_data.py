#!/usr/bin/env python
"""Data-loading throughput: sub-images from LMDB vs the same sub-images as PNG files.

Both sides go through BasicSR's ``PairedImageDataset`` (train phase: random
``--gt-size`` crop, flips, rotations) and a torch ``DataLoader`` with
``--batch-size`` and 0 / 2 worker processes, exactly as training reads them.
The PNG folders are the LMDB values written out byte for byte
(:func:`imdn_plugin.data.lmdb.export_lmdb_to_folder`), so both backends decode
identical files.  Page cache is warm for both (one untimed warm-up pass).

Data: ``--data`` (default ``datasets/demo``, from ``scripts/make_demo_data.py``)
must hold ``DIV2K_train_HR_sub.lmdb`` and ``DIV2K_train_LR_bicubic_X4_sub.lmdb``;
when it does not (or with ``--synthetic``), synthetic images are prepared in a
temporary folder first.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

SCALE = 4


def _synthetic(root: Path, n_images: int = 6) -> Path:
    """A DIV2K-layout folder with ``n_images`` 480x720 textured images, prepared into LMDBs."""
    import cv2
    import numpy as np

    from imdn_plugin.data.div2k import prepare_div2k

    hr_dir = root / "DIV2K_train_HR"
    hr_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:720]
    for i in range(1, n_images + 1):
        base = np.stack([np.sin(xx / (7 + i + c)) * np.cos(yy / (11 + c)) for c in range(3)], -1) * 100 + 128
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(hr_dir / f"{i:04d}.png"), img)
    prepare_div2k(root, scales=[SCALE], crop_size=240, step=120, progress=False)
    return root


def _loader(hr: Path, lr: Path, backend: str, gt_size: int, batch: int, workers: int, n_samples: int):
    import torch
    from basicsr.data.paired_image_dataset import PairedImageDataset

    ds = PairedImageDataset({
        "dataroot_gt": str(hr), "dataroot_lq": str(lr), "io_backend": {"type": backend},
        "filename_tmpl": "{}", "gt_size": gt_size, "use_hflip": True, "use_rot": True,
        "scale": SCALE, "phase": "train",
    })
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=n_samples,
                                             generator=torch.Generator().manual_seed(0))
    return ds, torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                                           drop_last=True)


def measure(hr: Path, lr: Path, backend: str, gt_size: int, batch: int, workers: int, batches: int) -> float:
    """Samples per second over ``batches`` batches, after one untimed pass (warm cache, workers up)."""
    ds, loader = _loader(hr, lr, backend, gt_size, batch, workers, batch * batches)
    for _ in loader:  # warm-up: page cache, worker start, LMDB open
        pass
    t0 = time.perf_counter()
    n = 0
    for b in loader:
        n += b["gt"].shape[0]
    dt = time.perf_counter() - t0
    if ds.file_client is not None and backend == "lmdb":  # py-lmdb opens a path once per process
        for env in ds.file_client.client._client.values():
            env.close()
    return n / dt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="datasets/demo", metavar="DIR", help="folder with the x4 sub-image LMDBs")
    p.add_argument("--synthetic", action="store_true", help="use synthetic data even if --data exists")
    p.add_argument("--gt-size", type=int, default=192, help="HR training crop (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="default: %(default)s")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers (default: 0 2)")
    p.add_argument("--batches", type=int, default=20, help="timed batches per measurement (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="measurements per cell, best kept (default: %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    import torch

    import imdn_plugin  # noqa: F401  (the torchvision alias before basicsr)
    from imdn_plugin.data.lmdb import export_lmdb_to_folder, read_meta_info

    with tempfile.TemporaryDirectory(prefix="imdn_bench_") as tmp:
        tmp = Path(tmp)
        data = Path(args.data)
        hr_lmdb, lr_lmdb = data / "DIV2K_train_HR_sub.lmdb", data / f"DIV2K_train_LR_bicubic_X{SCALE}_sub.lmdb"
        source = str(data)
        if args.synthetic or not (hr_lmdb.is_dir() and lr_lmdb.is_dir()):
            data = _synthetic(tmp / "synthetic")
            hr_lmdb, lr_lmdb = data / "DIV2K_train_HR_sub.lmdb", data / f"DIV2K_train_LR_bicubic_X{SCALE}_sub.lmdb"
            source = "synthetic (6 images 720x480)"
        hr_png, lr_png = tmp / "hr_png", tmp / "lr_png"
        n_sub = export_lmdb_to_folder(hr_lmdb, hr_png, progress=False)
        export_lmdb_to_folder(lr_lmdb, lr_png, progress=False)
        hr_side = next(iter(read_meta_info(hr_lmdb).values()))[0]

        print(f"data: {source}: {n_sub} sub-image pairs ({hr_side}px HR, {hr_side // SCALE}px LR, x{SCALE}); "
              f"PairedImageDataset train phase, gt_size {args.gt_size}, batch {args.batch_size}, hflip+rot; "
              f"torch threads {torch.get_num_threads()}; best of {args.repeats} x {args.batches} batches")
        rows = []
        for workers in args.workers:
            for backend, hr, lr in (("lmdb", hr_lmdb, lr_lmdb), ("disk", hr_png, lr_png)):
                best = max(measure(hr, lr, backend, args.gt_size, args.batch_size, workers, args.batches)
                           for _ in range(args.repeats))
                rows.append((backend, workers, best))
        print()
        print("| source            | num_workers | samples/s |")
        print("|-------------------|------------:|----------:|")
        for backend, workers, rate in rows:
            name = "LMDB" if backend == "lmdb" else "PNG folder (disk)"
            print(f"| {name:<17} | {workers:>11} | {rate:>9.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
