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


@pytest.mark.parametrize("scale", [float("inf"), float("nan"), 0.5])
def test_imdn_as_scale_must_be_finite_and_at_least_1(tmp_path: Path, scale: float) -> None:
    from imdn_plugin.archs import IMDN_AS
    from imdn_plugin.errors import ConfigError

    path = tmp_path / "as.pth"
    torch.save(IMDN_AS(num_feat=16, num_block=1).state_dict(), path)
    with pytest.raises(ConfigError, match=r"^--scale: must be a finite number >= 1"):
        Upscaler(path, scale=scale, device="cpu")


def test_imdn_as_output_above_the_pixel_limit_is_refused_before_allocating(tmp_path: Path, monkeypatch) -> None:
    from imdn_plugin.archs import IMDN_AS

    path = tmp_path / "as.pth"
    torch.save(IMDN_AS(num_feat=16, num_block=1).state_dict(), path)
    up = Upscaler(path, scale=1e6, device="cpu")
    with pytest.raises(InferenceError, match=r"the output would be 6000000x5000000 = .* above the limit"):
        up(np.full((5, 6, 3), 0.5, np.float32))
    monkeypatch.setenv("IMDN_MAX_PIXELS", "100")
    with pytest.raises(InferenceError, match="above the limit of 100"):
        Upscaler(path, scale=2, device="cpu")(np.full((5, 6, 3), 0.5, np.float32))
    assert Upscaler(path, scale=1.5, device="cpu")(np.full((5, 6, 3), 0.5, np.float32)).shape == (8, 9, 3)
