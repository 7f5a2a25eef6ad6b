"""MATLAB-compatible bicubic resizing to an exact output size (numpy only), and mod-cropping.

BasicSR's ``matlab_functions.imresize`` takes a scale factor and returns
``ceil(scale·size)`` pixels; the any-scale pipeline of IMDN_AS (paper §3.3)
needs the LR image upscaled to *exactly* the HR size, also for fractional
factors such as ×2.5.  This follows MATLAB's ``imresize`` definition: cubic
kernel with ``a = -0.5``, output pixel ``u`` (1-based) sampled at
``x = u / s + (1 - 1/s) / 2``, kernel widened by ``1/s`` when shrinking
(antialiasing), symmetric border handling.
"""
from __future__ import annotations

import math

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))


def _weights(in_len: int, out_len: int, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
    scale = out_len / in_len
    shrink = antialias and scale < 1
    width = 4.0 / scale if shrink else 4.0
    u = np.arange(1, out_len + 1, dtype=np.float64)
    x = u / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(x - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based source positions
    dist = x[:, None] - idx
    w = scale * _cubic(dist * scale) if shrink else _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # Symmetric padding: positions 0, -1, ... mirror to 1, 2, ...; past the end likewise.
    period = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    src = period[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    return w, src


def imresize_to(img: np.ndarray, size: tuple[int, int], antialias: bool = True) -> np.ndarray:
    """Resize an HxW or HxWxC float image to ``size = (out_h, out_w)`` (MATLAB bicubic).

    Returns C-contiguous float32; values are not clipped (bicubic overshoots slightly).
    """
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"imresize_to: output size must be positive, got {size}")
    squeeze = img.ndim == 2
    x = img[:, :, None] if squeeze else img
    x = x.astype(np.float64, copy=False)
    if out_h != x.shape[0]:
        w, src = _weights(x.shape[0], out_h, antialias)
        x = np.einsum("ot,otwc->owc", w, x[src])
    if out_w != x.shape[1]:
        w, src = _weights(x.shape[1], out_w, antialias)
        x = np.einsum("ot,hotc->hoc", w, x[:, src])
    # C order: the einsum leaves other strides, and OpenCV's in-place ops (BasicSR's augment
    # flips with cv2.flip(img, 1, img)) refuse such arrays.
    x = np.ascontiguousarray(x[:, :, 0] if squeeze else x, dtype=np.float32)
    return x


def mod_crop(img: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the bottom/right of ``img`` so that height and width are multiples of ``multiple``."""
    h, w = img.shape[:2]
    return img[: h - h % multiple, : w - w % multiple, ...]


def bicubic_downscale(img: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-compatible bicubic downscaling of a uint8 image by an integer ``scale``.

    The image is first mod-cropped to a multiple of ``scale``, then resized by
    :func:`imresize_to` to exactly ``(H // scale, W // scale)`` (antialiasing on,
    as MATLAB's ``imresize(..., 'bicubic')`` and BasicSR's
    ``matlab_functions.imresize(img, 1 / scale)``, whose values it matches to
    ~1e-4 grey levels) on the 0..255 values, and the result is rounded
    half-to-even and clipped to uint8 (MATLAB rounds its uint8 output too).
    """
    if img.dtype != np.uint8:
        raise ValueError(f"bicubic_downscale expects uint8, got {img.dtype}")
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    img = mod_crop(img, scale)
    h, w = img.shape[:2]
    out = imresize_to(img.astype(np.float32), (h // scale, w // scale))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)

