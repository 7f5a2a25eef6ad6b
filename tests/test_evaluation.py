"""``imdn_plugin.evaluation``: the Set5 scoring the benchmark and check scripts share."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imdn_plugin.archs import IMDN
from imdn_plugin.checkpoint import load_into, load_state_dict
from imdn_plugin.evaluation import SET5, set5_pairs, set5_scores


def test_pairs_crop_gt_to_scale_times_lr(reference: Path) -> None:
    pairs = set5_pairs(reference / "Set5", 3)
    assert [name for name, _, _ in pairs] == list(SET5)
    for _, x, gt in pairs:
        assert x.shape[:2] == (1, 3) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert gt.shape[:2] == (3 * x.shape[2], 3 * x.shape[3])


def test_missing_image_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"baby \(×2\)"):
        set5_pairs(tmp_path, 2)


def test_scores_reproduce_table5_x4_psnr(reference: Path, one_thread) -> None:
    """The authors' ×4 weights through a plain module forward: the paper's Table 5 PSNR (reference README)."""
    net = IMDN(upscale=4).eval()
    load_into(net, load_state_dict(reference / "checkpoints" / "IMDN_x4.pth"))
    with torch.inference_mode():
        psnr, ssim = set5_scores(net, 4, reference / "Set5", ssim=False)
    assert abs(psnr - 32.2096) <= 0.001, psnr
    assert ssim != ssim  # nan when not asked for
