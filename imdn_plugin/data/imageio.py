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

Every read refuses, with :class:`ImageReadError`:

* an image above :func:`max_pixels` pixels (default :data:`DEFAULT_MAX_PIXELS`,
  ``IMDN_MAX_PIXELS`` in the environment changes it), judged from the file
  header before anything is allocated (:mod:`.headers`), or after decoding for
  formats whose header is not parsed;
* anything OpenCV's decoder raises (``cv2.error``: its own limits, corrupt data);
* PNG / JPEG files cut short (no end marker; data *after* the end marker is
  accepted, see :func:`.headers.truncation_problem`);
* float images (TIFF, EXR, PFM, HDR) holding NaN or Inf.

Lossy conversions are logged as warnings, once per file (:func:`notice`):
float samples outside [0, 1] clipped, the first frame of a multi-frame file
used, an alpha channel dropped for training.

``read(..., orientation=True)`` / ``decode(..., orientation=True)`` (used by
``basicsr infer`` and :class:`~imdn_plugin.upscaler.Upscaler`) turn the image
as its EXIF/TIFF orientation tag says (JPEG, TIFF), as viewers show it.
"""
from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import cv2
import numpy as np

from ..atomic import atomic_write
from ..errors import ConfigError, ImageReadError
from ..machine import MAX_PIXELS_ENV, env
from . import headers

PathLike = Union[str, "os.PathLike[str]"]
logger = logging.getLogger(__name__)

#: File name endings treated as images when a folder is scanned (what OpenCV decodes).
IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm",
    ".pfm", ".sr", ".ras", ".jp2", ".exr", ".hdr", ".pic",
)  # fmt: skip
#: PNG compression level of LMDB values (BasicSR's).
DEFAULT_COMPRESS_LEVEL = 1

#: Default pixel limit: 2**28 = 268,435,456 pixels (16384 × 16384).  Above the
#: largest camera sensors (~150 Mpx), so only stitched panoramas, scans and
#: crafted files reach it; such an image already needs 3 GiB as float32 BGR
#: before the network multiplies it (OpenCV's own limit, 2**30, would allow 12 GiB).
DEFAULT_MAX_PIXELS = 2**28

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"


def truncation_problem(raw: bytes | np.ndarray) -> str | None:
    """Why encoded bytes look cut short, or None (see :func:`.headers.truncation_problem`;
    data after the end marker is accepted)."""
    return headers.truncation_problem(raw)


#: (source, kind) of the notices given already: one warning per file and kind of loss.
_NOTICED: set[tuple[str, str]] = set()


def notice(source: str, kind: str, message: str) -> None:
    """Log a lossy conversion (clipping, a dropped alpha channel, frames left out) as a warning,
    once per file and kind."""
    key = (source, kind)
    if key in _NOTICED:
        return
    if len(_NOTICED) > 100_000:  # a long training run over a huge set: forget, do not grow
        _NOTICED.clear()
    _NOTICED.add(key)
    logger.warning("%s: %s", source, message)


def _frames_notice(buf: np.ndarray, source: str) -> None:
    frames = headers.frame_count(buf)
    if frames > 1:
        notice(source, "frames", f"holds {frames} frames/pages; only the first is used")


@dataclass
class Image:
    """A decoded image: ``bgr`` float32 HxWx3 in [0, 1], ``alpha`` HxW or None, source bit depth, channels."""

    bgr: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    channels: int


def max_pixels() -> int:
    """The pixel limit of every reader: ``IMDN_MAX_PIXELS`` (a positive integer) or :data:`DEFAULT_MAX_PIXELS`."""
    raw = env(MAX_PIXELS_ENV)
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={raw!r}: must be a positive whole number of pixels")
    return value


def _check_pixels(width: int, height: int) -> None:
    limit = max_pixels()
    if width * height > limit:
        raise ImageReadError(
            f"{width}x{height} = {width * height:,} pixels, above the limit of {limit:,}; "
            f"set {MAX_PIXELS_ENV} to allow more"
        )


def _cv2_reason(exc: Exception) -> str:
    """The useful part of a multi-line ``cv2.error`` message."""
    text = " ".join(str(exc).split())
    m = re.search(r"error: \(-?\d+:[^)]*\) (.*)", text)
    return (m.group(1) if m else text)[:200]


def imdecode(buf: np.ndarray) -> np.ndarray:
    """``cv2.imdecode(buf, IMREAD_UNCHANGED)`` that refuses empty, cut-short, oversized or undecodable data.

    The size declared by the header is checked against :func:`max_pixels`
    before OpenCV allocates anything.  Raises :class:`ImageReadError` whose
    message is the bare reason; callers add the file name.
    """
    if buf.size == 0:
        raise ImageReadError("empty file")
    problem = truncation_problem(buf)
    if problem:
        raise ImageReadError(problem)
    size = headers.image_size(buf)
    if size is not None:
        _check_pixels(*size)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # OpenCV's own limits (OPENCV_IO_MAX_IMAGE_PIXELS) or a decoder failure
        raise ImageReadError(f"OpenCV refused it: {_cv2_reason(exc)}") from None
    if img is None:
        raise ImageReadError("not a decodable image")
    _check_pixels(img.shape[1], img.shape[0])  # formats whose header is not parsed
    return img


def decode(data: bytes | np.ndarray, source: str, orientation: bool = False) -> Image:
    """Decode encoded image bytes (as stored in files or LMDBs); with ``orientation``,
    turn it as its EXIF/TIFF orientation tag says (see :func:`orient`)."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        img = imdecode(buf)
    except ImageReadError as exc:
        raise ImageReadError(f"{source}: cannot decode image ({exc})") from None
    _frames_notice(buf, source)
    if orientation:
        img = orient(img, buf)
    return from_array(img, source)


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored ``H×W[×C]`` array into its displayed form for an EXIF orientation 1..8."""
    t = img.swapaxes(0, 1) if orientation >= 5 else img
    flips = {2: (slice(None), slice(None, None, -1)), 3: (slice(None, None, -1), slice(None, None, -1)),
             4: (slice(None, None, -1),), 6: (slice(None), slice(None, None, -1)),
             7: (slice(None, None, -1), slice(None, None, -1)), 8: (slice(None, None, -1),)}  # fmt: skip
    return np.ascontiguousarray(t[flips[orientation]] if orientation in flips else t)


@functools.cache
def decoder_applies_orientation(fmt: str) -> bool:
    """Whether ``cv2.imdecode(..., IMREAD_UNCHANGED)`` already turns ``fmt`` images by their tag.

    OpenCV documents that ``IMREAD_UNCHANGED`` ignores EXIF orientation (JPEG),
    but its TIFF decoder (OpenCV 5.0) applies the TIFF orientation tag itself;
    a tiny probe file decides, so an image is never turned twice.
    """
    data, stored = headers.orientation_probe(fmt)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # pragma: no cover
        return False
    return img is not None and img.shape[:2] == stored[::-1]


def orient(img: np.ndarray, buf: bytes | np.ndarray) -> np.ndarray:
    """Apply the orientation tag of the encoded ``buf`` (JPEG, TIFF) to its decoded ``img``,
    unless the decoder did already."""
    fmt = headers.image_format(buf)
    if fmt not in ("jpeg", "tiff"):
        return img
    value = headers.exif_orientation(buf)
    if value == 1 or decoder_applies_orientation(fmt):
        return img
    return apply_orientation(img, value)


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
    if depth == 32:
        finite = np.isfinite(img)
        if not finite.all():
            y, x = np.argwhere(~finite)[0][:2]
            raise ImageReadError(
                f"{source}: {int((~finite).sum())} non-finite sample(s) (NaN/Inf) in a float image, "
                f"first at row {y}, column {x}; refusing to guess their colour"
            )
    f = img.astype(np.float32) / scale
    if depth == 32:
        outside = int(np.count_nonzero((f < 0.0) | (f > 1.0)))
        if outside:
            notice(source, "clip", f"{outside} float sample(s) outside [0, 1] (from {float(f.min()):.4g} "
                                   f"to {float(f.max()):.4g}) clipped to [0, 1]")
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


def read(path: PathLike, orientation: bool = False) -> Image:
    """Read an image file (see :func:`decode`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return decode(data, str(path), orientation=orientation)


def encode_png(bgr: np.ndarray, alpha: np.ndarray | None = None, bit_depth: int = 8, gray: bool = False) -> bytes:
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


def write_png_atomic(path: PathLike, img: np.ndarray, overwrite: bool = True, compress_level: int | None = None) -> None:
    """Encode ``img`` (uint8/uint16) as PNG straight into ``path``'s temporary file, atomically.

    ``cv2.imwrite`` streams the compressed rows to the file, so no PNG exists in
    memory (``png_bytes`` holds it up to three times: 0.5 GB for a 9600×16000
    photo).  Same pixels as :func:`png_bytes`; a path OpenCV cannot open (it
    takes narrow strings on Windows) or must not be given (a name that is not
    valid UTF-8: see :func:`_opencv_safe_name`) falls back to it.
    """
    params = [] if compress_level is None else [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)]

    def write(f: BinaryIO) -> None:
        # f is the empty temporary, named *.tmp.png so that OpenCV picks its PNG encoder; OpenCV
        # reopens the same file (same inode), so the caller's fsync through f covers what it wrote.
        name = _opencv_safe_name(f)
        if name is None or not cv2.imwrite(name, img, params):
            f.seek(0)
            f.truncate()  # whatever a failed imwrite left
            f.write(png_bytes(img, compress_level))

    atomic_write(path, write, overwrite=overwrite, suffix=".tmp.png")


