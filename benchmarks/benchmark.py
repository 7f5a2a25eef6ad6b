#!/usr/bin/env python
"""Benchmark the project's fast IMDN forward against an independent plain reference.

For every case it measures, side by side on the same machine and input:

(a) **reference** — a plain NCHW fp32 eager IMDN written in this script directly
    from the paper (Hui et al., ACM MM 2019, §3, Figs. 2–3, Eq. 5) with its own
    small module classes, loading the same weights by parameter name; and
(b) **fast** — :func:`imdn_plugin.inference.make_fast_forward` on
    :class:`imdn_plugin.archs.IMDN` / ``IMDN_AS`` (the project's fastest path),
    and with ``--variants`` further rows against the same reference:
    ``bf16-plan`` (the project's bf16 CPU plan, ``precision="bf16"``),
    ``ort-fp32`` / ``ort-bf16`` (ONNX Runtime, CPU) and ``ov-fp32`` /
    ``ov-bf16`` (OpenVINO, CPU, static input shape), on an ONNX export of the
    same network with the graph and sessions of ``inference: backend``
    (:mod:`imdn_plugin.inference.onnx`, dynamic N/H/W).  The ONNX Runtime and
    OpenVINO rows run when those packages are importable and are otherwise
    listed as skipped with the reason; they cover the whole-image cases.

It checks that the outputs agree (fp32: max abs diff <= 1e-4; fp16/bf16: the max
diff and the PSNR change against the ground truth are reported), warms up,
times both interleaved (ABBA order), and prints one markdown table: median and
inter-quartile range of the time per image, the speed-up (median of the paired
per-round ratios), GFLOP per image (``torch.utils.flop_counter``), GFLOP/s and
the fraction of a 4096×4096 fp32 matmul's GFLOP/s measured in the same run
(the machine's practical limit), the precision each row ran in (requested and,
where a backend can fall back, effective), the Set5 Y-PSNR of each row's
network at its precision (IMDN cases, when the reference data and the authors'
weights are there; as ``basicsr test`` computes it), and the peak memory of one forward (CPU: the
peak-RSS growth in a fresh subprocess per case and path, high-water mark reset
right before the forward and read back as ``VmHWM`` — ``ru_maxrss`` is only the
fallback, since a child inherits its parent's peak on Linux; CUDA:
``torch.cuda.max_memory_allocated``).

Examples::

    python benchmarks/benchmark.py                       # all cases, CPU, fp32
    python benchmarks/benchmark.py --quick               # smoke run (small inputs, no memory probes)
    python benchmarks/benchmark.py --cases x4,as-tiled --repeats 20
    python benchmarks/benchmark.py --device cuda --precision fp16
    python benchmarks/benchmark.py --variants all --cases x2,x3,x4 --processes 2   # + bf16 plan, ONNX Runtime, OpenVINO

The exit status is 1 if an fp32 comparison exceeds the tolerance.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.evaluation import set5_scores
from imdn_plugin.inference.fast import make_fast_forward
from imdn_plugin.inference.onnx import Graph, module_to_onnx
from imdn_plugin.machine import PRECISIONS

REPO = Path(__file__).resolve().parents[1]

try:  # written in parallel with this script; the ACS / tile rows are skipped without it
    from imdn_plugin.inference import cropping as _cropping
    from imdn_plugin.inference import tiling as _tiling
except ImportError as _exc:  # pragma: no cover - depends on the checkout
    _cropping = None
    _CROPPING_ERROR = f"{type(_exc).__name__}: {_exc}"
else:
    _CROPPING_ERROR = ""

DEFAULT_REFERENCE = REPO.parent / "shared" / "reference"
FP32_TOL = 1e-4
#: Rows that can be timed against the reference (``--variants``); ``fast`` is the default.
VARIANTS = ("fast", "bf16-plan", "ort-fp32", "ort-bf16", "ov-fp32", "ov-bf16")
QUIET_SHARE = 0.9  # CPU share above which a timed call counts as undisturbed
# glibc settings of --allocator no-trim: freed memory stays with the process (no trimming of
# the heap top, large blocks from the heap instead of fresh mmaps), so a reused buffer costs no
# page faults.  Same effect as jemalloc/tcmalloc for these workloads.
NO_TRIM_TUNABLES = "glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=4294967296"
MiB = 2**20


# =========================================================================== reference IMDN (from the paper)
# Independent of imdn_plugin.archs: plain NCHW fp32 modules, written from the paper's
# description.  Parameter names follow the authors' released checkpoints so the same
# weight files load by name.

SLOPE = 0.05  # LeakyReLU negative slope used throughout the paper's networks


class RefCCA(nn.Module):
    """Contrast-aware channel attention (§3.2, Fig. 3): z = std + mean per channel (Eq. 5).

    Computed the way the authors' released code does it (github.com/Zheng222/IMDN,
    ``model/block.py``): the mean for the deviation as spatial sums over W then H,
    the contrast as the square root of the mean squared deviation, and the mean
    term of z separately by global average pooling.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        pixels = x.shape[2] * x.shape[3]
        mean = x.sum(3, keepdim=True).sum(2, keepdim=True) / pixels
        contrast = ((x - mean).pow(2).sum(3, keepdim=True).sum(2, keepdim=True) / pixels).pow(0.5)
        return x * self.conv_du(contrast + F.adaptive_avg_pool2d(x, 1))


