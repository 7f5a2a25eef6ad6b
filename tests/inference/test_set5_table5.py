"""The authors' weights through ``build_predictor`` reproduce the paper's Table 5 on Set5.

In-process and computed the way ``basicsr test`` does (BasicSR 1.4.2's
``PairedImageDataset`` cropping, ``tensor2img`` rounding, ``calculate_psnr`` /
``calculate_ssim`` on the Y channel, ``crop_border`` = scale); the ×4 command itself is
run in tests/cli/test_main.py.  Expected values: ../shared/reference/README.md.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import img2tensor, tensor2img

from imdn_plugin.archs import IMDN
from imdn_plugin.checkpoint import load_into, load_state_dict
from imdn_plugin.inference import InferenceOptions, build_predictor


@pytest.mark.slow
@pytest.mark.parametrize("scale, psnr, ssim", [(2, 37.9960, 0.9605), (3, 34.3597, 0.9270), (4, 32.2096, 0.8948)])
def test_set5_reproduces_table5(reference: Path, scale: int, psnr: float, ssim: float, one_thread) -> None:
    net = IMDN(upscale=scale)
    load_into(net, load_state_dict(reference / "checkpoints" / f"IMDN_x{scale}.pth"))
    predict = build_predictor(net, InferenceOptions())
    psnrs, ssims = [], []
    hr_files = sorted((reference / "Set5" / "HR").glob("*.bmp"))
    assert len(hr_files) == 5
    for hr_file in hr_files:
        lq = cv2.imread(str(reference / "Set5" / "LR_bicubic" / f"X{scale}" / f"{hr_file.stem}x{scale}.bmp"))
        gt = cv2.imread(str(hr_file))[: lq.shape[0] * scale, : lq.shape[1] * scale]  # as PairedImageDataset
        x = img2tensor(lq.astype(np.float32) / 255.0, bgr2rgb=True, float32=True)[None]
        with torch.inference_mode():
            sr = tensor2img(predict(x))  # BGR uint8, rounded
        assert sr.shape == gt.shape
        psnrs.append(calculate_psnr(sr, gt, crop_border=scale, test_y_channel=True))
        ssims.append(calculate_ssim(sr, gt, crop_border=scale, test_y_channel=True))
    assert abs(np.mean(psnrs) - psnr) <= 0.001, np.mean(psnrs)
    assert abs(np.mean(ssims) - ssim) <= 0.0001, np.mean(ssims)
