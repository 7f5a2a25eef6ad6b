"""``AnyScalePairedDataset`` against BasicSR's MATLAB-style ``imresize`` (paper §3.3).

Without ``dataroot_lq`` the LR is the GT downscaled by ``1/s`` and upscaled back to the GT
size (bicubic, antialiased when shrinking); with it, the LR file is upscaled to the GT
size.  The expected values here come from ``basicsr.utils.matlab_functions.imresize``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from basicsr.utils.matlab_functions import imresize

from imdn_plugin.data.resize import imresize_to
from imdn_plugin.errors import ConfigError
from imdn_plugin.integration.datasets import AnyScalePairedDataset

ATOL = 1e-5


def rgb_chw(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1))).float()


def degraded(gt: np.ndarray, scale: float) -> np.ndarray:
    """``imresize(imresize(GT, 1/s), s)``, clipped to [0, 1] (BasicSR's functions)."""
    return np.clip(imresize(imresize(gt, 1 / scale), scale), 0.0, 1.0)


@pytest.fixture(scope="module")
def gt_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two GT images whose sides are divisible by 2, 2.5 and 4 (so BasicSR's sizes agree)."""
    root = tmp_path_factory.mktemp("anyscale")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        img = cv2.GaussianBlur(rng.random((40, 60, 3)), (3, 3), 0)
        cv2.imwrite(str(root / f"{name}.png"), (img * 255).round().astype(np.uint8))
    return root


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path)).astype(np.float64) / 255.0


def dataset(**opt) -> AnyScalePairedDataset:
    return AnyScalePairedDataset({"name": "t", "type": "AnyScalePairedDataset", "io_backend": {"type": "disk"}, **opt})


@pytest.mark.parametrize("scale", [2, 2.5, 4])
def test_lr_made_from_gt_is_bicubic_down_then_up(gt_folder: Path, scale: float) -> None:
    ds = dataset(dataroot_gt=str(gt_folder), scale=scale, phase="val")
    assert len(ds) == 2
    for i, name in enumerate(("a", "b")):
        item = ds[i]
        gt = read(gt_folder / f"{name}.png")
        assert torch.allclose(item["gt"], rgb_chw(gt), atol=1e-6)
        assert item["lq"].shape == item["gt"].shape
        assert torch.allclose(item["lq"], rgb_chw(degraded(gt, scale)), atol=ATOL)
        assert (item["lq"] - item["gt"]).abs().max() > 0.05  # really degraded


@pytest.mark.parametrize("augment", [False, True])
def test_training_patch_is_degraded_after_cropping(gt_folder: Path, augment: bool) -> None:
    ds = dataset(dataroot_gt=str(gt_folder), scale=[2, 2], phase="train", gt_size=20, use_hflip=augment, use_rot=augment)
    torch.manual_seed(0)
    full = read(gt_folder / "a.png")
    for _ in range(3):
        item = ds[0]
        gt = item["gt"].numpy().transpose(1, 2, 0)[:, :, ::-1].astype(np.float64)  # back to BGR HWC
        assert gt.shape == (20, 20, 3)
        if not augment:  # a window of the GT image ...
            hits = [(r, c) for r in range(21) for c in range(41) if np.abs(full[r : r + 20, c : c + 20] - gt).max() < 1e-6]
            assert len(hits) == 1
        # ... whose LR is that window degraded (flips and transposes commute with the resize)
        assert torch.allclose(item["lq"], rgb_chw(degraded(gt, 2)), atol=ATOL)


def test_a_scale_range_draws_a_factor_per_sample(gt_folder: Path) -> None:
    """``scale: [1.5, 4]``: each training sample is degraded through its own LR size, 5..13 for 20x20."""
    ds = dataset(dataroot_gt=str(gt_folder), scale=[1.5, 4.0], phase="train", gt_size=20)
    torch.manual_seed(1)
    sizes = []
    for _ in range(12):
        item = ds[1]
        gt = item["gt"].numpy().transpose(1, 2, 0)[:, :, ::-1]
        lq = item["lq"].numpy().transpose(1, 2, 0)[:, :, ::-1]
        found = [m for m in range(2, 20) if np.abs(np.clip(imresize_to(imresize_to(gt, (m, m)), (20, 20)), 0, 1) - lq).max() < ATOL]
        assert len(found) == 1, found
        sizes.append(found[0])
    assert set(sizes) <= set(range(5, 14)) and len(set(sizes)) >= 4, sizes


def test_lr_files_are_upscaled_to_the_gt_size(gt_folder: Path, tmp_path: Path) -> None:
    lq_dir = tmp_path / "lq"
    lq_dir.mkdir()
    for name in ("a", "b"):
        small = np.clip(imresize(read(gt_folder / f"{name}.png"), 1 / 4), 0, 1)
        cv2.imwrite(str(lq_dir / f"{name}.png"), (small * 255).round().astype(np.uint8))
    ds = dataset(dataroot_gt=str(gt_folder), dataroot_lq=str(lq_dir), scale=4, phase="val")
    item = ds[1]
    expected = np.clip(imresize(read(lq_dir / "b.png"), 4), 0.0, 1.0)
    assert torch.allclose(item["lq"], rgb_chw(expected), atol=ATOL)
    assert torch.allclose(item["gt"], rgb_chw(read(gt_folder / "b.png")), atol=1e-6)


def test_same_size_pairs_pass_through(gt_folder: Path) -> None:
    ds = dataset(dataroot_gt=str(gt_folder), dataroot_lq=str(gt_folder), scale=1, phase="val")
    item = ds[0]
    assert torch.equal(item["lq"], item["gt"])


def test_option_errors_name_the_key(gt_folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"^datasets:t:scale: must be a number >= 1 or \[min, max\], got 0.5"):
        dataset(dataroot_gt=str(gt_folder), scale=0.5)
    with pytest.raises(ConfigError, match="^datasets:t:gt_size: must be a multiple of 4 for IMDN_AS, got 30"):
        dataset(dataroot_gt=str(gt_folder), phase="train", gt_size=30)
