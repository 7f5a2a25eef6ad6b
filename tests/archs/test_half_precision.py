"""fp16 / bf16 safety of IMDN and IMDN_AS (the whole network cast, as spandrel's ``model.half()``
does): finite and close to fp32 on a real photo, flat, black, white and saturated inputs; the CCA
statistics (Eq. 5) taken in fp32 and rounded once, on maps whose sum passes fp16's 65504.

Small sizes here (fp16 convolutions on a CPU are slow); the whole Set5 table, the hard inputs and
4000-px-wide images: benchmarks/check_half.py, figures in docs/precision-and-outputs.md.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from imdn_plugin.archs import CCALayer
from imdn_plugin.checkpoint import load_network


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float().clamp(0, 1) - b.float().clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _inputs(reference: Path, h: int, w: int) -> dict[str, torch.Tensor]:
    img = cv2.imread(str(reference / "Set5" / "HR" / "butterfly.bmp"), cv2.IMREAD_COLOR)[:, :, ::-1]
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    photo = torch.from_numpy(np.ascontiguousarray(img[top : top + h, left : left + w])).permute(2, 0, 1)[None].float() / 255
    bars = torch.zeros(1, 3, h, w)
    for i, rgb in enumerate([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1)]):
        bars[0, :, :, i * w // 6 : (i + 1) * w // 6] = torch.tensor(rgb, dtype=torch.float32)[:, None, None]
    return {
        "photo": photo,
        "flat": torch.full((1, 3, h, w), 0.5),
        "black": torch.zeros(1, 3, h, w),
        "white": torch.ones(1, 3, h, w),
        "saturated colour bars": bars,
    }


# Floors below the CPU measurements of benchmarks/check_half.py (fp16 ~56-94 dB, bf16 ~38-77 dB on
# these kinds of input); an fp16 / bf16 path that breaks (overflow, statistics in 16 bits on a
# runtime that accumulates in 16 bits, a dtype mix-up) lands far below them or non-finite.
FLOORS = {torch.float16: 50.0, torch.bfloat16: 33.0}


@pytest.mark.parametrize("name, size", [("IMDN_x4.pth", (8, 12)), ("IMDN_AS.pth", (16, 24))])
def test_whole_network_in_half_precision_on_hard_inputs(reference: Path, name: str, size: tuple[int, int]) -> None:
    net, _ = load_network(reference / "checkpoints" / name, None)
    net.eval()
    with torch.inference_mode():
        for label, x in _inputs(reference, *size).items():
            expected = net(x)
            for dtype, floor in FLOORS.items():
                got = copy.deepcopy(net).to(dtype)(x.to(dtype))
                assert got.dtype == dtype and bool(torch.isfinite(got).all()), (label, dtype)
                assert _psnr(got, expected) >= floor, (label, dtype, _psnr(got, expected))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cca_statistics_are_fp32_statistics_rounded_once(dtype: torch.dtype) -> None:
    """Eq. 5 in 16 bits: the mean and std are those of an fp32 reduction, each rounded once to
    ``dtype`` (a 16-bit variance rounded and then square-rooted in 16 bits differs in about a
    fifth of the channels); on a 256×300 map near 1 (sum 76,800 > fp16's 65,504) they are finite
    and match a float64 reference."""
    torch.manual_seed(0)
    x = (torch.rand(1, 256, 40, 50) * torch.rand(1, 256, 1, 1) * 3).to(dtype)
    mean, std = CCALayer.statistics(x)
    var32, mean32 = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=0)
    assert mean.dtype == std.dtype == dtype
    assert torch.equal(mean, mean32.to(dtype)) and torch.equal(std, var32.sqrt().to(dtype))
    big = (1 + 0.01 * torch.randn(1, 8, 256, 300, dtype=torch.float64)).to(dtype)
    mean, std = CCALayer.statistics(big)
    ref = big.double()
    assert bool(torch.isfinite(mean).all() and torch.isfinite(std).all())
    eps = 2.0 ** (-10 if dtype == torch.float16 else -7)
    assert torch.allclose(mean.double(), ref.mean(dim=(2, 3), keepdim=True), rtol=eps, atol=0)
    assert torch.allclose(std.double(), ref.std(dim=(2, 3), keepdim=True, correction=0), rtol=4 * eps, atol=1e-4)
