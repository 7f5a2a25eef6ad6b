#!/usr/bin/env python
"""Check memory-bounded tiling (imdn_plugin.inference.cropping.tiled_forward) against whole-image inference.

Uses the IMDN authors' released weights and Set5 (read-only reference data, by
default at ``../shared/reference`` relative to the repository root) and prints:

(a) Set5 ×4 with IMDN_x4: Y-channel PSNR (BasicSR ``calculate_psnr``,
    ``test_y_channel=True``, ``crop_border=4``, uint8 outputs) of whole-image
    vs tiled inference against HR, per image and on average, for the default
    tile settings and for a small tile that forces several tiles per image;
(b) large images: a 1024×1024 mosaic of Set5 HR images through IMDN_AS (input:
    MATLAB-bicubic ×1/4 then ×4) and its 512×512 ×1/4 counterpart (from a 2048
    mosaic) through IMDN_x4: PSNR of tiled vs whole and both against the ground truth;
(c) peak resident memory (``ru_maxrss``) of ``tiled_forward`` in fresh
    subprocesses, one per case: IMDN_AS on 1024² vs 2048², IMDN_x4 on 512² vs 1024² LR.

The IMDN blocks' contrast-aware channel attention (CCA) uses per-channel
statistics of the whole feature map, so tiled and whole-image outputs differ
slightly; without CCA the stitching is exact (see tests/inference/test_cropping.py).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
SET5 = ("baby", "bird", "butterfly", "head", "woman")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from imdn_plugin.inference.tiling import (
        DEFAULT_OVERLAP,
        DEFAULT_TILE,
        DEFAULT_TILE_BATCH,
    )

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--x4", type=Path, default=REFERENCE / "checkpoints" / "IMDN_x4.pth", help="IMDN ×4 weights (%(default)s)")
    p.add_argument("--as-weights", type=Path, default=REFERENCE / "checkpoints" / "IMDN_AS.pth", help="IMDN_AS weights (%(default)s)")
    p.add_argument("--set5", type=Path, default=REFERENCE / "Set5", help="Set5 folder with HR/ and LR_bicubic/X4/ (%(default)s)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile side in input pixels (default %(default)s)")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap in input pixels (default %(default)s)")
    p.add_argument("--batch", type=int, default=DEFAULT_TILE_BATCH, help="tiles per network call (default %(default)s)")
    p.add_argument("--small-tile", type=int, default=48, help="small tile forcing tiling on Set5 LR (default %(default)s)")
    p.add_argument("--small-overlap", type=int, default=8, help="overlap for --small-tile (default %(default)s)")
    p.add_argument("--tile-stats", choices=("global", "local"), default="global",
                   help="CCA statistics of the tiles: whole image (the plugin's default) or per tile (default %(default)s)")  # fmt: skip
    p.add_argument("--skip-large", action="store_true", help="skip part (b)")
    p.add_argument("--skip-memory", action="store_true", help="skip part (c)")
    p.add_argument("--memory-case", nargs=2, metavar=("NET", "SIZE"), help=argparse.SUPPRESS)  # internal: one subprocess
    return p.parse_args(argv)


# --------------------------------------------------------------------------- helpers


def load_net(kind: str, path: Path):
    import torch

    from imdn_plugin.archs.imdn_arch import IMDN, IMDN_AS

    if not path.is_file():
        sys.exit(f"check_tiling: weights not found: {path}")
    net = IMDN_AS() if kind == "as" else IMDN(upscale=4)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    return net.eval()


def to_tensor(img_rgb):
    """HWC float32 RGB in [0, 1] → 1×3×H×W."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(img_rgb.transpose(2, 0, 1)))[None].float()


