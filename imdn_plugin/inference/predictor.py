"""One call from a network to a ``tensor -> tensor`` predictor.

:func:`build_predictor` composes the fast forward of :mod:`.fast` with the way
an image is fed through the network (:mod:`.cropping`): whole image, the
paper's adaptive cropping strategy (ACS, §3.3) for IMDN_AS, or memory-bounded
tiles.  ``IMDNModel``, ``basicsr infer`` and the benchmark all use it.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..archs import IMDNBase
from ..errors import ConfigError
from ..machine import PRECISIONS, available_bytes
from ..options import check_keys
from . import cropping, runtimes, tiling
from .fast import make_fast_forward
from .global_tiling import global_tiled_forward

logger = logging.getLogger(__name__)

MODES = ("auto", "whole", "acs", "tile")
TILE_STATS = ("global", "local")


@dataclass(frozen=True)
class InferenceOptions:
    """How test images go through the network (the ``inference:`` block of an option file).

    Attributes:
        mode: ``auto`` (tiles if ``tile`` is set or the whole image would not fit in
            the available memory, else ACS for IMDN_AS and a whole-image forward for IMDN), ``whole`` (one forward, padded to
            the network's size multiple), ``acs`` or ``tile``.
        acs_padding: ACS padding, ``4k`` with ``k >= 1`` (paper Eq. 8; 32).
        tile: Largest tile side in input pixels (``None``: no tiling).
        tile_batch: Tiles per network call with ``tile_stats: local`` (``None``: 1 on CPU,
            where more are not faster and cost memory; 4 elsewhere); global tiles go one per call.
        tile_stats: ``global`` (default): the network streamed stage by stage through
            the tiles, every CCA of IMDN/IMDN_AS with whole-image statistics: the
            whole-image result, memory of one tile, the feature maps between stages in a
            temporary file (:mod:`.global_tiling`); ``local``: each tile's own
            statistics (about 0.05–0.13 dB off on large IMDN_AS images).
        tile_overlap: Context pixels around each tile for ``tile_stats: local`` (global
            tiles read the exact context each stage needs).
        channels_last: Memory format of the fast path (``None``: its default).
        compile: Use ``torch.compile`` in the fast path.
        precision: ``fp32`` (default: exact), ``bf16`` (CPU: the bf16 fused
            plan, Set5 within ~0.003 dB of fp32; CUDA: autocast), ``fp16`` (CUDA
            autocast) or ``auto`` (:func:`imdn_plugin.machine.resolve_precision`: ``fp16`` on a
            CUDA GPU with tensor cores, ``bf16`` on a CPU with AMX, else ``fp32``).
        progress: Show a progress bar over tiles.
        backend: ``torch`` (default), ``onnxruntime`` or ``openvino``: the network exported
            to ONNX and run by that runtime on the CPU, through the same ACS / tiling code
            (optional extras; see :mod:`.runtimes`).
    """

    mode: str = "auto"
    acs_padding: int = 32
    tile: Optional[int] = None
    tile_overlap: int = tiling.DEFAULT_OVERLAP
    tile_batch: Optional[int] = None
    tile_stats: str = "global"
    channels_last: Optional[bool] = None
    compile: bool = False
    precision: str = "fp32"
    progress: bool = False
    backend: str = "torch"

    def __post_init__(self) -> None:
        def fail(key: str, value: Any, need: str) -> None:
            raise ConfigError(f"inference:{key}: {need}, got {value!r}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if self.mode not in MODES:
            fail("mode", self.mode, f"must be one of {', '.join(MODES)}")
        if not is_int(self.acs_padding) or self.acs_padding < 4 or self.acs_padding % 4:
            fail("acs_padding", self.acs_padding, "must be a positive multiple of 4 (paper Eq. 8: 4k, k >= 1)")
        if self.tile is not None and (not is_int(self.tile) or self.tile < 4):
            fail("tile", self.tile, "must be an integer >= 4 or ~ (no tiling)")
        if self.mode == "tile" and self.tile is None:
            fail("tile", self.tile, "must be set when mode is 'tile'")
        if not is_int(self.tile_overlap) or self.tile_overlap < 0:
            fail("tile_overlap", self.tile_overlap, "must be an integer >= 0")
        if self.tile_stats not in TILE_STATS:
            fail("tile_stats", self.tile_stats, f"must be one of {', '.join(TILE_STATS)}")
        # Global tiles read the exact context of each stage: the overlap only matters for local ones.
        if self.tile is not None and self.tile_stats == "local" and 2 * self.tile_overlap >= self.tile:
            fail("tile_overlap", self.tile_overlap, f"must be less than half the tile ({self.tile})")
        if self.tile_batch is not None and (not is_int(self.tile_batch) or self.tile_batch < 1):
            fail("tile_batch", self.tile_batch, "must be an integer >= 1 or ~ (1 on CPU, 4 on GPU)")
        if self.channels_last not in (None, True, False):
            fail("channels_last", self.channels_last, "must be true, false or ~")
        if self.compile not in (True, False):
            fail("compile", self.compile, "must be true or false")
        if self.precision not in PRECISIONS:
            fail("precision", self.precision, f"must be one of {', '.join(PRECISIONS)}")
        if self.progress not in (True, False):
            fail("progress", self.progress, "must be true or false")
        if self.backend not in runtimes.BACKENDS:
            fail("backend", self.backend, f"must be one of {', '.join(runtimes.BACKENDS)}")
        if self.backend != "torch" and (self.compile is True or self.channels_last is True):
            key = "compile" if self.compile is True else "channels_last"
            fail(key, getattr(self, key), f"is a torch option; the {self.backend} backend does not take it (leave it out)")
        problem = runtimes.precision_problem(self.backend, self.precision)
        if problem:
            fail("precision", self.precision, problem)

    @classmethod
    def from_dict(cls, opt: Optional[Mapping[str, Any]]) -> "InferenceOptions":
        """Build from an option-file block, rejecting unknown keys by name."""
        if opt is None:
            return cls()
        if not isinstance(opt, Mapping):
            raise ConfigError(f"inference: expected a mapping of options, got {opt!r}")
        check_keys("inference", opt, [f.name for f in dataclasses.fields(cls)])
        return cls(**dict(opt))


def network_geometry(network: nn.Module) -> tuple[int, int]:
    """``(scale, size_multiple)`` of a network: IMDN ``(s, 1)``, IMDN_AS ``(1, 4)``."""
    return int(getattr(network, "scale", 1)), int(getattr(network, "size_multiple", 1))


#: Share of the available memory a whole-image pass may take before ``mode: auto`` tiles instead.
AUTO_TILE_SHARE = 0.7
#: 32-bit feature maps of ``num_feat`` channels alive at once in a whole-image IMDN forward (fused
#: CPU plan, measured with IMDN ×4 on 1200×2001: ~5 maps plus the output; 6 leaves a margin).
_LIVE_MAPS = 6


def whole_image_bytes(network: nn.Module, n: int, h: int, w: int) -> Optional[int]:
    """Estimated peak bytes of one whole-image forward of an IMDN / IMDN_AS (``None`` for other networks)."""
    if not isinstance(network, IMDNBase):
        return None
    num_feat = network.LR_conv.out_channels
    stride, scale = network.feature_stride, network.scale
    features = n * (h // stride + 1) * (w // stride + 1) * num_feat * 4 * _LIVE_MAPS
    output = 2 * n * 3 * (scale * h) * (scale * w) * 4  # the float output and one copy of it
    return features + output


def auto_tile(network: nn.Module, x: Tensor, device: torch.device) -> Optional[int]:
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


def build_predictor(network: nn.Module, options: Optional[InferenceOptions] = None) -> Callable[..., Tensor]:
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
    options = options or InferenceOptions()
    scale, multiple = network_geometry(network)
    try:
        if options.backend == "torch":
            forward: Any = make_fast_forward(
                network, channels_last=options.channels_last, compile=options.compile, precision=options.precision
            )
        else:
            forward = runtimes.runtime_forward(network, options.backend, options.precision)
    except ValueError as exc:  # e.g. fp16 for a network on the CPU: an option problem, said in one line
        raise ConfigError(f"inference: {exc}") from None
    # On a CPU one tile per call is as fast as several, with a quarter of the memory.
    batch = options.tile_batch or (1 if forward.device.type == "cpu" else tiling.DEFAULT_TILE_BATCH)
    overlap, progress = options.tile_overlap, options.progress
    global_stats = options.tile_stats == "global" and isinstance(network, IMDNBase)

    def tiled(x: Tensor, tile: int, out: Optional[Tensor]) -> Tensor:
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
    oom_tile: list[Optional[int]] = [None]

    def predict(x: Tensor, out: Optional[Tensor] = None) -> Tensor:
        start = oom_tile[0] if oom_tile[0] is not None else (options.tile if options.mode in ("auto", "tile") else None)
        floor = tiling.OOM_MIN_TILE if global_stats else max(tiling.OOM_MIN_TILE, 2 * overlap + 4)  # local: tile > 2·overlap
        y, tile = tiling.retry_out_of_memory(lambda t: predict_with(x, out, t), start, x.shape[-2], x.shape[-1], floor)
        oom_tile[0] = tile
        return y

    def predict_with(x: Tensor, out: Optional[Tensor], oom_cap: Optional[int]) -> Tensor:
        mode, tile = options.mode, options.tile
        if oom_cap is not None:  # tiles of at most oom_cap px after running out of memory
            mode, tile = "tile", min(oom_cap, tile or oom_cap)
        if mode == "auto":
            if tile is None:
                tile = auto_tile(network, x, forward.device)
            mode = "tile" if tile is not None else ("acs" if multiple > 1 else "whole")
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
