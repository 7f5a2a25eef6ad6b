"""Alpha through the network vs bicubic: PSNR of the upscaled alpha plane against the ground truth.

For each Set5 image: an RGBA image whose colour is that image and whose alpha is
the grayscale of the next Set5 image (detailed: edges, textures), both cropped
to a common size; downscaled ×4 by MATLAB bicubic, written as an 8-bit RGBA PNG,
then upscaled by :class:`~imdn_plugin.Upscaler` with ``alpha="network"`` and
``alpha="bicubic"`` (IMDN ×4 weights, and IMDN_AS at scale 4).  Prints the PSNR
(dB, 8-bit) of the written alpha plane against the original alpha.

    python benchmarks/check_alpha.py [--reference ../shared/reference]
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import cv2
import numpy as np

from imdn_plugin import Upscaler
from imdn_plugin.data.resize import bicubic_downscale, mod_crop
from imdn_plugin.inference import InferenceOptions


def psnr8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "reference")
    args = p.parse_args()
    files = sorted((args.reference / "Set5" / "HR").glob("*.bmp"))
    imgs = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    ups = {
        (net, mode): Upscaler(args.reference / "checkpoints" / f"{net}.pth", 4 if net == "IMDN_AS" else None,
                              InferenceOptions(precision="fp32"), "cpu", alpha=mode)  # fmt: skip
        for net in ("IMDN_x4", "IMDN_AS")
        for mode in ("network", "bicubic")
    }
    print("| image (alpha from) | IMDN_x4 network | IMDN_x4 bicubic | IMDN_AS network | IMDN_AS bicubic |")
    print("|---|---|---|---|---|")
    totals: dict[tuple[str, str], float] = {k: 0.0 for k in ups}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (f, rgb) in enumerate(zip(files, imgs, strict=True)):
            other = imgs[(i + 1) % len(imgs)]
            h, w = min(rgb.shape[0], other.shape[0]), min(rgb.shape[1], other.shape[1])
            hr = np.dstack([rgb[:h, :w], cv2.cvtColor(other[:h, :w], cv2.COLOR_BGR2GRAY)])
            hr = mod_crop(hr, 4)
            lr = bicubic_downscale(hr, 4)
            src = Path(tmp) / f"{f.stem}.png"
            cv2.imwrite(str(src), lr)
            row = [f"{f.stem} ({files[(i + 1) % len(files)].stem})"]
            for key, up in ups.items():
                out = cv2.imdecode(np.frombuffer(up.upscale_file(src), np.uint8), cv2.IMREAD_UNCHANGED)
                assert out.shape == hr.shape, (out.shape, hr.shape)
                value = psnr8(out[..., 3], hr[..., 3])
                totals[key] += value / len(files)
                row.append(f"{value:.2f}")
            print("| " + " | ".join(row) + " |", flush=True)
    print("| mean | " + " | ".join(f"{totals[k]:.2f}" for k in ups) + " |")


if __name__ == "__main__":
    main()