class RefIMDB(nn.Module):
    """Information multi-distillation block (§3.1, Fig. 2): keep 1/4, refine 3/4, three times."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.keep = channels // 4
        rest = channels - self.keep
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(rest, channels, 3, padding=1)
        self.c3 = nn.Conv2d(rest, channels, 3, padding=1)
        self.c4 = nn.Conv2d(rest, self.keep, 3, padding=1)
        self.c5 = nn.Conv2d(4 * self.keep, channels, 1)
        self.cca = RefCCA(4 * self.keep)

    def forward(self, x: Tensor) -> Tensor:
        split = [self.keep, self.c1.out_channels - self.keep]
        # In-place activations, as in the authors' code.
        kept1, rest = torch.split(F.leaky_relu_(self.c1(x), SLOPE), split, dim=1)
        kept2, rest = torch.split(F.leaky_relu_(self.c2(rest), SLOPE), split, dim=1)
        kept3, rest = torch.split(F.leaky_relu_(self.c3(rest), SLOPE), split, dim=1)
        kept4 = self.c4(rest)
        distilled = torch.cat([kept1, kept2, kept3, kept4], dim=1)
        return self.c5(self.cca(distilled)) + x


class RefIMDN(nn.Module):
    """IMDN (§3, Fig. 2); ``arbitrary=True`` gives IMDN_AS (§3.3, Fig. 5: two stride-2 convs, ×4 shuffle)."""

    def __init__(self, scale: int = 4, arbitrary: bool = False, channels: int = 64, blocks: int = 6) -> None:
        super().__init__()
        self.num_blocks = blocks
        if arbitrary:
            scale = 4
            self.fea_conv = nn.Sequential(
                nn.Conv2d(3, channels, 3, stride=2, padding=1),
                nn.LeakyReLU(SLOPE),  # not in place in the authors' IMDN_AS either
                nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            )
        else:
            self.fea_conv = nn.Conv2d(3, channels, 3, padding=1)
        for i in range(1, blocks + 1):
            setattr(self, f"IMDB{i}", RefIMDB(channels))
        self.c = nn.Sequential(nn.Conv2d(channels * blocks, channels, 1), nn.LeakyReLU(SLOPE, inplace=True))
        self.LR_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: Tensor) -> Tensor:
        fea = self.fea_conv(x)
        outs, h = [], fea
        for i in range(1, self.num_blocks + 1):
            h = getattr(self, f"IMDB{i}")(h)
            outs.append(h)
        body = self.c(torch.cat(outs, dim=1))
        return self.upsampler(self.LR_conv(body) + fea)


# =========================================================================== cases


@dataclass(frozen=True)
class Case:
    name: str
    scale: int  # IMDN scale; 0 = IMDN_AS
    lr_hw: tuple[int, int]  # network input size (IMDN_AS: the already upscaled image)
    quick_hw: tuple[int, int]
    strategy: str  # whole | acs | tiled
    note: str = ""

    @property
    def is_as(self) -> bool:
        return self.scale == 0

    @property
    def out_scale(self) -> int:
        return 1 if self.is_as else self.scale


CASES = {
    c.name: c
    for c in [
        Case("x2", 2, (256, 256), (64, 64), "whole"),
        Case("x3", 3, (256, 256), (64, 64), "whole"),
        Case("x4", 4, (256, 256), (64, 64), "whole"),
        Case("x4-720p", 4, (180, 320), (45, 80), "whole", "1280×720 output"),
        Case("as-whole", 0, (1024, 1024), (256, 256), "whole"),
        # ACS only crops when a side is not divisible by 4 (at 1024² it is one whole pass).
        Case("as-acs", 0, (1022, 1022), (254, 254), "acs", "4 ACS patches (sides ≢ 0 mod 4)"),
        Case("as-tiled", 0, (1024, 1024), (256, 256), "tiled", "tiles"),
        # The rows tile (128-pixel tiles, whole-image CCA statistics: build_predictor's default);
        # the reference runs the whole image at once: time and memory of tiling against no tiling.
        Case("x4-tiled", 4, (512, 512), (96, 96), "tiled-global", "rows: 128-px tiles, global CCA; reference: whole"),
    ]
}


def weights_file(case: Case, weights_dir: Path) -> Path:
    return weights_dir / ("IMDN_AS.pth" if case.is_as else f"IMDN_x{case.scale}.pth")


def load_state(path: Path) -> dict[str, Tensor] | None:
    if not path.is_file():
        return None
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def build_networks(case: Case, weights_dir: Path) -> tuple[nn.Module, nn.Module, str]:
    """(reference, project network, weights description) with identical weights."""
    ref = RefIMDN(arbitrary=True) if case.is_as else RefIMDN(scale=case.scale)
    net = IMDN_AS() if case.is_as else IMDN(upscale=case.scale)
    state = load_state(weights_file(case, weights_dir))
    if state is None:
        torch.manual_seed(0)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        source = "random init"
    else:
        source = weights_file(case, weights_dir).name
    ref.load_state_dict(state, strict=True)
    net.load_state_dict(state, strict=True)
    return ref.eval(), net.eval(), source


# =========================================================================== images


def _mirror_tile(img: Tensor, h: int, w: int) -> Tensor:
    """Extend a CHW image to at least h×w by mirrored copies, then crop."""
    while img.shape[-2] < h:
        img = torch.cat([img, img.flip(-2)], dim=-2)
    while img.shape[-1] < w:
        img = torch.cat([img, img.flip(-1)], dim=-1)
    return img[:, :h, :w]


def _synthetic(h: int, w: int) -> Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    r = 0.5 + 0.25 * torch.sin(40 * xx * yy) + 0.2 * ((xx * 9).floor() % 2)
    g = 0.5 + 0.3 * torch.cos(25 * (xx - yy) ** 2 * 8)
    b = 0.3 + 0.4 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1).float() + 0.1 * torch.sin(90 * yy)
    return torch.stack([r, g, b]).clamp(0, 1)


def ground_truth(h: int, w: int, reference: Path) -> tuple[Tensor, str]:
    """A natural-looking h×w RGB image in [0, 1] (Set5 'baby' mirrored, else synthetic)."""
    path = reference / "Set5" / "HR" / "baby.bmp"
    try:
        import cv2

        arr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if arr is None:
            raise OSError(path)
        img = torch.from_numpy(arr[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
        return _mirror_tile(img, h, w).unsqueeze(0).contiguous(), "Set5 baby (mirrored)"
    except Exception:  # noqa: BLE001 - no data or no OpenCV: any image will do for timing
        return _synthetic(h, w).unsqueeze(0), "synthetic"


def make_inputs(case: Case, hw: tuple[int, int], reference: Path) -> tuple[Tensor, Tensor, str]:
    """(network input, ground truth for PSNR, image description)."""
    h, w = hw
    if case.is_as:  # input = bicubic ×4 up of a ×4 bicubic-downscaled image, same size as the GT
        gt, src = ground_truth(h, w, reference)
        small = F.interpolate(gt, size=(max(1, h // 4), max(1, w // 4)), mode="bicubic", antialias=True)
        x = F.interpolate(small, size=(h, w), mode="bicubic").clamp(0, 1)
        return x, gt, src
    s = case.scale
    gt, src = ground_truth(s * h, s * w, reference)
    x = F.interpolate(gt, size=(h, w), mode="bicubic", antialias=True).clamp(0, 1)
    return x, gt, src


def psnr(out: Tensor, gt: Tensor, border: int) -> float:
    a, b = out.float().clamp(0, 1), gt.float()
    if border:
        a, b = a[..., border:-border, border:-border], b[..., border:-border, border:-border]
    mse = torch.mean((a.cpu() - b.cpu()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


# =========================================================================== runners


def make_runner(case: Case, forward: Callable[[Tensor], Tensor], quick: bool) -> Callable[[Tensor], Tensor]:
    """The case's strategy (whole image, ACS or tiles) around a forward callable."""
    if case.strategy in ("whole", "tiled-global"):  # tiled-global: the rows tile in build_variant
        return forward
    assert _cropping is not None
    if case.strategy == "acs":
        return lambda x: _cropping.acs_forward(forward, x, padding=_cropping.ACS_PADDING)
    tile = 96 if quick else _tiling.DEFAULT_TILE
    overlap = 16 if quick else _tiling.DEFAULT_OVERLAP
    return lambda x: _tiling.tiled_forward(
        forward, x, scale=case.out_scale, tile=tile, overlap=overlap, batch=_tiling.DEFAULT_TILE_BATCH,
        multiple=4 if case.is_as else 1, progress=False,
    )


