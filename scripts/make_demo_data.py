#!/usr/bin/env python
"""Build a small DIV2K-layout x4 dataset from scikit-image's bundled photographs (no download).

Layout written under --out (default ``datasets/demo``)::

    DIV2K_train_HR/0001.png ...                 training HR (mod-cropped to 12)
    DIV2K_train_LR_bicubic/X4/0001x4.png ...    their MATLAB-bicubic x4 LR
    DIV2K_train_HR_sub.lmdb                     sub-images (--crop-size, --step)
    DIV2K_train_LR_bicubic_X4_sub.lmdb
    DIV2K_valid_HR/0801.png ...                 held-out images (other photos)
    DIV2K_valid_LR_bicubic/X4/0801x4.png ...
    sources.txt                                 which photograph each file is
    bicubic_baseline.txt                        bicubic-upscaling PSNR/SSIM on the validation set

The bicubic baseline upsamples each validation LR image x4 with BasicSR's
MATLAB-compatible ``imresize`` (rounded to uint8) and scores it against the HR
with ``basicsr.metrics.calculate_psnr`` / ``calculate_ssim`` on the Y channel,
crop_border 4: the "Bicubic" row of SR papers.  Safe to rerun (--overwrite
rebuilds everything).
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

#: Colour photographs shipped inside scikit-image (skimage/data/*), loadable offline.
TRAIN_IMAGES = ("astronaut", "rocket", "motorcycle_left", "immunohistochemistry")
VALID_IMAGES = ("chelsea", "coffee")
SCALE = 4


def _load_skimage(name: str):
    """RGB uint8 array of a bundled scikit-image photograph."""
    import skimage.data

    if name == "motorcycle_left":  # the left view of the stereo pair (500x741)
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def _write_png(path: Path, img_bgr) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img_bgr):
        raise OSError(f"cannot write {path}")


def build_folders(out: Path, log: logging.Logger) -> list[str]:
    """Write the HR/LR PNG folders; returns lines for sources.txt."""
    import cv2
    import numpy as np

    from imdn_plugin.data.div2k import default_mod
    from imdn_plugin.data.resize import bicubic_downscale, mod_crop

    lines = []
    groups = (("train", TRAIN_IMAGES, 1, default_mod([SCALE])), ("valid", VALID_IMAGES, 801, SCALE))
    for split, names, first, mod in groups:
        for i, name in enumerate(names, start=first):
            rgb = _load_skimage(name)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise RuntimeError(f"skimage.data {name}: expected an RGB uint8 photograph, got {rgb.shape}")
            hr = mod_crop(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), mod)
            lr = bicubic_downscale(hr, SCALE)
            stem = f"{i:04d}"
            _write_png(out / f"DIV2K_{split}_HR" / f"{stem}.png", hr)
            _write_png(out / f"DIV2K_{split}_LR_bicubic" / f"X{SCALE}" / f"{stem}x{SCALE}.png", lr)
            lines.append(f"{split} {stem} skimage.data.{name} HR {hr.shape[1]}x{hr.shape[0]} "
                         f"LR {lr.shape[1]}x{lr.shape[0]}")
            log.info("%s %s: %s %dx%d", split, stem, name, hr.shape[1], hr.shape[0])
    return lines


def bicubic_baseline(out: Path) -> tuple[list[tuple[str, float, float]], float, float]:
    """Per-image and mean (PSNR, SSIM) of MATLAB-bicubic x4 upscaling on the validation set."""
    import numpy as np
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils.matlab_functions import imresize

    from imdn_plugin.data.imageio import read_image

    rows = []
    for hr_path in sorted((out / "DIV2K_valid_HR").glob("*.png")):
        hr = read_image(hr_path)
        lr = read_image(out / "DIV2K_valid_LR_bicubic" / f"X{SCALE}" / f"{hr_path.stem}x{SCALE}.png")
        up = np.clip(np.round(imresize(lr.astype(np.float32), SCALE)), 0, 255).astype(np.uint8)
        hr = hr[: up.shape[0], : up.shape[1]]
        psnr = calculate_psnr(up, hr, crop_border=SCALE, test_y_channel=True)
        ssim = calculate_ssim(up, hr, crop_border=SCALE, test_y_channel=True)
        rows.append((hr_path.stem, float(psnr), float(ssim)))
    return rows, float(np.mean([r[1] for r in rows])), float(np.mean([r[2] for r in rows]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="datasets/demo", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--crop-size", type=int, default=240, metavar="N",
                   help="HR sub-image size, multiple of 4 (default: %(default)s)")
    p.add_argument("--step", type=int, default=120, metavar="N",
                   help="HR sub-image stride, multiple of 4 (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="delete and rebuild everything under --out")
    p.add_argument("--quiet", action="store_true", help="warnings only, no progress bars")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s: %(message)s")
    log = logging.getLogger("make_demo_data")
    try:
        import imdn_plugin
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import imdn_plugin  # noqa: F401
    from imdn_plugin.data.div2k import prepare_div2k

    out = Path(args.out)
    try:
        if args.overwrite and out.exists():
            shutil.rmtree(out)
        # The PNG folders are cheap: always rewrite them (identical bytes on a rerun).
        sources = build_folders(out, log)
        (out / "sources.txt").write_text("\n".join(sources) + "\n", encoding="utf-8")
        lmdbs = prepare_div2k(out, out, scales=[SCALE], crop_size=args.crop_size, step=args.step,
                              progress=not args.quiet)
        rows, psnr, ssim = bicubic_baseline(out)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"make_demo_data.py: error: {exc}", file=sys.stderr)
        return 2

    text = [
        "# Bicubic x4 baseline on the demo validation set (DIV2K_valid_HR vs DIV2K_valid_LR_bicubic/X4).",
        "# Upscaling: basicsr.utils.matlab_functions.imresize(lr, 4) (MATLAB bicubic), rounded to uint8.",
        "# Metrics: basicsr.metrics.calculate_psnr / calculate_ssim, Y channel, crop_border 4, uint8 images.",
    ]
    text += [f"{stem} psnr {ps:.4f} ssim {ss:.4f}" for stem, ps, ss in rows]
    text.append(f"mean psnr {psnr:.4f} ssim {ssim:.4f}")
    (out / "bicubic_baseline.txt").write_text("\n".join(text) + "\n", encoding="utf-8")

    n_sub = sum(1 for _ in open(lmdbs["hr"] / "meta_info.txt", encoding="ascii"))
    print(f"demo data in {out}: {len(TRAIN_IMAGES)} training images -> {n_sub} sub-images "
          f"({args.crop_size}px HR / {args.crop_size // SCALE}px LR), {len(VALID_IMAGES)} validation images")
    print(f"bicubic x4 baseline (Y, crop_border 4): PSNR {psnr:.4f} dB, SSIM {ssim:.4f} "
          f"-> {out / 'bicubic_baseline.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
