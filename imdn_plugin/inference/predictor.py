"""One call from a network to a ``tensor -> tensor`` predictor.

:func:`build_predictor` composes the fast forward of :mod:`.fast` with the way
an image is fed through the network (:mod:`.cropping`): whole image, the
paper's adaptive cropping strategy (ACS, §3.3) for IMDN_AS, or memory-bounded
tiles.  ``IMDNModel``, ``basicsr infer`` and the benchmark all use it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..archs import IMDNBase
from ..errors import ConfigError
from ..machine import available_bytes
from ..options.inference import MODES, TILE_STATS, InferenceOptions
from . import cropping, runtimes, tiling
from .fast import make_fast_forward
from .global_tiling import global_tiled_forward

logger = logging.getLogger(__name__)

__all__ = ["MODES", "TILE_STATS", "InferenceOptions", "build_predictor", "network_geometry"]


def network_geometry(network: nn.Module) -> tuple[int, int]:
    """``(scale, size_multiple)`` of a network: IMDN ``(s, 1)``, IMDN_AS ``(1, 4)``."""
    return int(getattr(network, "scale", 1)), int(getattr(network, "size_multiple", 1))


#: Share of the available memory a whole-image pass may take before ``mode: auto`` tiles instead.
AUTO_TILE_SHARE = 0.7
#: 32-bit feature maps of ``num_feat`` channels alive at once in a whole-image IMDN forward (fused
#: CPU plan, measured with IMDN ×4 on 1200×2001: ~5 maps plus the output; 6 leaves a margin).
_LIVE_MAPS = 6


def whole_image_bytes(network: nn.Module, n: int, h: int, w: int) -> int | None:
    """Estimated peak bytes of one whole-image forward of an IMDN / IMDN_AS (``None`` for other networks)."""
    if not isinstance(network, IMDNBase):
        return None
    num_feat = network.LR_conv.out_channels
    stride, scale = network.feature_stride, network.scale
    features = n * (h // stride + 1) * (w // stride + 1) * num_feat * 4 * _LIVE_MAPS
    output = 2 * n * 3 * (scale * h) * (scale * w) * 4  # the float output and one copy of it
    return features + output


def auto_tile(network: nn.Module, x: Tensor, device: torch.device) -> int | None:
    """A tile side when a whole-image pass of ``x`` would not fit in the available memory, else None."""
    need = whole_image_bytes(network, x.shape[0], x.shape[-2], x.shape[-1])
    have = available_bytes(device)
    if need is None or have is None or need <= AUTO_TILE_SHARE * have:
        return None
    tile = tiling.DEFAULT_TILE
    logger.warning(
        "a whole-image pass of %dx%d needs ~%.1f GB, %.1f GB available: tiling it (tile %d; set inference:tile / "
        "--tile to choose)", x.shape[-2], x.shape[-1], need / 1e9, have / 1e9, tile,
    )  # fmt: skip
    return tile


def build_predictor(network: nn.Module, options: InferenceOptions | None = None) -> Callable[..., Tensor]:
    """Return ``predict(x, out=None) -> y`` for NCHW float images in ``[0, 1]``.

    Example::

        net = IMDN(upscale=4); load_into(net, load_state_dict("IMDN_x4.pth"))
        predict = build_predictor(net, InferenceOptions(tile=256))
        sr = predict(lr)   # (N, 3, 4H, 4W)

    ``out`` (optional) is filled and returned: a floating tensor, or ``uint8``
    (8-bit pixels ``round(255·clamp(y, 0, 1))``; tiles are quantised one by one,
    so a tiled image never exists in float).  With ``mode: auto`` and no
    ``tile``, an image whose whole-image pass would not fit in the available
    memory is tiled (with a warning).

    The network is used in eval mode under ``torch.inference_mode``; its
    parameters are read when the predictor is built (rebuild it after training
    steps).  ``predict.path`` names what runs (e.g. ``"fused-cpu (fp32)"``).
    """
    options = options or InferenceOptions()  # checked when made: not again here
    scale, multiple = network_geometry(network)
    if options.backend == "torch":
        options.check_device(next((p.device.type for p in network.parameters()), "cpu"))
    try:
        if options.backend == "torch":
            forward: Any = make_fast_forward(
                network, channels_last=options.channels_last, compile=options.compile, precision=options.precision
            )
        else:
            forward = runtimes.RuntimeForward(network, options.backend, options.precision)
    except ConfigError:
        raise
    except ValueError as exc:  # an option problem of the forward, said in one line
        raise ConfigError(f"inference: {exc}") from None
    # On a CPU one tile per call is as fast as several, with a quarter of the memory.
    batch = options.tile_batch or (1 if forward.device.type == "cpu" else tiling.DEFAULT_TILE_BATCH)
    overlap, progress = options.tile_overlap, options.progress
    global_stats = options.tile_stats == "global" and isinstance(network, IMDNBase)

    def tiled(x: Tensor, tile: int, out: Tensor | None) -> Tensor:
        if global_stats:
            # The frozen copy and its stages (the fused CPU plan's when it runs), in the
            # fast forward's own run context.
            x = forward.prepare(x)
            with forward.context():
                return global_tiled_forward(
                    forward.module, x, tile=tile, overlap=overlap, batch=batch, progress=progress,
                    stages=forward.stages(), out=out,
                )  # fmt: skip
        return tiling.tiled_forward(
            forward, x, scale=scale, tile=tile, overlap=overlap, batch=batch, multiple=multiple, progress=progress,
            out=out,
        )  # fmt: skip

    def untiled(x: Tensor, mode: str) -> Tensor:
        if mode == "acs" and multiple > 1:
            return cropping.acs_forward(forward, x, padding=options.acs_padding)
        # whole image (IMDN, or 'acs' asked for a network that needs no cropping)
        if multiple > 1 and (x.shape[-2] % multiple or x.shape[-1] % multiple):
            return cropping.pad_forward(forward, x, multiple=multiple, scale=scale)
        return forward(x)

    # The tile an out-of-memory error brought the run down to (CUDA), kept for later images.
    oom_tile: list[int | None] = [None]

    def predict(x: Tensor, out: Tensor | None = None) -> Tensor:
        start = oom_tile[0] if oom_tile[0] is not None else (options.tile if options.mode in ("auto", "tile") else None)
        floor = tiling.OOM_MIN_TILE if global_stats else max(tiling.OOM_MIN_TILE, 2 * overlap + 4)  # local: tile > 2·overlap
        y, tile = tiling.retry_out_of_memory(lambda t: predict_with(x, out, t), start, x.shape[-2], x.shape[-1], floor)
        oom_tile[0] = tile
        return y

    def predict_with(x: Tensor, out: Tensor | None, oom_cap: int | None) -> Tensor:
        mode, tile = options.mode, options.tile
        if oom_cap is not None:  # tiles of at most oom_cap px after running out of memory
            mode, tile = "tile", min(oom_cap, tile or oom_cap)
        if mode == "auto":
            if tile is None:
                tile = auto_tile(network, x, forward.device)
            # ACS (paper §3.3) crops to multiples of 4 for IMDN_AS; other multiples (IMDN_RTE: 2) are padded.
            mode = "tile" if tile is not None else ("acs" if multiple == cropping.ACS_MULTIPLE else "whole")
        if mode == "tile":
            assert tile is not None
            y = tiled(x, tile, out)
            return y if out is not None or y.dtype == torch.float32 else y.float()
        y = tiling.check_finite(untiled(x, mode))
        if out is None:
            return y
        tiling.write_region(tiling.output_tensor(out, tuple(y.shape), y), y)
        return out

    # What runs, for logs: e.g. "fused-cpu (fp32)", "openvino-fp32 (fp32)".
    predict.path = f"{forward.path} ({forward.precision})"  # type: ignore[attr-defined]
    return predict