def reference_forward(ref: nn.Module) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        with torch.no_grad():  # as the authors' test scripts run it
            return ref(x)

    return run


# =========================================================================== variants (the timed rows)


class Skip(Exception):
    """A variant that cannot run here; the message says why (it is printed in the notes)."""


@dataclass
class Built:
    """One timed variant of a case."""

    run: Callable[[Tensor], Tensor]  # the case's strategy around the forward
    forward: Callable[[Tensor], Tensor]  # the bare whole-image forward (for Set5)
    path: str  # code path / backend
    precision: str  # what it computed in (requested → effective where a backend can fall back)
    build_s: float
    fp32: bool  # held to the fp32 tolerance


def _plugin_precision(fast: object) -> str:
    plan = getattr(fast, "plan", None)
    precision = str(getattr(fast, "precision", "?"))
    if fast.path == "fused-cpu-bf16" and getattr(plan, "emulated", False):
        return "bf16 (fp32 kernels on bf16 values: no native bf16 here)"
    if fast.path in ("eager", "compiled") and precision in ("bf16", "fp16"):
        return f"{precision} (autocast)"
    return precision


def write_onnx(net: nn.Module, folder: Path, name: str) -> Path:
    """The network as an ONNX file (the graph of ``--backend``: :func:`imdn_plugin.inference.onnx.module_to_onnx`,
    dynamic N/H/W); a file, since the memory / timing probes run in subprocesses."""
    path = folder / f"{name}.onnx"
    with torch.no_grad():
        path.write_bytes(module_to_onnx(net.float().cpu().eval(), (torch.rand(1, 3, 32, 32),), ["input"]))
    return path


