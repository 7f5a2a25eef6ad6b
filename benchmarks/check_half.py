"""fp16 / bf16 against fp32 for the authors' IMDN ×2/×3/×4 and IMDN_AS, on hard inputs.

For each network: PSNR (dB, outputs clamped to [0, 1]) and max |difference| of
the whole network cast to fp16 and to bf16 (``model.half()`` / ``model.bfloat16()``,
what spandrel's users do) against its fp32 output, on Set5 (IMDN: MATLAB-bicubic
LR; IMDN_AS: the ×4 LR brought back to HR size by bicubic, as the paper's
RealSR inputs are), and on hard inputs: flat gray, black, white, saturated
colour bars with hard edges, a 0/1 checkerboard, and (``--large W``) a white and
a noisy image W pixels wide.  Also the largest activation magnitude of the fp32
forward (fp16 overflows at 65504).  CPU is fine; ``--device cuda`` on a GPU.

    python benchmarks/check_half.py [--reference ../shared/reference] [--large 4000] [--device cpu]
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from imdn_plugin.checkpoint import load_network
from imdn_plugin.data import imageio
from imdn_plugin.data.resize import bicubic_downscale, imresize_to, mod_crop


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def hard_inputs(h: int, w: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    bars = torch.zeros(3, h, w)
    for i, rgb in enumerate([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1), (1, 1, 1), (0, 0, 0)]):
        bars[:, :, i * w // 8 : (i + 1) * w // 8] = torch.tensor(rgb, dtype=torch.float32)[:, None, None]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return {
        "flat 0.5": torch.full((1, 3, h, w), 0.5),
        "black": torch.zeros(1, 3, h, w),
        "white": torch.ones(1, 3, h, w),
        "colour bars": bars[None],
        "checkerboard": ((yy + xx) % 2).float().expand(1, 3, h, w).contiguous(),
        "noise": torch.rand(1, 3, h, w, generator=g),
    }


def max_activation(net: torch.nn.Module, x: torch.Tensor) -> float:
    peak = [0.0]

    def hook(_m: object, _i: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            peak[0] = max(peak[0], float(out.abs().max()))

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    with torch.inference_mode():
        net(x)
    for h in handles:
        h.remove()
    return peak[0]


def compare(
    nets: dict[str, torch.nn.Module], x: torch.Tensor, device: str, fp16: bool = True
) -> tuple[dict[str, tuple[float, float, bool]], float]:
    x = x.to(device)
    with torch.inference_mode():
        ref = nets["fp32"](x).float()
        rows = {"fp16": (math.nan, math.nan, True)}
        for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            if name == "fp16" and not fp16:
                continue
            y = nets[name](x.to(dtype)).float()
            finite = bool(torch.isfinite(y).all())
            rows[name] = (psnr(y, ref), float((y - ref).abs().max()), finite)
    return rows, max_activation(nets["fp32"], x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "reference")
    p.add_argument("--large", type=int, default=0, help="width of the large test images (0: none)")
    p.add_argument("--large-height", type=int, default=20, help="height of the large images (IMDN_AS: x4)")
    p.add_argument("--large-no-fp16", action="store_true", help="large images: bf16 only (fp16 on a CPU is slow)")
    p.add_argument("--set5", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--hard", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--large-nets", default="IMDN_x4,IMDN_AS", help="networks run on the large images")
    p.add_argument("--crop", type=int, default=0, help="Set5: centre crop of the LR image, in LR pixels (0: whole; fp16 on a CPU is slow)")
    p.add_argument("--hard-size", default="32x48", help="HxW of the flat / saturated inputs (IMDN_AS: x4)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    hr_dir = args.reference / "Set5" / "HR"
    files = sorted(hr_dir.glob("*.bmp")) + sorted(hr_dir.glob("*.png"))
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    print("| network | input | fp16 PSNR dB | fp16 max diff | bf16 PSNR dB | bf16 max diff | finite | max |act| fp32 | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("IMDN_x2.pth", "IMDN_x3.pth", "IMDN_x4.pth", "IMDN_AS.pth"):
        net, spec = load_network(args.reference / "checkpoints" / name, None)
        net = net.eval().to(args.device)
        nets = {"fp32": net, "fp16": __import__("copy").deepcopy(net).half(), "bf16": __import__("copy").deepcopy(net).bfloat16()}
        scale = spec.upscale if spec.type == "IMDN" else 4
        inputs: dict[str, torch.Tensor] = {}
        for f in files if args.set5 else []:
            hr = mod_crop(imageio.read_image(f), scale * (4 if spec.type == "IMDN_AS" else 1))
            lr = bicubic_downscale(hr, scale).astype(np.float32) / 255
            if spec.type == "IMDN_AS":
                lr = imresize_to(lr, hr.shape[:2])
            if args.crop:
                c = args.crop * (4 if spec.type == "IMDN_AS" else 1)
                t0, l0 = max(0, (lr.shape[0] - c) // 2 // 4 * 4), max(0, (lr.shape[1] - c) // 2 // 4 * 4)
                lr = lr[t0 : t0 + c, l0 : l0 + c]
            inputs[f"Set5 {f.stem}"] = torch.from_numpy(np.ascontiguousarray(lr[:, :, ::-1].transpose(2, 0, 1))).unsqueeze(0).clamp(0, 1)
        k = 4 if spec.type == "IMDN_AS" else 1
        hh, ww = (int(v) * k for v in args.hard_size.split("x"))
        if args.hard:
            inputs.update(hard_inputs(hh, ww))
        if args.large and name[:-4] in args.large_nets.split(","):
            big = hard_inputs(args.large_height * k, args.large)
            inputs[f"white {args.large}x{args.large_height * k}"] = big["white"]
            inputs[f"colour bars {args.large}x{args.large_height * k}"] = big["colour bars"]
        for label, x in inputs.items():
            t = time.perf_counter()
            rows, act = compare(nets, x, args.device, fp16=not (args.large_no_fp16 and label.startswith(("white ", "colour bars "))))
            ok = rows["fp16"][2] and rows["bf16"][2]
            print(
                f"| {name[:-4]} | {label} | {rows['fp16'][0]:.2f} | {rows['fp16'][1]:.4f} | {rows['bf16'][0]:.2f} | "
                f"{rows['bf16'][1]:.4f} | {'yes' if ok else 'NO'} | {act:.1f} | {time.perf_counter() - t:.0f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
