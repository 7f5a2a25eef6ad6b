#!/usr/bin/env python
"""The NTIRE efficient-SR protocol (challenges 2022-2025, their ``test_demo.py``) on a folder of LR/HR pairs.

One row per network, columns as the challenge reports:

* **params** and, for one 1×3×256×256 input (``--size``), **Mult-Adds** ("FLOPs" in the
  reports, counted as multiply-accumulates), **activations** (elements of every conv
  output) and **convs**, all from :func:`imdn_plugin.archs.complexity.count_complexity`
  (the numbers ``basicsr info`` prints);
* **runtime per image**: the whole LR image, fp32, batch 1, the network's own forward
  (no tiles, no fused plans); CUDA events on a GPU, ``time.perf_counter`` on a CPU; one
  warm-up forward on the first image first, not counted; mean (and median) over the images;
* **peak memory**: CUDA: ``torch.cuda.max_memory_allocated`` over the timed forwards; CPU:
  the peak resident-set growth (``VmHWM`` reset through ``/proc/self/clear_refs`` right
  before the timed forwards, minus the RSS then), each network in a fresh subprocess;
* **PSNR** as the challenge computes it: RGB, uint8-rounded output, 4-pixel border.

The protocol is ×4. Networks of another scale (IMDN_RTC and IMDN_RTE are ×2) run at
their own scale on the LR images of that scale for the same HR images (``{scale}`` in
``--lr``), and the table's ``scale`` column says so: their runtime is for a 4× larger
input than the ×4 rows (the same output size). A network given by BasicSR registry name
(e.g. ``RRDBNet``, ``EDSR``) is built with its default arguments at ×4 with random
weights: its complexity and runtime rows are real, its PSNR is not measured.

Example (Set5 of the reference data)::

    python benchmarks/ntire.py --hr ../shared/reference/Set5/HR \\
        --lr '../shared/reference/Set5/LR_bicubic/X{scale}' \\
        --networks ../shared/reference/checkpoints/IMDN_x4.pth \\
                   ../shared/reference/checkpoints/model_RTC.pth \\
                   ../shared/reference/checkpoints/model_RTE.pth EDSR
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from imdn_plugin.machine import DEVICE_ENV, env

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
#: The challenge's PSNR border, in HR pixels.
BORDER = 4


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> str:
    """The SIMD / matrix extensions that decide fp32 conv speed (``/proc/cpuinfo`` flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "flags unknown"
    have = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("amx_tile", "AMX")) if flag in flags]
    return (", ".join(have) or "no AVX2") + ("" if "amx_tile" in flags else ", no AMX")