def build_variant(
    case: Case, variant: str, net: nn.Module, args: argparse.Namespace, device: torch.device,
    shape: tuple[int, ...], onnx_file: Path | None,
) -> Built:  # fmt: skip
    """Build one timed row; raises :class:`Skip` with the reason where it cannot run here."""
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    if case.strategy == "tiled-global":
        return tiled_variant(case, variant, net, args, device)
    if variant in ("fast", "bf16-plan"):
        if variant == "bf16-plan" and device.type != "cpu":
            raise Skip("the bf16 plan is a CPU path")
        fast = make_fast_forward(net, compile=args.compile and variant == "fast",
                                 precision=args.precision if variant == "fast" else "bf16")  # fmt: skip
        return Built(make_runner(case, fast, args.quick), fast, fast.path, _plugin_precision(fast),
                     time.perf_counter() - t0, fast.precision == "fp32")  # fmt: skip
    if device.type != "cpu":
        raise Skip("CPU rows only")
    if case.strategy != "whole":
        raise Skip("whole-image cases only")
    if variant == "ort-bf16":
        raise Skip("ONNX's Conv operator has no bfloat16 type (ONNX Runtime's CPU convolutions are fp32/fp16)")
    backend = "onnxruntime" if variant.startswith("ort") else "openvino"
    try:
        __import__(backend)
    except ImportError as exc:
        raise Skip(f"{backend} is not installed ({exc}); pip install {backend}") from None
    if onnx_file is None:
        raise Skip("no ONNX export (see the notes)")
    # The sessions of ``--backend`` (imdn_plugin.inference.onnx.Graph), on the file written by write_onnx.
    if variant == "ort-fp32":
        forward = Graph("onnxruntime", onnx_file, "fp32", threads)
        return Built(forward, forward, "onnxruntime CPU", "fp32", time.perf_counter() - t0, True)
    wanted = "fp32" if variant == "ov-fp32" else "bf16"
    run = Graph("openvino", onnx_file, wanted, threads, shape)  # static input shape
    dynamic = Graph("openvino", onnx_file, wanted, threads)  # for Set5's varying sizes
    label = run.precision
    precision = label if label == wanted else f"{wanted} requested, ran {label} (OpenVINO has no {wanted} on this CPU)"
    return Built(run, dynamic, "openvino CPU (static shape)", precision, time.perf_counter() - t0, label == "fp32")


#: Tile side of the ``tiled-global`` case (input pixels).
GLOBAL_TILE = 128
#: (backend, precision) of each variant's ``tiled-global`` row (precision None: ``--precision``).
_TILED_VARIANTS = {
    "fast": ("torch", None), "bf16-plan": ("torch", "bf16"), "ort-fp32": ("onnxruntime", "fp32"),
    "ov-fp32": ("openvino", "fp32"), "ov-bf16": ("openvino", "bf16"),
}  # fmt: skip


def tiled_variant(case: Case, variant: str, net: nn.Module, args: argparse.Namespace, device: torch.device) -> Built:
    """A ``tiled-global`` row: :func:`build_predictor` with tiles (whole-image CCA statistics) on the variant's backend."""
    from imdn_plugin.inference import InferenceOptions, build_predictor

    if variant not in _TILED_VARIANTS:
        raise Skip("ONNX's Conv operator has no bfloat16 type (ONNX Runtime's CPU convolutions are fp32/fp16)")
    backend, precision = _TILED_VARIANTS[variant]
    if backend != "torch" and device.type != "cpu":
        raise Skip("CPU rows only")
    if backend != "torch":
        try:
            __import__(backend)
        except ImportError as exc:
            raise Skip(f"{backend} is not installed ({exc}); pip install {backend}") from None
    t0 = time.perf_counter()
    tile = 32 if args.quick else GLOBAL_TILE
    options = InferenceOptions(tile=tile, tile_overlap=8, backend=backend, precision=precision or args.precision,
                               compile=args.compile and backend == "torch" and variant == "fast")  # fmt: skip
    predict = build_predictor(net, options)
    if backend == "torch":  # what the predictor's forward computes in (the bf16 plan may be emulated)
        ran = _plugin_precision(make_fast_forward(net, precision=options.precision))
    else:
        from imdn_plugin.inference.runtimes import runtime_forward

        ran = runtime_forward(net, backend, options.precision).precision
        if ran != options.precision:
            ran = f"{options.precision} requested, ran {ran} ({backend} has no {options.precision} on this CPU)"
    return Built(predict, predict, f"{backend} tiles {tile}, global CCA", ran, time.perf_counter() - t0,
                 ran == "fp32")  # fmt: skip


def build_paths(case: Case, args: argparse.Namespace, device: torch.device, x: Tensor) -> dict:
    """The reference runner and every requested variant (``Built``, or the ``Skip`` reason as a str)."""
    ref, net, source = build_networks(case, args.weights_dir)
    ref, net = ref.to(device), net.to(device)
    onnx_file = getattr(args, "onnx", None)
    variants: dict[str, object] = {}
    for variant in args.variants:
        try:
            variants[variant] = build_variant(case, variant, net, args, device, tuple(x.shape), onnx_file)
        except Skip as exc:
            variants[variant] = str(exc)
    return {"reference": make_runner(case, reference_forward(ref), args.quick), "variants": variants,
            "net": net, "weights": source}  # fmt: skip


def set5_psnr(forward: Callable[[Tensor], Tensor], case: Case, args: argparse.Namespace) -> float | None:
    """Mean Set5 Y-PSNR of ``forward`` at the case's scale (IMDN with the authors' weights), else None."""
    set5 = args.reference / "Set5"
    if case.is_as or not (set5 / "LR_bicubic" / f"X{case.scale}").is_dir():
        return None
    if not weights_file(case, args.weights_dir).is_file():
        return None
    return set5_scores(forward, case.scale, set5, ssim=False)[0]


# =========================================================================== timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call (CUDA: events around the call, then synchronize)."""
    return timed_share(fn, device)[0]


