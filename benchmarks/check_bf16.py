#!/usr/bin/env python
"""Set5 PSNR/SSIM of the bf16 CPU plan against the fp32 plan, per choice of fp32 layer groups.

Uses the IMDN authors' released weights and Set5 (read-only reference data, by
default at ``../shared/reference`` relative to the repository root) and, for
each scale, computes what ``basicsr test`` reports: BasicSR's ``calculate_psnr``
/ ``calculate_ssim`` on the Y channel, ``crop_border`` = scale, outputs rounded
to uint8 (``tensor2img``), GT cropped to scale × LR size.  Rows:

* ``fp32 plan`` — :class:`imdn_plugin.inference.fused_cpu.FusedIMDNPlan` (the
  exact fp32 path; equals the paper's Table 5 numbers);
* ``bf16 plan, fp32: …`` — :class:`~imdn_plugin.inference.fused_cpu.FusedIMDNPlanBF16`
  with the named layer groups kept in fp32 (``default`` marks the plugin's choice);
* ``bf16 autocast`` (``--autocast``) — the module's forward under
  ``torch.autocast("cpu", torch.bfloat16)``, what ``precision: bf16`` ran before.

On a CPU without native bf16 convolutions the bf16 plan runs fp32 kernels on
bf16-rounded values, which gives the same numbers as native bf16 kernels up to
the summation order (the output line says which ran).

    python benchmarks/check_bf16.py                     # ×2, ×3, ×4, the variants below
    python benchmarks/check_bf16.py --scales 4 --variants default,none
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from imdn_plugin.evaluation import set5_scores

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"

#: Variants: name -> fp32 groups ("default" = the plugin's BF16_FP32_GROUPS).
VARIANTS = {
    "none": (),
    "fea_conv": ("fea_conv",),
    "upsampler": ("upsampler",),
    "fea_conv+upsampler": ("fea_conv", "upsampler"),
    "default": None,
    "default+LR_conv": ("+", "LR_conv"),
    "default+fusion": ("+", "fusion"),
    "default+collect": ("+", "collect"),
    "all-but-distill": ("fea_conv", "fusion", "collect", "LR_conv", "global_residual", "upsampler"),
}


def fp32_groups(variant: str) -> frozenset[str]:
    from imdn_plugin.inference.fused_cpu import BF16_FP32_GROUPS

    spec = VARIANTS[variant]
    if spec is None:
        return BF16_FP32_GROUPS
    if spec and spec[0] == "+":
        return BF16_FP32_GROUPS | frozenset(spec[1:])
    return frozenset(spec)


def load_imdn(weights: Path, scale: int):
    import torch

    import imdn_plugin  # noqa: F401  (torchvision alias before basicsr)
    from imdn_plugin.archs import IMDN

    net = IMDN(upscale=scale)
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    return net.eval()


def plan_forward(plan) -> Callable:
    import torch

    def run(x):
        with torch.inference_mode():
            return plan(x)

    return run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, default=REFERENCE, help="reference data with checkpoints/ and Set5/ (%(default)s)")
    p.add_argument("--scales", default="2,3,4", help="comma-separated scales (default %(default)s)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)} (default: all)")
    p.add_argument("--autocast", action="store_true", help="also the module's forward under bf16 autocast (slow without AMX)")
    args = p.parse_args(argv)
    args.scales = [int(s) for s in args.scales.split(",") if s.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error(f"--variants: unknown {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    if not (args.reference / "Set5").is_dir():
        p.error(f"--reference: no Set5/ under {args.reference}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from imdn_plugin.inference.fast import make_fast_forward
    from imdn_plugin.inference.fused_cpu import FusedIMDNPlan, FusedIMDNPlanBF16
    from imdn_plugin.machine import mkldnn_bf16_native

    set5 = args.reference / "Set5"
    native = mkldnn_bf16_native()
    print(f"bf16 kernels: {'native oneDNN bf16' if native else 'fp32 kernels on bf16-rounded values (no native bf16 on this CPU)'}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows: dict[str, dict[int, tuple[float, float]]] = {}
    for scale in args.scales:
        net = load_imdn(args.reference / "checkpoints" / f"IMDN_x{scale}.pth", scale)
        module = make_fast_forward(net).module  # the frozen channels-last copy the plans run
        forwards: list[tuple[str, Callable]] = [("fp32 plan", plan_forward(FusedIMDNPlan(module)))]
        for variant in args.variants:
            groups = fp32_groups(variant)
            label = f"bf16 plan, fp32: {', '.join(sorted(groups)) or '(none)'}" + (" (default)" if variant == "default" else "")
            forwards.append((label, plan_forward(FusedIMDNPlanBF16(module, groups))))
        if args.autocast:  # eager under autocast
            forwards.append(("bf16 autocast (module forward)", make_fast_forward(net, precision="bf16", channels_last=False)))
        for label, forward in forwards:
            t0 = time.perf_counter()
            p, q = rows.setdefault(label, {})[scale] = set5_scores(forward, scale, set5)
            print(f"x{scale} {label}: PSNR {p:.4f} SSIM {q:.4f} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    base = rows["fp32 plan"]
    header = ["variant"] + [f"×{s} PSNR (Δ) / SSIM" for s in args.scales]
    print()
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * len(args.scales))
    for label, per_scale in rows.items():
        cells = [label]
        for s in args.scales:
            p, q = per_scale[s]
            delta = "" if label == "fp32 plan" else f" ({p - base[s][0]:+.4f})"
            cells.append(f"{p:.4f}{delta} / {q:.4f}")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
