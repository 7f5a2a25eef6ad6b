"""``basicsr infer``: upscale an image or a folder with an IMDN / IMDN_AS checkpoint.

The network type, width, depth and scale are read off the checkpoint's shapes.
IMDN upscales by its own factor; IMDN_AS (paper §3.3) takes any ``--scale``
(integer or fractional): the image is first brought to the target size by
MATLAB-style bicubic, then restored (ACS for sides not divisible by 4).
Grayscale, 16-bit and RGBA inputs keep their form (alpha is resized by bicubic);
outputs are PNGs, written atomically.  In folder mode a bad file is reported and
skipped; the command exits 1 if any file failed.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm import tqdm

from ..data import imageio
from ..errors import ConfigError, PluginError
from ..inference.predictor import InferenceOptions
from ..upscaler import Upscaler

logger = logging.getLogger(__name__)

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="basicsr infer", description=__doc__.split("\n\n")[0])
    p.add_argument("-i", "--input", required=True, help="an image file or a folder of images")
    p.add_argument("-o", "--output", required=True, help="output folder (created if needed)")
    p.add_argument("--weights", required=True, help="checkpoint: BasicSR params/params_ema file or bare state dict")
    p.add_argument("--scale", type=float, default=None, help="IMDN_AS: any factor >= 1 (default 1); IMDN: must match")
    p.add_argument("--tile", type=int, default=None, help="tile side in input pixels for bounded memory (default: off)")
    p.add_argument("--tile-overlap", type=int, default=InferenceOptions.tile_overlap, help="context pixels per tile")
    p.add_argument("--tile-stats", default="global", choices=("global", "local"),
                   help="CCA statistics of tiles: global = whole-image result (slower), local = per tile")  # fmt: skip
    p.add_argument("--acs-padding", type=int, default=InferenceOptions.acs_padding, help="ACS padding 4k (IMDN_AS)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"), help="auto (default): bf16 on a CPU with AMX, else fp32")
    p.add_argument("--param-key", default="params", help="key inside BasicSR files (params or params_ema)")
    p.add_argument("--suffix", default="", help="appended to output file names")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def list_inputs(path: Path) -> list[Path]:
    if path.is_dir():
        return imageio.list_images(path)
    if path.is_file():
        return [path]
    raise ConfigError(f"--input: no such file or folder: {path}")


def process(upscaler: Upscaler, src: Path, out_dir: Path, suffix: str) -> Path:
    dst = out_dir / f"{src.stem}{suffix}.png"
    if dst.resolve() == src.resolve():
        raise ConfigError(f"{src}: output would overwrite the input; use another --output or a --suffix")
    imageio.write_atomic(dst, upscaler.upscale_file(src))
    return dst


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    options = InferenceOptions(
        tile=args.tile, tile_overlap=args.tile_overlap, tile_stats=args.tile_stats, acs_padding=args.acs_padding,
        precision=args.precision,
    )
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ConfigError(f"--device: unknown device '{args.device}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    inputs = list_inputs(Path(args.input))
    if not inputs:
        raise ConfigError(f"--input: no image files in {args.input}")
    upscaler = Upscaler(args.weights, args.scale, options, device, args.param_key)
    out_dir = Path(args.output)
    failed: list[tuple[Path, str]] = []
    bar = tqdm(inputs, unit="image", disable=args.quiet or len(inputs) < 2)
    for src in bar:
        bar.set_postfix_str(src.name)
        try:
            dst = process(upscaler, src, out_dir, args.suffix)
            logger.info("%s -> %s", src, dst)
        except PluginError as exc:
            failed.append((src, str(exc)))
            logger.error("%s", exc)
        except (RuntimeError, OSError, MemoryError) as exc:  # e.g. out of memory: say which file, keep going
            failed.append((src, f"{src}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
            logger.error("%s", failed[-1][1])
    done = len(inputs) - len(failed)
    print(f"basicsr infer: {done} of {len(inputs)} image(s) written to {out_dir}", file=sys.stderr)
    if failed:
        print(f"basicsr infer: {len(failed)} failed:", file=sys.stderr)
        for _, msg in failed:
            print(f"  {msg}", file=sys.stderr)
        return 1
    return 0
