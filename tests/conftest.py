"""Shared test fixtures: device from IMDN_TEST_DEVICE, the read-only reference data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import imdn_plugin  # noqa: F401  (installs the torchvision alias before basicsr is imported)

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device(os.environ.get("IMDN_TEST_DEVICE", "cpu"))


@pytest.fixture(scope="session")
def reference() -> Path:
    """``../shared/reference`` (authors' weights + Set5); skips when absent."""
    if not (REFERENCE / "checkpoints").is_dir():
        pytest.skip(f"reference data not found at {REFERENCE} (authors' weights and Set5 are not redistributed)")
    return REFERENCE


@pytest.fixture(scope="session")
def tiny_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``HR/`` (four 32x32 noise images) and ``LR/`` (their 8x8 area-downscaled versions), x4 pairs."""
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("tiny_pairs")
    for sub in ("HR", "LR"):
        (root / sub).mkdir()
    for i in range(4):
        img = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "HR" / f"{i}.png"), img)
        cv2.imwrite(str(root / "LR" / f"{i}.png"), cv2.resize(img, (8, 8), interpolation=cv2.INTER_AREA))
    return root
