"""``Upscaler``: a checkpoint turned into an image function (the plugin's one public entry point).

::

    from imdn_plugin import Upscaler
    up = Upscaler("IMDN_x4.pth")                 # type, width, depth and scale read off the file
    sr = up(bgr)                                 # float32 BGR H×W×3 in [0, 1] -> (4H)×(4W)×3
    png = up.upscale_file("photo.jpg")           # PNG bytes, grayscale / 16-bit / alpha kept, EXIF orientation applied
    up = Upscaler("IMDN_x4.pth", outscale=3, format="webp", quality=90, alpha="network")

IMDN upscales by its own factor; IMDN_AS (paper §3.3) takes any ``scale >= 1``
(integer or fractional): the image is first brought to the target size by
MATLAB-style bicubic, then restored (ACS for sides not divisible by 4).
``outscale`` gives any final factor: IMDN's output is resized to it (MATLAB
bicubic, antialiased when shrinking); IMDN_AS runs at that factor itself.
Alpha goes through the network as a gray image (``alpha="network"``) or is
resized by bicubic.  Files are written as PNG, JPEG or WebP (``format``,
``quality``).  ``basicsr infer`` and the scripts use it.  Nothing non-finite becomes an image:
NaN/Inf weights are refused at load (:func:`~.checkpoint.load_state_dict`),
NaN/Inf inputs and outputs raise :class:`~.errors.InferenceError`.
"""
from __future__ import annotations

import logging
import math
import os

import numpy as np
import torch

from .checkpoint import load_network
from .data import imageio
from .data.resize import imresize_to
from .errors import ConfigError, InferenceError
from .inference.predictor import InferenceOptions, build_predictor
from .machine import default_device

logger = logging.getLogger(__name__)

__all__ = ["ALPHA_MODES", "DEFAULT_ALPHA", "Upscaler", "check_output_options"]