def _opencv_safe_name(f: BinaryIO) -> str | None:
    """The temporary's name if OpenCV can be given it, else None (then the PNG is encoded in memory).

    ``cv2.imwrite`` crashes the process (SIGSEGV) on a ``str`` holding surrogate-escaped
    bytes, which is how Python spells a file or folder name that is not valid UTF-8.
    """
    try:
        f.name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return f.name


def write_image_atomic(path: PathLike, img: np.ndarray, params: list | None = None, overwrite: bool = True) -> None:
    """Write an OpenCV image array (format by the name's suffix) atomically: PNGs by
    :func:`write_png_atomic`, other formats encoded in memory first.  What BasicSR's
    ``imwrite`` does, without a cut-off file under the final name when the write is stopped."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png" and not params:
        write_png_atomic(path, img, overwrite=overwrite)
        return
    try:
        ok, buf = cv2.imencode(suffix, img, list(params or []))
    except cv2.error as exc:
        raise ValueError(f"{path}: cannot encode image ({_cv2_reason(exc)})") from None
    if not ok:
        raise ValueError(f"{path}: cannot encode image of shape {img.shape} as {suffix}")
    atomic_write(path, buf.tobytes(), overwrite=overwrite)


#: Temporaries of :func:`write_png_atomic` (``.<name>.<random>.tmp.png``): one a killed run left
#: behind is not an input.
_TEMPORARY_PNG = re.compile(r"^\..+\.tmp\.png$", re.IGNORECASE)


def is_plugin_temporary(path: Path) -> bool:
    """Whether ``path`` is named like a temporary of :func:`write_png_atomic` (one a killed run left)."""
    return bool(_TEMPORARY_PNG.match(path.name))


def is_image_file(path: Path) -> bool:
    """A regular file whose name ends in one of :data:`IMAGE_EXTENSIONS` (any case), other than
    this plugin's own temporary PNGs."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not _TEMPORARY_PNG.match(path.name)


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

    The EXIF orientation of JPEGs is not applied (as with ``cv2.IMREAD_UNCHANGED``;
    OpenCV's TIFF decoder applies the TIFF tag itself).  Images above
    :func:`max_pixels` are refused before decoding.

    Raises:
        ImageReadError: ``cannot read image: <path> (<why>)`` for a missing,
            truncated, undecodable or unsupported file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"cannot read image: {path} (no such file)")
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
        img = imdecode(buf)
    except ImageReadError as exc:
        raise ImageReadError(f"cannot read image: {path} ({exc})") from None
    except OSError as exc:
        raise ImageReadError(f"cannot read image: {path} ({exc.strerror or exc})") from None
    _frames_notice(buf, str(path))
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
        notice(str(path), "alpha", "alpha channel dropped (training data is opaque)")
        img = img[:, :, : channels - 1]
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)



