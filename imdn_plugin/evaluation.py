"""Scoring a forward function on a benchmark set the way ``basicsr test`` does.

Shared by the benchmark and check scripts (``benchmarks/``), so that every table
scores outputs identically: output rounded to uint8 as SRModel's validation
(``tensor2img``), ground truth cropped to ``scale × LR size``, BasicSR's
``calculate_psnr`` / ``calculate_ssim`` on the Y channel with ``crop_border`` =
scale (the paper's Table 5 protocol).  Needs BasicSR.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

#: The five Set5 images, in the layout of ``../shared/reference/Set5``.
SET5 = ("baby", "bird", "butterfly", "head", "woman")


def set5_pairs(set5: Path, scale: int) -> list[tuple[str, Tensor, np.ndarray]]:
    """``(name, LR as 1×3×H×W RGB float in [0, 1], GT uint8 BGR cropped to scale × LR)`` per Set5 image.

    ``set5`` holds ``HR/<name>.bmp`` and ``LR_bicubic/X<scale>/<name>x<scale>.bmp``.
    """
    import cv2

    pairs = []
    for name in SET5:
        hr = cv2.imread(str(set5 / "HR" / f"{name}.bmp"), cv2.IMREAD_COLOR)
        lr = cv2.imread(str(set5 / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.bmp"), cv2.IMREAD_COLOR)
        if hr is None or lr is None:
            raise FileNotFoundError(f"Set5 image {name} (×{scale}) not found under {set5}")
        h, w = lr.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(lr[:, :, ::-1].transpose(2, 0, 1))).float().div(255).unsqueeze(0)
        pairs.append((name, x, hr[: scale * h, : scale * w]))
    return pairs


def set5_scores(
    forward: Callable[[Tensor], Tensor], scale: int, set5: Path, ssim: bool = True
) -> tuple[float, float]:
    """Mean Y-channel ``(PSNR, SSIM)`` over Set5 of ``forward`` (NCHW RGB in [0, 1] -> SR), as ``basicsr test``.

    SSIM is ``nan`` when ``ssim`` is false (it is the slow half).
    """
    # importing imdn_plugin (this package) installed the torchvision alias BasicSR needs
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils import tensor2img

    psnrs, ssims = [], []
    for _, x, gt in set5_pairs(set5, scale):
        sr = tensor2img([forward(x).float()])  # clamp, RGB->BGR, *255, round, uint8
        psnrs.append(calculate_psnr(sr, gt, crop_border=scale, test_y_channel=True))
        ssims.append(calculate_ssim(sr, gt, crop_border=scale, test_y_channel=True) if ssim else float("nan"))
    return sum(psnrs) / len(psnrs), sum(ssims) / len(ssims)
