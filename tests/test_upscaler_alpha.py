"""``Upscaler`` keeps transparency for every kind of image that has it: BGRA and gray + alpha,
8 and 16 bit; the alpha is the bicubic-resized input alpha, the colour the network's output."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from imdn_plugin import Upscaler
from imdn_plugin.archs import IMDN
from imdn_plugin.data.resize import imresize_to


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Upscaler:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "x2.pth"
    torch.save({"params": IMDN(num_feat=16, num_block=1, upscale=2).state_dict()}, path)
    from imdn_plugin.inference import InferenceOptions

    return Upscaler(path, device="cpu", options=InferenceOptions(precision="fp32"), alpha="bicubic")  # the reference below


def _alpha(h: int, w: int) -> np.ndarray:
    """A gradient with transparent and opaque parts (in [0, 1])."""
    return np.clip(np.linspace(-0.3, 1.3, w)[None, :] * np.linspace(0.5, 1.0, h)[:, None], 0, 1)


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_gray_alpha_png_keeps_alpha(up: Upscaler, tmp_path: Path) -> None:
    """An 8-bit gray + alpha ("LA") PNG: OpenCV decodes it as BGRA, the result keeps the alpha."""
    h, w = 6, 7
    gray = np.random.default_rng(8).random((h, w))
    alpha = _alpha(h, w)
    src = tmp_path / "la.png"
    Image.fromarray((np.stack([gray, alpha], axis=2) * 255).round().astype(np.uint8), "LA").save(src)
    out = _decode(up.upscale_file(src))
    assert out.dtype == np.uint8 and out.shape == (2 * h, 2 * w, 4), out.shape
    read_alpha = np.asarray(Image.open(src))[..., 1] / 255.0
    expected_alpha = np.clip(imresize_to(read_alpha, (2 * h, 2 * w)), 0, 1)
    assert np.abs(out[..., 3] / 255 - expected_alpha).max() <= 1 / 255
    assert out[..., 3].min() == 0 and out[..., 3].max() == 255  # transparent and opaque parts kept


@pytest.mark.parametrize("depth", [np.uint8, np.uint16])
def test_two_channel_gray_alpha_array_keeps_alpha(up: Upscaler, depth) -> None:
    """A decoder that gives gray + alpha as 2 channels (from_array's channels == 2): the alpha is
    kept and resized like a BGRA image's."""
    from imdn_plugin.data import imageio

    h, w = 5, 6
    maxval = np.iinfo(depth).max
    arr = np.stack([np.random.default_rng(2).random((h, w)), _alpha(h, w)], axis=2)
    img = imageio.from_array((arr * maxval).round().astype(depth))
    assert img.channels == 2 and img.alpha is not None
    sr, alpha = up.upscale(img)
    assert sr.shape == (2 * h, 2 * w, 3)
    assert alpha is not None and alpha.shape == (2 * h, 2 * w)
    expected = np.clip(imresize_to(img.alpha, (2 * h, 2 * w)), 0, 1)
    assert np.abs(alpha - expected).max() <= 1e-6


def test_bgra_png_keeps_alpha(up: Upscaler, tmp_path: Path) -> None:
    h, w = 5, 8
    rng = np.random.default_rng(1)
    bgra = np.concatenate([rng.integers(0, 256, (h, w, 3)), (_alpha(h, w) * 255).round()[..., None]], axis=2)
    src = tmp_path / "rgba.png"
    cv2.imwrite(str(src), bgra.astype(np.uint8))
    out = _decode(up.upscale_file(src))
    assert out.shape == (2 * h, 2 * w, 4)
    expected_alpha = np.clip(imresize_to(bgra[..., 3] / 255.0, (2 * h, 2 * w)), 0, 1)
    assert np.abs(out[..., 3] / 255 - expected_alpha).max() <= 1 / 255
    # the colour is the network's output for the BGR part
    colour = up(bgra[..., :3].astype(np.float32) / 255)
    assert np.abs(out[..., :3].astype(np.float64) - np.round(colour * 255)).max() <= 1


def test_gray_without_alpha_stays_single_channel(up: Upscaler, tmp_path: Path) -> None:
    src = tmp_path / "g.png"
    cv2.imwrite(str(src), np.random.default_rng(3).integers(0, 256, (4, 6), dtype=np.uint8))
    assert _decode(up.upscale_file(src)).shape == (8, 12)


# --------------------------------------------------------------------------- the pixel limit


@pytest.mark.parametrize("limit, ok", [(119, False), (120, True), (121, True)])
def test_output_pixel_limit_bound(tmp_path: Path, monkeypatch, limit: int, ok: bool) -> None:
    """IMDN_AS at x2 on a 5x6 input: a 10x12 = 120-pixel output, refused only above the limit."""
    from imdn_plugin.archs import IMDN_AS
    from imdn_plugin.errors import InferenceError

    path = tmp_path / "as.pth"
    torch.save(IMDN_AS(num_feat=16, num_block=1).state_dict(), path)
    monkeypatch.setenv("IMDN_MAX_PIXELS", str(limit))
    up = Upscaler(path, scale=2, device="cpu")
    if ok:
        assert up.output_size(5, 6) == (10, 12)
        assert up(np.full((5, 6, 3), 0.5, np.float32)).shape == (10, 12, 3)
    else:
        with pytest.raises(InferenceError, match="the output would be 12x10 = 120 pixels, above the limit of 119"):
            up.output_size(5, 6)


@pytest.mark.parametrize("limit, ok", [("29", False), ("30", True), ("0", None), ("-3", None), ("x", None)])
def test_input_pixel_limit_bound(tmp_path: Path, monkeypatch, limit: str, ok) -> None:
    """A 5x6 input (30 pixels) is read at a limit of 30, refused at 29; a bad limit is a ConfigError."""
    from imdn_plugin.data import imageio
    from imdn_plugin.errors import ConfigError

    src = tmp_path / "a.png"
    cv2.imwrite(str(src), np.zeros((5, 6, 3), np.uint8))
    monkeypatch.setenv("IMDN_MAX_PIXELS", limit)
    if ok is None:
        with pytest.raises(ConfigError, match=rf"IMDN_MAX_PIXELS='{limit}': must be a positive whole number"):
            imageio.read(src)
    elif ok:
        assert imageio.read(src).bgr.shape == (5, 6, 3)
    else:
        with pytest.raises(imageio.ImageReadError, match="6x5 = 30 pixels, above the limit of 29"):
            imageio.read(src)