def png_bytes(img: np.ndarray, compress_level: int | None = DEFAULT_COMPRESS_LEVEL) -> bytes:
    """PNG bytes of a uint8/uint16 array as BasicSR stores them (``cv2.imencode`` with the level;
    ``None``: OpenCV's default)."""
    params = [] if compress_level is None else [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)]
    ok, buf = cv2.imencode(".png", img, params)
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {img.shape}")
    return buf.tobytes()


# --------------------------------------------------------------------------- output formats

#: Output formats of ``basicsr infer --format`` / ``Upscaler(format=...)`` (``auto``: the input's, see
#: :func:`output_format`).
OUTPUT_FORMATS = ("png", "jpg", "webp", "auto")
#: File name ending of each written format.
FORMAT_SUFFIX = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
#: Quality of the lossy formats when none is given (OpenCV's JPEG default; WebP the same scale).
DEFAULT_QUALITY = {"jpg": 95, "webp": 95}
#: What each written format keeps: 16-bit samples, an alpha channel.
FORMAT_KEEPS_16BIT = {"png": True, "jpg": False, "webp": False}
FORMAT_KEEPS_ALPHA = {"png": True, "jpg": False, "webp": True}


def output_format(requested: str, src: PathLike) -> str:
    """The format written for input ``src``: ``requested``, or for ``auto`` the input's own
    when it is JPEG or WebP (by its name's ending), else PNG."""
    if requested != "auto":
        return requested
    suffix = Path(src).suffix.lower()
    if suffix in (".jpg", ".jpeg", ".jpe"):
        return "jpg"
    return "webp" if suffix == ".webp" else "png"