def timed_share(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(seconds, CPU share) of one call.

    CUDA: events around the call, then synchronize; share is 1.  CPU: wall
    time, and the process CPU time / (wall time × threads): ~1 when the call
    had its cores to itself, ~0.5 when another process took one of two cores.
    """
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000, 1.0
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, (time.process_time() - c0) / (wall * torch.get_num_threads())


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> tuple[dict[str, list[float]], list[bool]]:
    """Time each function ``repeats`` times, alternating the order every round (ABBA).

    Returns the times and, per round, whether every call in it had its CPU
    cores to itself (CPU share >= 0.9; always true on CUDA).
    """
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    quiet: list[bool] = []
    for r in range(repeats):
        ok = True
        for k in names if r % 2 == 0 else names[::-1]:
            t, share = timed_share(fns[k], device)
            times[k].append(t)
            ok &= share >= QUIET_SHARE
        quiet.append(ok)
    return times, quiet


def quartiles(v: list[float]) -> tuple[float, float, float]:
    if len(v) == 1:
        return v[0], v[0], v[0]
    q1, q2, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return q1, q2, q3


def matmul_gflops(device: torch.device, n: int, repeats: int) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    t = statistics.median(timed(lambda: a @ b, device) for _ in range(repeats))
    return 2 * n**3 / t / 1e9


def count_gflop(run: Callable[[Tensor], Tensor], x: Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        run(x)
    return counter.get_total_flops() / 1e9


# =========================================================================== memory


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def probe_memory(case: Case, path: str, args: argparse.Namespace) -> dict:
    """In this (fresh) process: peak RSS growth of one forward of ``path``, in bytes.

    The high-water mark is reset right before the forward (``/proc/self/clear_refs``)
    and read from ``VmHWM`` afterwards.  ``getrusage().ru_maxrss`` is the fallback
    only: on Linux a child process starts with its parent's peak RSS (carried over
    fork and exec), so in a subprocess of a large benchmark process it cannot
    show a smaller peak.
    """
    device = torch.device("cpu")
    hw = case.quick_hw if args.quick else case.lr_hw
    x, _, _ = make_inputs(case, hw, args.reference)
    run = _probe_runner(case, path, args, device, x)
    if args.compile and path == "fast":
        run(x)  # compile first; the measured forward is the next one
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS high-water mark (Linux >= 4.0)
        before = _status_kib("VmRSS")
    except OSError:
        before = None
    if before is not None:
        out = run(x)
        peak, method = _status_kib("VmHWM") or 0, "VmHWM"
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = run(x)
        peak, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
    del out
    return {"peak_bytes": max(0, peak - before) * 1024, "method": method}


def _probe_runner(case: Case, path: str, args: argparse.Namespace, device: torch.device, x: Tensor) -> Callable:
    """The runner of ``path`` (``reference`` or a variant) in a probe process."""
    if path != "reference":
        args.variants = [path]
    paths = build_paths(case, args, device, x)
    if path == "reference":
        return paths["reference"]
    built = paths["variants"][path]
    if not isinstance(built, Built):
        raise RuntimeError(f"{path}: {built}")
    return built.run


def probe_time(case: Case, path: str, args: argparse.Namespace) -> dict:
    """In this (fresh) process: ``args.warmup`` untimed calls of ``path``, then timed ones.

    Returns the seconds and the CPU share (see :func:`timed_share`) of each
    timed call.
    """
    device = torch.device("cpu")
    hw = case.quick_hw if args.quick else case.lr_hw
    x, _, _ = make_inputs(case, hw, args.reference)
    run = _probe_runner(case, path, args, device, x)
    for _ in range(max(1, args.warmup)):
        run(x)
    timed_calls = [timed_share(lambda: run(x), device) for _ in range(args.calls)]
    return {"seconds": [t for t, _ in timed_calls], "shares": [q for _, q in timed_calls]}


def probe_subprocess(kind: str, case: Case, path: str, args: argparse.Namespace, **extra: str) -> dict | None:
    """Run ``probe_<kind>`` for one case and path in a fresh interpreter; its result, or None."""
    cmd = [sys.executable, str(Path(__file__).resolve()), f"--probe-{kind}", case.name, path]
    cmd += ["--device", "cpu", "--precision", args.precision, "--weights-dir", str(args.weights_dir)]
    cmd += ["--reference", str(args.reference), "--warmup", str(args.warmup)]
    if getattr(args, "onnx", None) is not None:
        cmd += ["--onnx", str(args.onnx)]
    for key, value in extra.items():
        cmd += [f"--{key}", value]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.compile:
        cmd.append("--compile")
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ)
    if args.allocator == "no-trim":
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), NO_TRIM_TUNABLES]))
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1800, env=env)  # failure: reported below
    for line in res.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    print(f"warning: {kind} probe {case.name}/{path} failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return None


def memory_subprocess(case: Case, path: str, args: argparse.Namespace) -> float | None:
    result = probe_subprocess("memory", case, path, args)
    return None if result is None else result["peak_bytes"] / MiB


def isolated(
    case: Case, args: argparse.Namespace, variants: list[str]
) -> tuple[dict[str, list[float]], list[bool], dict[str, list[float]]]:
    """Time the reference and each variant, each in its own fresh processes (CPU): ``args.processes`` rounds.

    Every round starts one process per path (order reversed every other round);
    each does the warm-up and then about ``repeats / processes`` timed calls.
    Returns all timed calls per path, whether each round's calls had the CPU
    cores to themselves, and per variant the per-round speed-ups (ratio of the medians).
    """
    calls = max(1, math.ceil(args.repeats / args.processes))
    keys = ["reference", *variants]
    times: dict[str, list[float]] = {k: [] for k in keys}
    quiet: list[bool] = []
    ratios: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.processes):
        medians, ok = {}, True
        for key in (keys if r % 2 == 0 else keys[::-1]):
            result = probe_subprocess("time", case, key, args, calls=str(calls))
            if result is None:
                raise RuntimeError(f"{case.name}: the timing process for the {key} path failed")
            times[key] += result["seconds"]
            medians[key] = statistics.median(result["seconds"])
            ok &= all(q >= QUIET_SHARE for q in result["shares"])
        quiet.append(ok)
        for k in variants:
            ratios[k].append(medians["reference"] / medians[k])
    return times, quiet, ratios


def cuda_peak(run: Callable[[Tensor], Tensor], x: Tensor, device: torch.device) -> float:
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    out = run(x)
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del out
    return peak / MiB


# =========================================================================== reporting


def machine_line(device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    parts = [f"CPU: {cpu}", f"{cores} cores", f"torch {torch.__version__}", f"threads {torch.get_num_threads()}"]
    if device.type == "cuda":
        parts.append(f"GPU: {torch.cuda.get_device_name(device)}")
    return " | ".join(parts)


def cpu_flags_line() -> str:
    """The CPU's SIMD / matrix flags that decide the fp32 and bf16 speed (``/proc/cpuinfo``)."""
    from imdn_plugin.machine import amx_detected, cpu_flags, mkldnn_bf16_native

    flags = cpu_flags()
    if flags is None:
        return "unknown"
    wanted = [f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma", "avx_vnni", "avx_ne_convert")]

    return (
        f"{' '.join(sorted(wanted)) or 'none of avx2/avx512/amx'}; oneDNN bf16 convolutions: "
        f"{'native' if mkldnn_bf16_native() else 'none (the bf16 plan emulates them with fp32 kernels)'}; "
        f"AMX: {amx_detected()[1]}"
    )


def allocator_line() -> str:
    """The memory allocator settings the timings ran under (they move CPU times by up to ~30%)."""
    settings = [f"{k}={os.environ[k]}" for k in ("LD_PRELOAD", "GLIBC_TUNABLES") if os.environ.get(k)]
    settings += [f"{k}={v}" for k, v in os.environ.items() if k.startswith("MALLOC_") and v]
    return ", ".join(settings) if settings else "default (glibc malloc, dynamic mmap/trim thresholds)"


def load_line(seconds: float = 1.0) -> str:
    """How busy the machine is right before the run (other processes disturb absolute times)."""
    def snapshot() -> list[int] | None:
        try:
            with open("/proc/stat") as f:
                return [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None

    a = snapshot()
    time.sleep(seconds)
    b = snapshot()
    parts = []
    if hasattr(os, "getloadavg"):
        parts.append(f"load average {os.getloadavg()[0]:.1f}")
    if a and b:
        total = sum(b) - sum(a)
        idle = (b[3] - a[3]) + (b[4] - a[4])
        if total > 0:
            parts.append(f"CPU {100 * (total - idle) / total:.0f}% busy in the {seconds:g} s before the run")
    return ", ".join(parts) or "unknown"


def fmt_ms(v: list[float]) -> str:
    q1, q2, q3 = quartiles(v)
    return f"{q2 * 1e3:.1f} [{q1 * 1e3:.1f}–{q3 * 1e3:.1f}]"


def fmt_mib(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


# =========================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time the project's fast IMDN forward against an independent plain NCHW fp32 reference "
        "and print a markdown table.",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device to run on (default: cpu)")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="precision of the 'fast' row; the reference is always fp32 (default: fp32; auto: bf16 on a CPU with AMX)")
    p.add_argument(
        "--variants", default="fast",
        help=f"comma-separated rows to time against the reference, from: {', '.join(VARIANTS)}, or 'all' "
        "(default: fast). bf16-plan: the plugin's bf16 CPU plan; ort-*: ONNX Runtime; ov-*: OpenVINO "
        "(skipped with the reason when not installed; whole-image cases only)",
    )
    p.add_argument("--compile", action="store_true", help="fast path with torch.compile (first call compiles; reported in the notes)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per path (default 10; --quick: 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per path first (default 2; --quick: 1)")
    p.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated subset of: {', '.join(CASES)} (default: all)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the whole run, both paths (default: PyTorch's)")
    p.add_argument("--quick", action="store_true", help="smoke run: small inputs, few repeats, no memory probes")
    p.add_argument(
        "--memory", action=argparse.BooleanOptionalAction, default=None,
        help="measure peak memory (default: on, off with --quick)",
    )
    p.add_argument(
        "--set5", action=argparse.BooleanOptionalAction, default=None,
        help="Set5 Y-PSNR of each row's network at its precision (IMDN cases, needs --reference data; "
        "default: on, off with --quick)",
    )
    p.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="shared reference data, for the Set5 image (default: %(default)s)")
    p.add_argument(
        "--weights-dir", type=Path, default=DEFAULT_REFERENCE / "checkpoints",
        help="folder with IMDN_x{2,3,4}.pth / IMDN_AS.pth; random init if absent (default: %(default)s)",
    )
    p.add_argument(
        "--isolation", choices=["process", "shared"], default=None,
        help="process (CPU default): time each path in its own fresh processes, the way a user runs one of them "
        "(in one shared process the two paths change each other's allocator state: glibc's dynamic mmap/trim "
        "thresholds, hence page faults, moved the reference between ~460 and ~640 ms on IMDN x4 here); "
        "shared (CUDA default): both paths interleaved in this process",
    )
    p.add_argument(
        "--allocator", choices=["default", "no-trim"], default="default",
        help="with --isolation process: glibc malloc settings of the timing and memory processes, the same "
        "for both paths; default: as the environment has them; no-trim: GLIBC_TUNABLES that keep freed "
        "memory in the process (no page faults for reused buffers)",
    )
    p.add_argument(
        "--processes", type=int, default=4,
        help="with --isolation process: fresh processes per path, each doing the warm-up and repeats/processes "
        "timed calls (default: %(default)s)",
    )
    p.add_argument("--probe-memory", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--probe-time", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--calls", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--onnx", type=Path, default=None, help=argparse.SUPPRESS)  # probes: the case's ONNX export
    args = p.parse_args(argv)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown or not names:
        p.error(f"--cases: unknown case(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(CASES)}")
    args.cases = names
    variants = list(VARIANTS) if args.variants.strip() == "all" else [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        p.error(f"--variants: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(VARIANTS)} or all")
    args.variants = list(dict.fromkeys(variants))
    if args.repeats is None:
        args.repeats = 3 if args.quick else 10
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.memory is None:
        args.memory = not args.quick
    if args.set5 is None:
        args.set5 = not args.quick
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    if args.isolation is None:
        args.isolation = "process" if args.device == "cpu" else "shared"
    if args.isolation == "process" and args.device != "cpu":
        p.error("--isolation process is for --device cpu")
    if args.processes < 1:
        p.error("--processes must be >= 1")
    if args.allocator != "default" and args.isolation != "process":
        p.error("--allocator needs --isolation process (glibc reads its settings at process start)")
    if args.precision == "fp16" and args.device != "cuda":
        p.error("--precision fp16 needs --device cuda")
    return args


def run_case(
    case: Case, args: argparse.Namespace, device: torch.device, limit: float, set5_cache: dict
) -> tuple[list[str], list[str], bool]:
    """Rows (one per variant that ran), notes, and whether every fp32 row met the tolerance."""
    hw = case.quick_hw if args.quick else case.lr_hw
    x, gt, image = make_inputs(case, hw, args.reference)
    x, gt = x.to(device), gt.to(device)
    notes: list[str] = []
    onnx_dir: tempfile.TemporaryDirectory | None = None
    if any(v.startswith(("ort", "ov")) for v in args.variants) and device.type == "cpu" and case.strategy == "whole":
        onnx_dir = tempfile.TemporaryDirectory(prefix="imdn-bench-")
        t0 = time.perf_counter()
        try:
            args.onnx = write_onnx(build_networks(case, args.weights_dir)[1], Path(onnx_dir.name), case.name)
            notes.append(f"{case.name}: ONNX export (dynamic N/H/W) in {time.perf_counter() - t0:.1f} s")
        except Exception as exc:  # noqa: BLE001 - reported, the ONNX rows are skipped
            args.onnx = None
            notes.append(f"{case.name}: ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
    try:
        return _run_case(case, args, device, limit, set5_cache, x, gt, image, notes)
    finally:
        args.onnx = None
        if onnx_dir is not None:
            onnx_dir.cleanup()


def _run_case(
    case: Case, args: argparse.Namespace, device: torch.device, limit: float, set5_cache: dict,
    x: Tensor, gt: Tensor, image: str, notes: list[str],
) -> tuple[list[str], list[str], bool]:  # fmt: skip
    paths = build_paths(case, args, device, x)
    ref_run, weights = paths["reference"], paths["weights"]
    built: dict[str, Built] = {}
    for variant, b in paths["variants"].items():
        if isinstance(b, Built):
            built[variant] = b
        else:
            notes.append(f"{case.name} / {variant}: skipped, {b}")
    if not built:
        return [], notes, True

    out_ref = ref_run(x)
    border = case.out_scale if not case.is_as else 4
    psnr_ref = psnr(out_ref, gt, border)
    checks: dict[str, tuple[float, float]] = {}
    set5: dict[str, float | None] = {}
    for variant, b in built.items():
        t0 = time.perf_counter()
        out = b.run(x)
        sync(device)
        first_call = time.perf_counter() - t0
        out = out.float().to(out_ref.device)
        checks[variant] = ((out - out_ref.float()).abs().max().item(), psnr(out, gt, border) - psnr_ref)
        if case.strategy != "whole" and variant == "fast":
            whole_ref = reference_forward(build_networks(case, args.weights_dir)[0].to(device))
            # (padded to the network's size multiple where needed, like a whole-image pass would be)
            whole = _cropping.pad_forward(whole_ref, x, multiple=4 if case.is_as else 1, scale=case.out_scale)
            notes.append(
                f"{case.name}: {case.strategy} vs whole-image reference: max |diff| {(out - whole).abs().max().item():.2e}, "
                f"PSNR {psnr(out, gt, border):.2f} vs {psnr(whole, gt, border):.2f} dB"
            )
            del whole
        del out
        key = (variant, case.scale, b.precision)
        if key not in set5_cache:
            set5_cache[key] = set5_psnr(b.forward, case, args) if args.set5 else None
        set5[variant] = set5_cache[key]
        notes.append(
            f"{case.name} / {variant}: path {b.path}, {b.precision}; built in {b.build_s:.2f} s, first call {first_call:.2f} s"
        )
    del out_ref
    gflop = count_gflop(ref_run, x)

    info = {k: (b.path, b.precision, b.fp32) for k, b in built.items()}
    names = list(built)
    if args.isolation == "process":
        runs: dict[str, Callable[[Tensor], Tensor]] = {}
        del paths, ref_run, built  # this process only checks outputs; the timing runs elsewhere
        times, quiet, ratios = isolated(case, args, names)
    else:
        runs = {"reference": ref_run, **{k: b.run for k, b in built.items()}}
        for _ in range(args.warmup):
            for fn in runs.values():
                fn(x)
        sync(device)
        times, quiet = interleaved({k: (lambda fn=fn: fn(x)) for k, fn in runs.items()}, args.repeats, device)
        ratios = {k: [r / f for r, f in zip(times["reference"], times[k], strict=True)] for k in names}
    if device.type == "cpu":
        for k in names:
            quiet_ratios = [r for r, q in zip(ratios[k], quiet, strict=True) if q]
            notes.append(
                f"{case.name} / {k}: {len(quiet_ratios)}/{len(ratios[k])} rounds had the CPU cores to themselves"
                + (f" (speed-up over those: {statistics.median(quiet_ratios):.2f}×)" if quiet_ratios else "")
            )

    mem: dict[str, float | None] = {k: None for k in ["reference", *names]}
    if args.memory:
        for k in mem:
            if device.type == "cuda":
                mem[k] = cuda_peak(runs[k], x, device)
            else:
                mem[k] = memory_subprocess(case, k, args)

    n, _, h, w = x.shape
    s = case.out_scale
    med_ref = statistics.median(times["reference"])
    gf_ref = gflop / med_ref
    label = f"{case.name}" + (f" ({case.note})" if case.note else "")
    rows, all_ok = [], True
    for k in names:
        path, precision, fp32 = info[k]
        diff, d_psnr = checks[k]
        ok = diff <= FP32_TOL if fp32 else True
        all_ok &= ok
        rq1, rq2, rq3 = quartiles(ratios[k])
        gf = gflop / statistics.median(times[k])
        set5_cell = "–" if set5[k] is None else f"{set5[k]:.4f}"
        row = [
            label, f"{w}×{h} → {s * w}×{s * h}", f"{k}: {path}", precision,
            fmt_ms(times["reference"]), fmt_ms(times[k]), f"**{rq2:.2f}×** [{rq1:.2f}–{rq3:.2f}]", f"{gflop:.1f}",
            f"{gf_ref:.0f} ({100 * gf_ref / limit:.0f}%)", f"{gf:.0f} ({100 * gf / limit:.0f}%)",
            f"{diff:.1e}" + ("" if ok else " FAIL"), f"{d_psnr:+.3f}", set5_cell, fmt_mib(mem["reference"]), fmt_mib(mem[k]),
        ]  # fmt: skip
        rows.append("| " + " | ".join(row) + " |")
    notes.append(f"{case.name}: weights {weights}, input {image}")
    return rows, notes, all_ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe_memory:
        name, path = args.probe_memory
        print("PROBE " + json.dumps(probe_memory(CASES[name], path, args)), flush=True)
        return 0
    if args.probe_time:
        name, path = args.probe_time
        print("PROBE " + json.dumps(probe_time(CASES[name], path, args)), flush=True)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and args.precision == "fp32":
        # Strict fp32 for both paths and the matmul limit (the fast path does the same per call).
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    print(f"Machine: {machine_line(device)}")
    print(f"CPU flags: {cpu_flags_line()}")
    print(f"Load: {load_line()}")
    print(
        f"Settings: device {args.device}, 'fast' precision {args.precision}, variants {', '.join(args.variants)}, "
        f"compile {'on' if args.compile else 'off'}, "
        f"repeats {args.repeats} per path " + (
            f"(in {args.processes} fresh processes per path, alternating, each after {args.warmup} warm-up calls)"
            if args.isolation == "process" else f"(interleaved in one process, after {args.warmup} warm-up)"
        ) + (", quick" if args.quick else "")
    )
    print(
        "Allocator: " + (f"timing processes with GLIBC_TUNABLES={NO_TRIM_TUNABLES} (all paths)"
                         if args.allocator == "no-trim" else allocator_line())
    )
    n_mm = 2048 if args.quick else 4096
    limit = matmul_gflops(device, n_mm, 3 if args.quick else 5)
    print(f"Practical limit: {n_mm}×{n_mm} fp32 matmul = {limit:.0f} GFLOP/s (same run)")
    print()
    header = [
        "case", "input → output", "row: path", "precision", "reference ms, median [IQR]", "row ms, median [IQR]",
        "speed-up [IQR]", "GFLOP", "reference GFLOP/s (% of matmul)", "row GFLOP/s (% of matmul)",
        "max abs diff", "ΔPSNR dB", "Set5 PSNR (Y)", "reference peak MiB", "row peak MiB",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 4 + ["---:"] * (len(header) - 4)) + "|")
    all_notes: list[str] = []
    failed = False
    set5_cache: dict = {}
    for name in args.cases:
        case = CASES[name]
        if case.strategy != "whole" and _cropping is None:
            all_notes.append(f"{name}: skipped, imdn_plugin.inference.cropping is not importable ({_CROPPING_ERROR})")
            continue
        rows, notes, ok = run_case(case, args, device, limit, set5_cache)
        for row in rows:
            print(row, flush=True)
        all_notes += notes
        failed |= not ok
    print()
    print(
        "Times are per call (one image); speed-up = median of the per-round reference/row ratios "
        + ("(a round: one fresh process per path, ratio of their median times); " if args.isolation == "process"
           else "(a round: one call of each path); ")
        + "peak memory = growth of one forward (CPU: peak RSS in a fresh subprocess per case and path, high-water mark "
        "reset before the forward; CUDA: max_memory_allocated); "
        f"max abs diff vs the reference (tolerance {FP32_TOL:g} for fp32 rows); ΔPSNR = PSNR(row) − PSNR(reference) "
        "against the ground truth; Set5 PSNR = mean Y-PSNR of the row's network at its precision on Set5 at the "
        "case's scale (BasicSR's calculate_psnr, crop_border = scale, uint8 output; '–': IMDN_AS, no reference data, "
        "or --no-set5)."
    )
    for note in all_notes:
        print(f"- {note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
