"""``imresize_to`` against BasicSR's MATLAB-style ``imresize`` (an independent implementation).

BasicSR's function takes a scale factor and returns ``ceil(scale * size)`` pixels; the
sizes below are chosen so that both name the same output size and kernel scale.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from basicsr.utils.matlab_functions import imresize

from imdn_plugin.data.resize import imresize_to

ATOL = 2e-5  # BasicSR computes in float32


def noise(h: int, w: int, c: int | None = 3, seed: int = 0) -> np.ndarray:
    """High-frequency content: antialiasing (or its absence) changes the result a lot."""
    shape = (h, w) if c is None else (h, w, c)
    return np.random.default_rng(seed).random(shape)


@pytest.mark.parametrize("scale, size", [(2, (60, 46)), (3, (60, 45)), (4, (60, 44)), (2.5, (60, 45))])
def test_shrinking_matches_basicsr_with_antialiasing(scale: float, size: tuple[int, int]) -> None:
    img = noise(*size)
    out_size = (round(size[0] / scale), round(size[1] / scale))
    expected = imresize(img, 1 / scale)
    assert expected.shape[:2] == out_size
    got = imresize_to(img, out_size)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    # the test tells antialiasing from plain bicubic sampling
    aliased = imresize_to(img, out_size, antialias=False)
    assert np.abs(aliased - expected).max() > 0.05
    if scale != 4:  # BasicSR's non-antialiased 1/4 fails on an empty border slice
        np.testing.assert_allclose(aliased, imresize(img, 1 / scale, antialiasing=False), atol=ATOL, rtol=0)


@pytest.mark.parametrize("scale, size", [(2, (9, 7)), (3, (10, 7)), (4, (5, 6)), (2.5, (12, 8))])
def test_enlarging_matches_basicsr(scale: float, size: tuple[int, int]) -> None:
    img = noise(*size, seed=1)
    out_size = (round(size[0] * scale), round(size[1] * scale))
    expected = imresize(img, scale)
    assert expected.shape[:2] == out_size
    np.testing.assert_allclose(imresize_to(img, out_size), expected, atol=ATOL, rtol=0)


def test_grayscale() -> None:
    img = noise(24, 18, None, seed=2)
    got = imresize_to(img, (8, 6))
    assert got.shape == (8, 6)
    np.testing.assert_allclose(got, imresize(img, 1 / 3), atol=ATOL, rtol=0)


def test_integer_downscale_of_a_constant_is_exact() -> None:
    img = np.full((12, 12, 3), 0.25)
    np.testing.assert_allclose(imresize_to(img, (4, 4)), 0.25, atol=1e-6)


def test_output_is_c_contiguous_for_opencv_in_place_ops() -> None:
    # BasicSR's augment flips with cv2.flip(img, 1, img), which refuses other layouts.
    for size in ((10, 8), (40, 32)):
        out = imresize_to(noise(20, 16), size)
        assert out.flags["C_CONTIGUOUS"]
        before = out.copy()
        cv2.flip(out, 1, out)
        np.testing.assert_array_equal(out, before[:, ::-1])