def to_uint8_bgr(t):
    """1×3×H×W RGB in [0, 1] → HWC uint8 BGR (what BasicSR's metrics expect)."""
    import numpy as np

    arr = t[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray((arr * 255.0).round().astype(np.uint8)[:, :, ::-1])


def psnr_y(out_bgr, gt_bgr, border: int) -> float:
    from basicsr.metrics import calculate_psnr

    return float(calculate_psnr(out_bgr, gt_bgr, crop_border=border, test_y_channel=True))


def psnr_rgb(a_bgr, b_bgr) -> float:
    import numpy as np

    mse = np.mean((a_bgr.astype(np.float64) - b_bgr.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def run_tiled(net, x, args: argparse.Namespace, *, scale: int, tile: int, overlap: int, multiple: int = 1):
    """The tiled path under test: whole-image CCA statistics (global) or per-tile ones (local)."""
    from imdn_plugin.inference.global_tiling import global_tiled_forward
    from imdn_plugin.inference.tiling import tiled_forward

    if args.tile_stats == "global":
        return global_tiled_forward(net, x, tile=tile, overlap=overlap, batch=args.batch)
    return tiled_forward(net, x, scale=scale, tile=tile, overlap=overlap, batch=args.batch, multiple=multiple)


def num_tiles(h: int, w: int, tile: int, overlap: int, multiple: int) -> int:
    from imdn_plugin.inference.tiling import tile_count

    return tile_count(h, w, tile, overlap, multiple)


def mosaic(set5: Path, size: int, cell: int = 512):
    """``size``×``size`` RGB float mosaic of Set5 HR images, each symmetric-padded/cropped to ``cell``."""
    import cv2
    import numpy as np

    imgs = []
    for name in SET5:
        im = cv2.imread(str(set5 / "HR" / f"{name}.bmp"), cv2.IMREAD_COLOR)[:, :, ::-1]
        h, w = im.shape[:2]
        im = np.pad(im, ((0, max(0, cell - h)), (0, max(0, cell - w)), (0, 0)), mode="symmetric")[:cell, :cell]
        imgs.append(im.astype(np.float32) / 255.0)
    n = size // cell
    rows = [np.concatenate([imgs[(r * n + c) % len(imgs)] for c in range(n)], axis=1) for r in range(n)]
    return np.concatenate(rows, axis=0)


def table(title: str, header: list[str], rows: list[list]) -> None:
    def cell(value: object, key: str) -> str:
        if not isinstance(value, float):
            return str(value)
        if value == float("inf"):
            return "inf"
        return f"{value:+.4f}" if key.startswith("diff") else f"{value:.4f}"

    cells = [header] + [[cell(v, k) for v, k in zip(r, header, strict=True)] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))


# --------------------------------------------------------------------------- (a) Set5


def part_a(args: argparse.Namespace) -> None:
    import cv2
    import numpy as np
    import torch


    net = load_net("x4", args.x4)
    settings = [(args.tile, args.overlap, "default"), (args.small_tile, args.small_overlap, "small")]
    rows = []
    sums = {s[2]: [0.0, 0.0] for s in settings}
    for name in SET5:
        hr = cv2.imread(str(args.set5 / "HR" / f"{name}.bmp"), cv2.IMREAD_COLOR)
        lr = cv2.imread(str(args.set5 / "LR_bicubic" / "X4" / f"{name}x4.bmp"), cv2.IMREAD_COLOR)
        h, w = lr.shape[:2]
        gt = hr[: 4 * h, : 4 * w]
        x = to_tensor(lr[:, :, ::-1].astype(np.float32) / 255.0)
        with torch.no_grad():
            whole = psnr_y(to_uint8_bgr(net(x)), gt, 4)
            row = [name, f"{h}x{w}", whole]
            for tile, overlap, key in settings:
                out = run_tiled(net, x, args, scale=4, tile=tile, overlap=overlap)
                tiled = psnr_y(to_uint8_bgr(out), gt, 4)
                row += [num_tiles(h, w, tile, overlap, 1), tiled, tiled - whole]
                sums[key][0] += whole
                sums[key][1] += tiled
        rows.append(row)
    k = len(SET5)
    avg = ["average", "", sums["default"][0] / k]
    for _, _, key in settings:
        avg += ["", sums[key][1] / k, (sums[key][1] - sums[key][0]) / k]
    rows.append(avg)
    table(
        f"(a) Set5 x4, IMDN_x4, Y-PSNR (dB) vs HR; default tile={args.tile} overlap={args.overlap} batch={args.batch}; "
        f"small tile={args.small_tile} overlap={args.small_overlap}",
        ["image", "LR", "whole", "tiles", "tiled", "diff", "tiles(s)", "tiled(s)", "diff(s)"],
        rows,
    )


# --------------------------------------------------------------------------- (b) large images


def part_b(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from basicsr.utils.matlab_functions import imresize


    rows = []
    for kind, hr_size in (("as", 1024), ("x4", 2048)):
        gt = mosaic(args.set5, hr_size)
        lr = np.clip(imresize(gt, 0.25), 0, 1)
        if kind == "as":
            net, x, scale, multiple, label = load_net("as", args.as_weights), np.clip(imresize(lr, 4.0), 0, 1), 1, 4, "IMDN_AS"
        else:
            net, x, scale, multiple, label = load_net("x4", args.x4), lr, 4, 1, "IMDN_x4"
        x_t = to_tensor(x.astype(np.float32))
        gt_bgr = np.ascontiguousarray((gt * 255.0).round().astype(np.uint8)[:, :, ::-1])
        h, w = x.shape[:2]
        with torch.no_grad():
            t0 = time.perf_counter()
            whole = to_uint8_bgr(net(x_t))
            t_whole = time.perf_counter() - t0
            configs = [(args.tile, args.overlap)] + [(t, args.overlap) for t in (512, 1024) if t > args.tile and t < max(h, w)]
            p_whole = psnr_y(whole, gt_bgr, 4)
            for tile, overlap in configs:
                t0 = time.perf_counter()
                tiled = to_uint8_bgr(run_tiled(net, x_t, args, scale=scale, tile=tile, overlap=overlap, multiple=multiple))
                t_tiled = time.perf_counter() - t0
                p_tiled = psnr_y(tiled, gt_bgr, 4)
                rows.append([label, f"{h}x{w}", f"{tile}/{overlap}", num_tiles(h, w, tile, overlap, multiple),
                             psnr_rgb(tiled, whole), p_whole, p_tiled, p_tiled - p_whole, f"{t_whole:.1f}/{t_tiled:.1f}"])
        del net
    table(
        "(b) large Set5 mosaics: tiled vs whole (RGB PSNR, uint8) and Y-PSNR vs ground truth (dB)",
        ["net", "input", "tile/ovl", "tiles", "tiled~whole", "whole~GT", "tiled~GT", "diff", "time s (w/t)"],
        rows,
    )


# --------------------------------------------------------------------------- (c) memory


def memory_case(args: argparse.Namespace) -> None:
    """Child process: report ru_maxrss (KiB) before and after one tiled_forward."""
    import torch


    kind, size = args.memory_case[0], int(args.memory_case[1])
    net = load_net(kind, args.as_weights if kind == "as" else args.x4)
    scale, multiple = (1, 4) if kind == "as" else (4, 1)
    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with torch.no_grad():
        out = run_tiled(net, x, args, scale=scale, tile=args.tile, overlap=args.overlap, multiple=multiple)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"base_kib": base, "peak_kib": peak, "out": list(out.shape), "seconds": seconds}))