#: Rows per step of the in-place RGB -> BGR swap of :meth:`Upscaler.upscale_uint8`.
_SWAP_ROWS = 256
#: Divisor of each accepted integer sample type: the array is an image as OpenCV reads files.
_INT_IMAGE_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def as_float_image(img: np.ndarray, source: str = "input array") -> np.ndarray:
    """``H×W×3`` float32 BGR in [0, 1] from an array :class:`Upscaler` takes (see there); one-line
    :class:`~.errors.ConfigError` for anything else.  Clipping of floats is logged once."""
    if not isinstance(img, np.ndarray):
        raise ConfigError(f"{source}: expected a numpy array (H×W×3 BGR), got {type(img).__name__}")
    if img.ndim == 2:
        img = img[:, :, None].repeat(3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ConfigError(f"{source}: expected an H×W×3 BGR (or H×W gray) array, got shape {img.shape}")
    if img.dtype in _INT_IMAGE_SCALE:
        return img.astype(np.float32) / np.float32(_INT_IMAGE_SCALE[img.dtype])
    if not np.issubdtype(img.dtype, np.floating):
        raise ConfigError(
            f"{source}: {img.dtype} samples are not taken (their range is unknown); give float in [0, 1], "
            "or uint8 (0..255) / uint16 (0..65535)"
        )
    f = img.astype(np.float32, copy=False)
    finite = np.isfinite(f)
    outside = int(np.count_nonzero(finite & ((f < 0) | (f > 1))))
    if outside:
        imageio.notice(source, "clip", f"{outside} sample(s) outside [0, 1] clipped (float input is taken as [0, 1])")
    return f

#: How an alpha channel is upscaled: ``network`` (the alpha plane through the same network as a
#: gray image) or ``bicubic`` (MATLAB bicubic).
ALPHA_MODES = ("network", "bicubic")
#: The default of ``alpha`` (measured: docs/precision-and-outputs.md, "Alpha").
DEFAULT_ALPHA = "network"


def check_output_options(outscale: float | None, alpha: str, format: str, quality: int | None) -> None:
    """:class:`ConfigError` (one line naming the flag) for a bad ``outscale``, ``alpha``, ``format``
    or ``quality`` of :class:`Upscaler` / ``basicsr infer``."""
    if alpha not in ALPHA_MODES:
        raise ConfigError(f"--alpha: must be one of {', '.join(ALPHA_MODES)}, got {alpha!r}")
    if format not in imageio.OUTPUT_FORMATS:
        raise ConfigError(f"--format: must be one of {', '.join(imageio.OUTPUT_FORMATS)}, got {format!r}")
    imageio.check_quality(quality)
    if quality is not None and format == "png":
        raise ConfigError(f"--quality {quality}: PNG is lossless; --quality is for --format jpg, webp or auto")
    if outscale is not None and (
        isinstance(outscale, bool) or not isinstance(outscale, (int, float)) or not math.isfinite(outscale) or outscale <= 0
    ):
        raise ConfigError(f"--outscale: must be a finite number > 0, got {outscale!r}")


class Upscaler:
    """A checkpoint turned into ``numpy image -> numpy image`` (float BGR in [0, 1]).

    Args:
        weights: Checkpoint file (BasicSR ``params``/``params_ema`` file or a bare
            state dict such as the authors' releases).
        scale: IMDN_AS: the factor (>= 1, default 1); IMDN: must match its own or be None.
        options: How images go through the network (default:
            ``InferenceOptions(precision="auto")``: fp16 on a CUDA GPU with tensor cores, bf16 on a CPU
            with AMX, else fp32; :func:`~imdn_plugin.machine.resolve_precision`).
        device: Default: :func:`~imdn_plugin.machine.default_device` (``IMDN_DEVICE``, else CUDA when
            available and ``options.backend`` is ``torch``, else CPU).
        param_key: Key inside BasicSR files; None (default): ``params``, else
            ``params_ema``, else a bare state dict.  A key given is used or the
            file is refused (:class:`~.errors.CheckpointError`), never another.
        outscale: Final factor (> 0; default: the network's).  IMDN: its output resized to it
            (MATLAB bicubic); IMDN_AS: the same as ``scale``.
        alpha: ``network`` (default) or ``bicubic``: how an alpha channel is upscaled.
        format: Files written by :meth:`upscale_file` / :meth:`write_file`: ``png`` (default),
            ``jpg``, ``webp`` or ``auto`` (the input's format when JPEG or WebP, else PNG).
        quality: JPEG / WebP quality 1..100 (default 95).

    Input arrays (``H×W×3`` BGR, or ``H×W`` gray, expanded): float (any
    precision) in [0, 1], values outside clipped with a warning; ``uint8``
    (divided by 255) and ``uint16`` (divided by 65535), as OpenCV reads
    files.  Other types (signed integers, bool) are refused with a
    :class:`~.errors.ConfigError`: their range is unknown.
    """

    def __init__(
        self,
        weights: str | os.PathLike[str],
        scale: float | None = None,
        options: InferenceOptions | None = None,
        device: torch.device | str | None = None,
        param_key: str | None = None,
        *,
        outscale: float | None = None,
        alpha: str = DEFAULT_ALPHA,
        format: str = "png",
        quality: int | None = None,
    ) -> None:
        check_output_options(outscale, alpha, format, quality)
        self.alpha_mode, self.format, self.quality = alpha, format, quality
        self._noticed: set[str] = set()
        options = options or InferenceOptions(precision="auto")
        device = torch.device(device if device is not None else default_device(options.backend))
        net, spec = load_network(weights, param_key, exact_key=param_key is not None)
        if spec.type != "IMDN_AS":  # fixed-factor networks (IMDN, IMDN_RTC, IMDN_RTE)
            if scale is not None and scale != spec.upscale:
                raise ConfigError(
                    f"--scale {scale:g}: {weights} is {spec}; it only upscales x{spec.upscale} "
                    "(use a matching checkpoint or an IMDN_AS one for other factors)"
                )
            self.pre_scale = 1.0
        else:
            if outscale is not None and scale is not None and outscale != scale:
                raise ConfigError(
                    f"--outscale {outscale:g} and --scale {scale:g}: for IMDN_AS both are the network's factor; give one"
                )
            scale = outscale if outscale is not None else scale
            self.pre_scale = 1.0 if scale is None else scale
            if not (math.isfinite(self.pre_scale) and self.pre_scale >= 1):
                raise ConfigError(f"--scale: must be a finite number >= 1, got {scale:.6g}")
        self.spec, self.device, self.precision = spec, device, options.precision
        self.out_scale = spec.scale * self.pre_scale if outscale is None else float(outscale)
        #: Whether the network's output is resized afterwards (IMDN with an outscale other than its own).
        self.resizes = spec.type == "IMDN" and outscale is not None and outscale != spec.scale
        self.predict = build_predictor(net.to(device), options)
        logger.info("loaded %s from %s; inference path: %s", spec, weights, getattr(self.predict, "path", "?"))

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Output ``(height, width)`` of an ``h×w`` input; :class:`InferenceError` above the pixel limit
        (:func:`imdn_plugin.data.imageio.max_pixels`), before anything is allocated."""
        fh, fw = h * self.out_scale, w * self.out_scale  # floats first: --scale 1e300 is no 600-digit integer
        if fh * fw > 2.0**62:
            raise InferenceError(
                f"the output would be {fw:.3g}x{fh:.3g} pixels, above the limit of {imageio.max_pixels():,} "
                f"(a smaller --scale, or set {imageio.MAX_PIXELS_ENV})"
            )
        oh, ow = max(1, round(fh)), max(1, round(fw))
        if oh * ow > imageio.max_pixels():
            raise InferenceError(
                f"the output would be {ow}x{oh} = {oh * ow:,} pixels, above the limit of {imageio.max_pixels():,} "
                f"(a smaller --scale, or set {imageio.MAX_PIXELS_ENV})"
            )
        return oh, ow

    def _input(self, bgr: np.ndarray) -> torch.Tensor:
        """The network input: RGB, NCHW, clamped to [0, 1], on the device (IMDN_AS: pre-scaled);
        :class:`InferenceError` if ``bgr`` holds NaN/Inf (which would otherwise be written as black)."""
        bgr = as_float_image(bgr)
        bad_in = int(np.size(bgr) - np.count_nonzero(np.isfinite(bgr)))
        if bad_in:
            raise InferenceError(f"the input holds {bad_in} non-finite value(s) (NaN/Inf)")
        h, w = bgr.shape[:2]
        if self.pre_scale != 1:
            bgr = imresize_to(bgr, self.output_size(h, w))
        x = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1))).unsqueeze(0)
        return x.clamp_(0, 1).to(self.device)

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """BGR ``H×W×3`` (float in [0, 1], uint8 or uint16: see the class) -> float32 BGR of the
        output size, clamped to [0, 1]."""
        x = self._input(bgr)  # checks the array first
        with torch.inference_mode():  # the output is an inference tensor: clamp it in place
            y = self.predict(x)[0].float().clamp_(0, 1)
        out = y.cpu().numpy().transpose(1, 2, 0)[:, :, ::-1]
        if self.resizes:
            size = self.output_size(*bgr.shape[:2])
            out = np.clip(imresize_to(np.ascontiguousarray(out), size), 0.0, 1.0)
        return out

    def _notice(self, key: str, message: str) -> None:
        """Log ``message`` once per :class:`Upscaler` (per run of ``basicsr infer``)."""
        if key not in self._noticed:
            self._noticed.add(key)
            logger.warning("%s", message)

    def upscale_uint8(self, bgr: np.ndarray) -> np.ndarray:
        """Like :meth:`__call__` but returns the 8-bit result (``round(255·y)``, uint8 BGR).

        Tiles are quantised as they are produced, so a tiled image never exists in
        float: the output costs 1 byte per value instead of 4 (and its copies).
        """
        if self.resizes:
            return (self(bgr) * 255.0).round().astype(np.uint8)
        x = self._input(bgr)
        out_ch = self.spec.num_out_ch
        s = self.spec.scale
        # The result is written straight into the H×W×C array that is returned (through an N×C×H×W
        # view of it), and its RGB turned to BGR in place, band by band: no second full-size copy.
        hwc = np.empty((s * x.shape[-2], s * x.shape[-1], out_ch), dtype=np.uint8)
        self.predict(x, out=torch.from_numpy(hwc).permute(2, 0, 1).unsqueeze(0))
        if out_ch == 3:
            for r in range(0, hwc.shape[0], _SWAP_ROWS):
                band = hwc[r : r + _SWAP_ROWS]
                band[:] = band[:, :, ::-1]  # numpy copies the (small) overlapping source first
        return hwc

    def upscale_alpha(self, alpha: np.ndarray) -> np.ndarray:
        """An ``H×W`` alpha plane in [0, 1] at the output size: through the network as a gray
        image (``alpha="network"``: the mean of its three output channels) or by bicubic."""
        if self.alpha_mode == "network":
            return np.ascontiguousarray(self(np.repeat(alpha[:, :, None], 3, axis=2)).mean(axis=2))
        return np.clip(imresize_to(alpha, self.output_size(*alpha.shape[:2])), 0.0, 1.0)

    def upscale(self, img: imageio.Image) -> tuple[np.ndarray, np.ndarray | None]:
        """``(bgr, alpha)`` of a decoded image: the network's output and the upscaled alpha
        (:meth:`upscale_alpha`)."""
        sr = self(img.bgr)
        alpha = None if img.alpha is None else self.upscale_alpha(img.alpha)
        return sr, alpha

    def _upscale_read(self, src: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
        """An image file upscaled: ``(samples, format)``, the uint8/uint16 array to encode as
        :func:`~.data.imageio.output_format` says (grayscale, 16-bit and alpha kept where the
        format holds them; a one-time notice where it does not)."""
        fmt = imageio.output_format(self.format, src)
        img = imageio.read(src, orientation=True)
        try:
            if img.channels == 3 and img.bit_depth == 8:  # the common case: 8-bit all the way (less memory)
                bgr = img.bgr
                del img
                return self.upscale_uint8(bgr), fmt
            bit_depth = 16 if img.bit_depth == 16 else 8
            if bit_depth == 16 and not imageio.FORMAT_KEEPS_16BIT[fmt]:
                self._notice("16bit", f"{src}: 16-bit input written as 8-bit: {fmt} holds 8-bit samples (use --format png to keep 16 bits)")
                bit_depth = 8
            sr, alpha = self.upscale(img)
            if alpha is not None and not imageio.FORMAT_KEEPS_ALPHA[fmt]:
                self._notice("alpha", f"{src}: alpha channel dropped: {fmt} has none (use --format png or webp to keep it)")
                alpha = None
        except InferenceError as exc:
            raise InferenceError(f"{src}: {exc}") from None
        gray = img.channels in (1, 2) or (img.channels == 4 and imageio.is_gray_alpha_png(src))
        return imageio.to_samples(sr, alpha, bit_depth=bit_depth, gray=gray), fmt

    def output_suffix(self, src: str | os.PathLike[str]) -> str:
        """The file name ending of ``src``'s output (``.png``, ``.jpg`` or ``.webp``)."""
        return imageio.FORMAT_SUFFIX[imageio.output_format(self.format, src)]

    def upscale_file(self, src: str | os.PathLike[str]) -> bytes:
        """Read an image file, upscale it and return the encoded output (``format``, ``quality``)
        in the same form (grayscale stays grayscale, 16-bit stays 16-bit in PNG, alpha is kept
        in PNG and WebP).  The EXIF / TIFF orientation tag of JPEG and TIFF files is applied
        (a PNG has no such tag)."""
        samples, fmt = self._upscale_read(src)
        return imageio.encode_image(samples, fmt, self.quality)

    def write_file(
        self, src: str | os.PathLike[str], dst: str | os.PathLike[str], overwrite: bool = False
    ) -> None:
        """:meth:`upscale_file` written atomically to ``dst`` (never replacing an existing file
        unless ``overwrite``; :class:`FileExistsError`).  A PNG is encoded straight into the
        file (:func:`~.data.imageio.write_png_atomic`): no PNG in memory."""
        samples, fmt = self._upscale_read(src)
        if fmt == "png" and samples.shape[2] != 2:  # OpenCV writes no gray+alpha: those via encode_image
            imageio.write_png_atomic(dst, samples, overwrite=overwrite)
        else:
            imageio.write_atomic(dst, imageio.encode_image(samples, fmt, self.quality), overwrite=overwrite)