def pairs(hr_dir: Path, lr_dir: Path, scale: int) -> list[tuple[Path, Path]]:
    """(LR, HR) files matched by name: ``<stem>.ext`` in HR, ``<stem>x<scale>.ext`` or ``<stem>.ext`` in LR."""
    lr_files = {p.stem: p for p in sorted(lr_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    out = []
    for hr in sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        lr = lr_files.get(f"{hr.stem}x{scale}") or lr_files.get(hr.stem)
        if lr is not None:
            out.append((lr, hr))
    if not out:
        raise SystemExit(f"ntire.py: no LR/HR pairs between {lr_dir} and {hr_dir} (LR names <stem>x{scale} or <stem>)")
    return out


def psnr_rgb(out: np.ndarray, hr: np.ndarray, border: int = BORDER) -> float:
    """PSNR of uint8 RGB images over all channels, ``border`` pixels cut on each side."""
    a = out[border:-border, border:-border].astype(np.float64)
    b = hr[border:-border, border:-border].astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def load(spec: str, scale: int) -> tuple[torch.nn.Module, str, bool]:
    """A checkpoint path (network read off it) or a registry name (random weights at ``scale``)."""
    if Path(spec).is_file():
        from imdn_plugin.checkpoint import load_network

        net, arch = load_network(spec)
        return net, arch.type, True
    from imdn_plugin.cli.info import network_by_name

    return network_by_name(spec, scale), spec, False


def _rss_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_one(spec: str, args: dict[str, Any]) -> dict[str, Any]:
    """Everything for one network (runs in its own process on a CPU)."""
    import imdn_plugin
    from imdn_plugin.archs.complexity import count_complexity

    imdn_plugin.register()
    if args["threads"]:
        torch.set_num_threads(args["threads"])
    device = torch.device(args["device"])
    net, name, trained = load(spec, 4)
    c = count_complexity(net, tuple(args["size"]), name=name)
    scale = c.scale
    multiple = int(getattr(net, "size_multiple", 1))
    net = net.to(device).eval()
    data = pairs(Path(args["hr"]), Path(args["lr"].replace("{scale}", str(scale))), scale)

    def tensor(lr_path: Path) -> torch.Tensor:
        rgb = cv2.imread(str(lr_path), cv2.IMREAD_COLOR)[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div(255).to(device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if multiple > 1 and (h % multiple or w % multiple):  # IMDN_RTE: even sides (replicate-pad, crop back)
            x = F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="replicate")
        return net(x)[..., : h * scale, : w * scale]

    inputs = [tensor(lr) for lr, _ in data]
    times, psnrs = [], []
    with torch.inference_mode():
        forward(inputs[0])  # warm-up, not counted
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        base_rss = None
        if device.type == "cpu":
            try:
                with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                    f.write("5")  # reset VmHWM to the current RSS
                base_rss = _rss_kb("VmRSS")
            except OSError:
                base_rss = None
        for x, (_, hr_path) in zip(inputs, data, strict=True):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                y = forward(x)
                end.record()
                torch.cuda.synchronize(device)
                times.append(start.elapsed_time(end) / 1000)
            else:
                t0 = time.perf_counter()
                y = forward(x)
                times.append(time.perf_counter() - t0)
            out = (y[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            hr = cv2.imread(str(hr_path), cv2.IMREAD_COLOR)[:, :, ::-1]
            hr = hr[: out.shape[0], : out.shape[1]]
            psnrs.append(psnr_rgb(out, hr))
        if device.type == "cuda":
            peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            hwm = _rss_kb("VmHWM")
            peak_mb = (hwm - base_rss) / 1024 if hwm is not None and base_rss is not None else float("nan")
    return {
        "network": name, "source": spec, "trained": trained, "scale": scale, "images": len(data),
        "params": c.params, "macs": c.macs, "activations": c.activations, "convs": c.convs,
        "size": list(c.input_size), "runtime_ms_mean": 1000 * statistics.fmean(times),
        "runtime_ms_median": 1000 * statistics.median(times), "peak_mem_mb": peak_mb,
        "psnr_rgb": statistics.fmean(psnrs) if trained else None,
    }  # fmt: skip


def _child(spec: str, args: dict[str, Any], queue: Any) -> None:
    try:
        queue.put(("ok", run_one(spec, args)))
    except BaseException as exc:  # noqa: BLE001 (the child reports any failure to the parent's table)
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_isolated(spec: str, args: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(spec, args, queue))
    proc.start()
    status, result = queue.get()
    proc.join()
    if status != "ok":
        raise SystemExit(f"ntire.py: {spec}: {result}")
    return result


def table(rows: list[dict[str, Any]], size: list[int]) -> str:
    h, w = size
    head = (
        f"| network | scale | images | params | Mult-Adds (G, 1x3x{h}x{w}) | activations (M) | convs "
        "| runtime ms/img (mean / median) | peak mem (MB) | PSNR RGB (dB, 4-px border) |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        scale = f"x{r['scale']}" + ("" if r["scale"] == 4 else " (own scale; x4 protocol)")
        psnr = f"{r['psnr_rgb']:.2f}" if r["psnr_rgb"] is not None else "n/a (random weights)"
        lines.append(
            f"| {r['network']} | {scale} | {r['images']} | {r['params']:,} | {r['macs'] / 1e9:.2f} | "
            f"{r['activations'] / 1e6:.2f} | {r['convs']} | {r['runtime_ms_mean']:.1f} / {r['runtime_ms_median']:.1f} | "
            f"{r['peak_mem_mb']:.0f} | {psnr} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hr", required=True, help="folder of HR images")
    p.add_argument("--lr", required=True, help="folder of LR images; '{scale}' is replaced by each network's scale")
    p.add_argument("--networks", nargs="+", required=True, help="checkpoint files and/or BasicSR registry names")
    p.add_argument("--device", default=env(DEVICE_ENV) or "cpu", help="cpu or cuda (default: $IMDN_DEVICE or cpu)")
    p.add_argument("--size", default="256x256", help="input size for the Mult-Adds/activation counts (default 256x256)")
    p.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (default: torch's choice)")
    p.add_argument("--json", help="also write the rows to this JSON file (refused if it exists)")
    a = p.parse_args(argv)
    from imdn_plugin.cli.info import parse_size

    args = {"hr": a.hr, "lr": a.lr, "device": a.device, "size": list(parse_size(a.size)), "threads": a.threads}
    if a.json and Path(a.json).exists():
        raise SystemExit(f"ntire.py: {a.json}: exists; not overwritten")
    if a.device.startswith("cuda"):
        rows = [run_one(spec, args) for spec in a.networks]
        where = torch.cuda.get_device_name(torch.device(a.device))
    else:
        rows = [run_isolated(spec, args) for spec in a.networks]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        threads = a.threads or torch.get_num_threads()
        where = f"{cpu_name()} ({cpu_flags()}), {os.cpu_count()} logical CPUs, {threads} torch threads, load average {load:.2f} at the end"
    print(f"NTIRE efficient-SR protocol, fp32, batch 1, whole images; {where}; torch {torch.__version__}")
    print(table(rows, args["size"]))
    if a.json:
        tmp = Path(a.json + ".tmp")
        tmp.write_text(json.dumps({"device": where, "rows": rows}, indent=1))
        os.replace(tmp, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