def check_quality(quality: int | None) -> None:
    """:class:`ConfigError` unless ``quality`` is None or an integer 1..100."""
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100):
        raise ConfigError(f"--quality: must be a whole number from 1 to 100, got {quality!r}")


def to_samples(bgr: np.ndarray, alpha: np.ndarray | None = None, bit_depth: int = 8, gray: bool = False) -> np.ndarray:
    """Float [0, 1] BGR (+alpha) as the uint8 / uint16 array an encoder takes (rounding to
    nearest): ``H×W×{1,2,3,4}`` (gray, gray+alpha, BGR, BGRA)."""
    maxval, dtype = (65535.0, np.uint16) if bit_depth == 16 else (255.0, np.uint8)
    img = bgr.mean(axis=2, keepdims=True) if gray else bgr
    if alpha is not None:
        img = np.concatenate([img, alpha[:, :, None]], axis=2)
    return (np.clip(img, 0.0, 1.0) * maxval).round().astype(dtype)


def _encoder_input(img: np.ndarray, fmt: str) -> np.ndarray:
    """``img`` in a channel layout ``fmt``'s OpenCV encoder takes (WebP: 3 or 4 channels; JPEG:
    1 or 3; gray+alpha WebP as BGRA)."""
    channels = 1 if img.ndim == 2 else img.shape[2]
    if fmt == "webp" and channels in (1, 2):
        gray = img if img.ndim == 2 else img[:, :, 0]
        planes = [gray, gray, gray] + ([img[:, :, 1]] if channels == 2 else [])
        return np.ascontiguousarray(np.stack(planes, axis=2))
    return img


def encode_image(img: np.ndarray, fmt: str, quality: int | None = None) -> bytes:
    """Encode a uint8/uint16 array (from :func:`to_samples`) as ``png``, ``jpg`` or ``webp``.

    ``quality`` (1..100; default :data:`DEFAULT_QUALITY`) sets JPEG and WebP
    quality; PNG is lossless and ignores it.  The caller first drops what the
    format cannot hold (:data:`FORMAT_KEEPS_16BIT`, :data:`FORMAT_KEEPS_ALPHA`):
    an array that does not fit is a :class:`ValueError`.
    """
    if fmt not in FORMAT_SUFFIX:
        raise ValueError(f"unknown output format {fmt!r} (one of {', '.join(FORMAT_SUFFIX)})")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if img.dtype != np.uint8 and not FORMAT_KEEPS_16BIT[fmt]:
        raise ValueError(f"{fmt} holds 8-bit samples only, got {img.dtype}")
    if channels in (2, 4) and not FORMAT_KEEPS_ALPHA[fmt]:
        raise ValueError(f"{fmt} has no alpha channel, got {channels} channels")
    if fmt == "png":
        return png_gray_alpha_bytes(img) if channels == 2 else png_bytes(img, compress_level=None)
    check_quality(quality)
    q = DEFAULT_QUALITY[fmt] if quality is None else quality
    flag = cv2.IMWRITE_JPEG_QUALITY if fmt == "jpg" else cv2.IMWRITE_WEBP_QUALITY
    ok, buf = cv2.imencode(FORMAT_SUFFIX[fmt], _encoder_input(img, fmt), [flag, int(q)])
    if not ok:
        raise ValueError(f"{fmt} encoding failed for an image of shape {img.shape}")
    return buf.tobytes()


def is_gray_alpha_png(path: PathLike) -> bool:
    """Whether ``path`` is a PNG of colour type 4 (gray + alpha), which OpenCV decodes as BGRA."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return False
    return len(head) == 26 and head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR" and head[25] == 4


def png_gray_alpha_bytes(img: np.ndarray) -> bytes:
    """A gray + alpha PNG (colour type 4, 8 or 16 bit) of an ``H×W×2`` uint8/uint16 array:
    OpenCV writes 1, 3 or 4 channels only.  Rows unfiltered, zlib level 6."""
    import struct
    import zlib

    if img.ndim != 3 or img.shape[2] != 2 or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"png_gray_alpha_bytes: expected H×W×2 uint8/uint16, got {img.shape} {img.dtype}")
    h, w = img.shape[:2]
    rows = np.ascontiguousarray(img.astype(">u2") if img.dtype == np.uint16 else img).reshape(h, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter byte 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    depth = 16 if img.dtype == np.uint16 else 8
    header = struct.pack(">IIBBBBB", w, h, depth, 4, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
