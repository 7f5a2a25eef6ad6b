"""Fixtures of the command tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imdn_plugin.archs import IMDN


@pytest.fixture()
def x2(tmp_path: Path) -> Path:
    """A small IMDN ×2 checkpoint with random (seeded) weights, in BasicSR's ``params`` layout."""
    torch.manual_seed(0)
    path = tmp_path / "x2.pth"
    torch.save({"params": IMDN(num_feat=16, num_block=1, upscale=2).state_dict()}, path)
    return path