#: Runs its arguments as a grandchild: a process exec'd straight from this (large) one would start with
#: this process's ru_maxrss (Linux keeps the pre-exec high-water mark), a fork of a small launcher does not.
LAUNCHER = [sys.executable, "-S", "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"]


def part_c(args: argparse.Namespace) -> None:
    results = {}
    cases = [("as", 1024), ("as", 2048), ("x4", 512), ("x4", 1024)]
    for kind, size in cases:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-case", kind, str(size),
               "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch", str(args.batch),
               "--tile-stats", args.tile_stats,
               "--x4", str(args.x4), "--as-weights", str(args.as_weights)]
        proc = subprocess.run(LAUNCHER + cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit(f"check_tiling: memory case {kind} {size} failed:\n{proc.stderr}")
        results[(kind, size)] = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for kind, small, big in (("as", 1024, 2048), ("x4", 512, 1024)):
        a, b = results[(kind, small)], results[(kind, big)]
        label = "IMDN_AS" if kind == "as" else "IMDN_x4"
        for size, r in ((small, a), (big, b)):
            in_out = 3 * 4 * (size * size + r["out"][-2] * r["out"][-1]) / 2**20  # float32 input + output
            rows.append([label, f"{size}x{size}", "x".join(map(str, r["out"][-2:])), f"{in_out:.0f}", f"{r['base_kib'] / 1024:.0f}",
                         f"{r['peak_kib'] / 1024:.0f}", f"{r['seconds']:.1f}", ""])
        rows[-1][-1] = f"{b['peak_kib'] / a['peak_kib']:.3f}"
    table(
        f"(c) peak RSS of tiled_forward (fresh process per case; tile={args.tile} overlap={args.overlap} batch={args.batch})",
        ["net", "input", "output", "in+out MiB", "RSS before MiB", "peak MiB", "time s", "ratio big/small"],
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    import imdn_plugin  # noqa: F401  (before basicsr: installs the torchvision alias)

    args = parse_args(argv)
    if args.memory_case:
        memory_case(args)
        return
    for path in (args.x4, args.as_weights, args.set5):
        if not path.exists():
            sys.exit(f"check_tiling: reference data not found: {path}")
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; tile={args.tile} overlap={args.overlap} "
          f"batch={args.batch}; tile CCA statistics: {args.tile_stats}")  # fmt: skip
    part_a(args)
    if not args.skip_large:
        part_b(args)
    if not args.skip_memory:
        part_c(args)


if __name__ == "__main__":
    main()
