"""``Upscaler``: non-finite inputs and outputs are errors, never images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imdn_plugin import Upscaler
from imdn_plugin.archs import IMDN
from imdn_plugin.errors import InferenceError


def save(tmp_path: Path, scale_weights: float = 1.0) -> Path:
    torch.manual_seed(0)
    state = IMDN(num_feat=16, num_block=1, upscale=2).state_dict()
    path = tmp_path / "w.pth"
    torch.save({"params": {k: v * scale_weights for k, v in state.items()}}, path)
    return path


def test_non_finite_input_is_refused(tmp_path: Path) -> None:
    up = Upscaler(save(tmp_path), device="cpu")
    img = np.full((5, 6, 3), 0.5, np.float32)
    assert np.isfinite(up(img)).all()
    img[1, 2, 0] = np.nan
    with pytest.raises(InferenceError, match=r"the input holds 1 non-finite value\(s\)"):
        up(img)


def test_non_finite_output_is_refused(tmp_path: Path) -> None:
    up = Upscaler(save(tmp_path, scale_weights=1e20), device="cpu")  # finite weights, activations overflow
    with pytest.raises(InferenceError, match=r"the network's output holds \d+ non-finite value\(s\) \(NaN/Inf\) of 360"):
        up(np.full((5, 6, 3), 0.5, np.float32))
