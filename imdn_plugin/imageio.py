"""Reading and writing images for every path of the plugin (OpenCV, no BasicSR).

Whatever OpenCV decodes comes back as float32 BGR in ``[0, 1]`` with an
optional alpha channel kept apart: grayscale is expanded to three channels,
16-bit images keep their precision (divided by 65535), palette images arrive
expanded by OpenCV.  Any failure names the file.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from .errors import ImageReadError

PathLike = Union[str, "os.PathLike[str]"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"


def truncation_problem(raw: bytes) -> Optional[str]:
    """Why encoded bytes look cut short, or None.

    OpenCV decodes a truncated JPEG (and some truncated PNGs) partially, with
    only a warning on stderr; the missing end marker is caught here instead.
    """
    if raw.startswith(PNG_SIGNATURE) and PNG_IEND not in raw[-64:]:
        return "truncated PNG: no IEND chunk"
    if raw.startswith(b"\xff\xd8") and b"\xff\xd9" not in raw[-4096:]:
        return "truncated JPEG: no end-of-image marker"
    return None


@dataclass
class Image:
    """A decoded image: ``bgr`` float32 HxWx3 in [0, 1], ``alpha`` HxW or None, source bit depth, channels."""

    bgr: np.ndarray
    alpha: Optional[np.ndarray]
    bit_depth: int
    channels: int


def imdecode(buf: np.ndarray) -> np.ndarray:
    """``cv2.imdecode(buf, IMREAD_UNCHANGED)`` that refuses empty, cut-short or undecodable data.

    Raises :class:`ImageReadError` whose message is the bare reason; callers add the file name.
    """
    if buf.size == 0:
        raise ImageReadError("empty file")
    problem = truncation_problem(bytes(buf[:8]) + bytes(buf[-4096:]))
    if problem:
        raise ImageReadError(problem)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError("not a decodable image")
    return img


def decode(data: Union[bytes, np.ndarray], source: str) -> Image:
    """Decode encoded image bytes (as stored in files or LMDBs)."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        img = imdecode(buf)
    except ImageReadError as exc:
        raise ImageReadError(f"{source}: cannot decode image ({exc})") from None
    return from_array(img, source)


def from_array(img: np.ndarray, source: str = "image") -> Image:
    """Normalise an OpenCV array (any depth, 1/2/3/4 channels) to :class:`Image`."""
    if img.dtype == np.uint8:
        depth, scale = 8, 255.0
    elif img.dtype == np.uint16:
        depth, scale = 16, 65535.0
    elif img.dtype in (np.float32, np.float64):
        depth, scale = 32, 1.0
    else:
        raise ImageReadError(f"{source}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    f = img.astype(np.float32) / scale
    if depth == 32:
        f = np.clip(f, 0.0, 1.0)
    alpha = None
    if channels == 1:
        bgr = np.repeat(f, 3, axis=2)
    elif channels == 2:  # gray + alpha
        bgr, alpha = np.repeat(f[:, :, :1], 3, axis=2), f[:, :, 1]
    elif channels == 3:
        bgr = f
    elif channels == 4:
        bgr, alpha = f[:, :, :3], f[:, :, 3]
    else:
        raise ImageReadError(f"{source}: unsupported channel count {channels}")
    if bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise ImageReadError(f"{source}: image has zero size {bgr.shape[:2]}")
    return Image(np.ascontiguousarray(bgr), None if alpha is None else np.ascontiguousarray(alpha), depth, channels)


def read(path: PathLike) -> Image:
    """Read an image file (see :func:`decode`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return decode(data, str(path))


def encode_png(bgr: np.ndarray, alpha: Optional[np.ndarray] = None, bit_depth: int = 8, gray: bool = False) -> bytes:
    """Encode float [0, 1] BGR (+alpha) as PNG, 8 or 16 bit, rounding to nearest."""
    maxval, dtype = (65535.0, np.uint16) if bit_depth == 16 else (255.0, np.uint8)
    img = bgr.mean(axis=2, keepdims=True) if gray else bgr
    if alpha is not None:
        img = np.concatenate([img, alpha[:, :, None]], axis=2)
    arr = (np.clip(img, 0.0, 1.0) * maxval).round().astype(dtype)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover - OpenCV failure
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def write_atomic(path: PathLike, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
