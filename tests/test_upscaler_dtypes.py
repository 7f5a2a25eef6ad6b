"""``Upscaler`` input types (issue 20, bug 5): uint8 / uint16 arrays are images (÷255 / ÷65535,
as OpenCV reads files), signed integers are refused in one line, floats outside [0, 1] noticed."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from imdn_plugin import Upscaler
from imdn_plugin.archs import IMDN
from imdn_plugin.data import imageio
from imdn_plugin.errors import ConfigError


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Upscaler:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "x2.pth"
    torch.save({"params": IMDN(num_feat=16, num_block=1, upscale=2).state_dict()}, path)
    return Upscaler(path, device="cpu")


def _u8() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (10, 13, 3), dtype=np.uint8)


def test_uint8_and_uint16_are_images(up: Upscaler) -> None:
    img = _u8()
    want = up(img.astype(np.float32) / 255.0)
    assert 0.05 < float((want < 1.0).mean())  # not a saturated (white) result
    np.testing.assert_array_equal(up(img), want)
    np.testing.assert_allclose(up(img.astype(np.uint16) * 257), want, atol=1e-6)  # 257 = 65535 / 255
    np.testing.assert_array_equal(up.upscale_uint8(img), np.round(want * 255).astype(np.uint8))
    gray = img[:, :, 1]
    np.testing.assert_array_equal(up(gray), up(np.repeat(gray[:, :, None], 3, axis=2)))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.int8, np.bool_, np.uint32])
def test_other_integer_types_are_refused(up: Upscaler, dtype: type) -> None:
    with pytest.raises(ConfigError) as err:
        up(_u8().astype(dtype))
    assert str(err.value).startswith(f"input array: {np.dtype(dtype)} samples are not taken (their range is unknown)")


@pytest.mark.parametrize("shape", [(10, 13, 4), (10, 13, 1, 1), (10,)])
def test_wrong_shapes_are_refused(up: Upscaler, shape: tuple) -> None:
    with pytest.raises(ConfigError, match=r"expected an H×W×3 BGR \(or H×W gray\) array"):
        up(np.zeros(shape, np.float32))


def test_float_outside_0_1_is_clipped_with_a_notice(up: Upscaler, caplog: pytest.LogCaptureFixture) -> None:
    imageio._NOTICED.clear()
    img = _u8().astype(np.float32) / 255
    bright = img.copy()
    bright[0, 0] = 4.0
    clipped = np.clip(bright, 0, 1)
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(up(bright), up(clipped))
    assert "input array: 3 sample(s) outside [0, 1] clipped" in caplog.text
    np.testing.assert_array_equal(up(img.astype(np.float64)), up(img))
