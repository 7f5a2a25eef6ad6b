"""Reading and writing images for every path of the plugin (OpenCV, no BasicSR).

Two forms, both from one checked decoder (:func:`imdecode`):

* :func:`read` / :func:`decode` (inference, testing, validation): float32 BGR
  in ``[0, 1]`` with an optional alpha channel kept apart; grayscale expanded to
  three channels, 16-bit keeps its precision (divided by 65535), palette images
  arrive expanded by OpenCV.
* :func:`read_image` (training-data preparation): ``H×W×3`` uint8 BGR, as
  BasicSR's ``imfrombytes`` would give at training time.

PNGs are written by :func:`encode_png` (float, 8/16 bit, with alpha) and
:func:`png_bytes` (uint8 as BasicSR stores them in LMDBs).  Any failure names
the file.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from ..atomic import atomic_write
from ..errors import ImageReadError

PathLike = Union[str, "os.PathLike[str]"]
logger = logging.getLogger(__name__)

#: File name endings treated as images when a folder is scanned (what OpenCV decodes).
IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm",
    ".pfm", ".sr", ".ras", ".jp2", ".exr", ".hdr", ".pic",
)  # fmt: skip
#: PNG compression level of LMDB values (BasicSR's).
DEFAULT_COMPRESS_LEVEL = 1

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
    return png_bytes(arr, compress_level=None)


def write_atomic(path: PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write bytes to ``path`` atomically (see :func:`imdn_plugin.atomic.atomic_write`)."""
    atomic_write(path, data, overwrite=overwrite)


def is_image_file(path: Path) -> bool:
    """A regular file whose name ends in one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as an ``H×W×3`` uint8 BGR array (what training uses).

    Conversions, all deterministic:

    * grayscale (``H×W``) -> the gray value replicated into 3 channels, which is
      what BasicSR's ``imfrombytes(flag='color')`` would give at training time;
    * 16-bit -> 8-bit by ``round(v / 257)`` (maps 0..65535 exactly onto 0..255;
      257 = 65535 / 255), with a debug log;
    * BGRA / gray+alpha -> alpha dropped (logged at INFO): SR training data is
      opaque RGB, and the colour of transparent pixels is kept as stored;
    * palette images come as OpenCV expands them (BGR, or BGRA with a
      transparency chunk, whose alpha is then dropped).

    EXIF orientation is not applied (as with ``cv2.IMREAD_UNCHANGED``).

    Raises:
        ImageReadError: ``cannot read image: <path> (<why>)`` for a missing,
            truncated, undecodable or unsupported file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"cannot read image: {path} (no such file)")
    try:
        img = imdecode(np.fromfile(str(path), dtype=np.uint8))
    except ImageReadError as exc:
        raise ImageReadError(f"cannot read image: {path} ({exc})") from None
    return _to_bgr_uint8(img, path)


def _to_bgr_uint8(img: np.ndarray, path: PathLike) -> np.ndarray:
    """Normalise what ``cv2.imdecode(..., IMREAD_UNCHANGED)`` returns (see :func:`read_image`)."""
    if img.dtype == np.uint16:
        logger.debug("%s: 16-bit image converted to 8-bit (round(v / 257))", path)
        img = np.round(img.astype(np.float64) / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(f"cannot read image: {path} (unsupported sample type {img.dtype}; expected 8 or 16 bit)")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"cannot read image: {path} (unsupported shape {img.shape})")
    channels = img.shape[2]
    if channels in (2, 4):
        logger.info("%s: alpha channel dropped", path)
        img = img[:, :, : channels - 1]
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)



def png_bytes(img: np.ndarray, compress_level: Optional[int] = DEFAULT_COMPRESS_LEVEL) -> bytes:
    """PNG bytes of a uint8/uint16 array as BasicSR stores them (``cv2.imencode`` with the level;
    ``None``: OpenCV's default)."""
    params = [] if compress_level is None else [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)]
    ok, buf = cv2.imencode(".png", img, params)
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {img.shape}")
    return buf.tobytes()
