"""One call from a network to a ``tensor -> tensor`` predictor.

:func:`build_predictor` composes the fast forward of :mod:`.fast` with the way
an image is fed through the network (:mod:`.cropping`): whole image, the
paper's adaptive cropping strategy (ACS, §3.3) for IMDN_AS, or memory-bounded
tiles.  ``IMDNModel``, ``basicsr infer`` and the benchmark all use it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from torch import Tensor, nn

from ..archs import IMDNBase
from ..errors import ConfigError
from ..options import check_keys
from . import cropping, tiling
from .fast import PRECISIONS, make_fast_forward
from .global_tiling import global_tiled_forward

MODES = ("auto", "whole", "acs", "tile")
TILE_STATS = ("global", "local")


@dataclass(frozen=True)
class InferenceOptions:
    """How test images go through the network (the ``inference:`` block of an option file).

    Attributes:
        mode: ``auto`` (tiles if ``tile`` is set, else ACS for IMDN_AS and a
            whole-image forward for IMDN), ``whole`` (one forward, padded to
            the network's size multiple), ``acs`` or ``tile``.
        acs_padding: ACS padding, ``4k`` with ``k >= 1`` (paper Eq. 8; 32).
        tile: Largest tile side in input pixels (``None``: no tiling).
        tile_overlap: Context pixels around each tile, in input pixels.
        tile_batch: Tiles per network call.
        tile_stats: ``global`` (default): every CCA of IMDN/IMDN_AS uses the
            statistics of the whole image, gathered tile by tile, so tiles
            give the whole-image result (several passes; memory stays
            bounded); ``local``: each tile's own statistics (one pass,
            faster, about 0.05–0.13 dB off on large IMDN_AS images).
        channels_last: Memory format of the fast path (``None``: its default).
        compile: Use ``torch.compile`` in the fast path.
        precision: ``fp32`` (default: exact), ``bf16`` (CPU: the bf16 fused
            plan, Set5 within ~0.003 dB of fp32; CUDA: autocast), ``fp16`` (CUDA
            autocast) or ``auto`` (``bf16`` on a CPU with AMX, else ``fp32``).
        progress: Show a progress bar over tiles.
    """

    mode: str = "auto"
    acs_padding: int = 32
    tile: Optional[int] = None
    tile_overlap: int = tiling.DEFAULT_OVERLAP
    tile_batch: int = tiling.DEFAULT_TILE_BATCH
    tile_stats: str = "global"
    channels_last: Optional[bool] = None
    compile: bool = False
    precision: str = "fp32"
    progress: bool = False

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
        if self.tile is not None and 2 * self.tile_overlap >= self.tile:
            fail("tile_overlap", self.tile_overlap, f"must be less than half the tile ({self.tile})")
        if self.tile_stats not in TILE_STATS:
            fail("tile_stats", self.tile_stats, f"must be one of {', '.join(TILE_STATS)}")
        if not is_int(self.tile_batch) or self.tile_batch < 1:
            fail("tile_batch", self.tile_batch, "must be an integer >= 1")
        if self.channels_last not in (None, True, False):
            fail("channels_last", self.channels_last, "must be true, false or ~")
        if self.compile not in (True, False):
            fail("compile", self.compile, "must be true or false")
        if self.precision not in PRECISIONS:
            fail("precision", self.precision, f"must be one of {', '.join(PRECISIONS)}")
        if self.progress not in (True, False):
            fail("progress", self.progress, "must be true or false")

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


def build_predictor(network: nn.Module, options: Optional[InferenceOptions] = None) -> Callable[[Tensor], Tensor]:
    """Return ``predict(x) -> y`` for NCHW float images in ``[0, 1]``.

    Example::

        net = IMDN(upscale=4); load_into(net, load_state_dict("IMDN_x4.pth"))
        predict = build_predictor(net, InferenceOptions(tile=256))
        sr = predict(lr)   # (N, 3, 4H, 4W)

    The network is used in eval mode under ``torch.inference_mode``; its
    parameters are read when the predictor is built (rebuild it after training
    steps).
    """
    options = options or InferenceOptions()
    scale, multiple = network_geometry(network)
    try:
        forward = make_fast_forward(
            network, channels_last=options.channels_last, compile=options.compile, precision=options.precision
        )
    except ValueError as exc:  # e.g. fp16 for a network on the CPU: an option problem, said in one line
        raise ConfigError(f"inference: {exc}") from None
    mode = options.mode
    if mode == "auto":
        mode = "tile" if options.tile is not None else ("acs" if multiple > 1 else "whole")

    if mode == "tile" and options.tile_stats == "global" and isinstance(network, IMDNBase):
        assert options.tile is not None
        tile, overlap, batch, progress = options.tile, options.tile_overlap, options.tile_batch, options.progress

        def predict(x: Tensor) -> Tensor:
            # The frozen copy and its stages (the fused CPU plan's when it runs), in the
            # fast forward's own run context.
            x = forward.prepare(x)
            with forward.context():
                y = global_tiled_forward(
                    forward.module, x, tile=tile, overlap=overlap, batch=batch, progress=progress,
                    stages=forward.stages(),
                )  # fmt: skip
            return y.float()

    elif mode == "tile":
        assert options.tile is not None
        tile, overlap, batch, progress = options.tile, options.tile_overlap, options.tile_batch, options.progress

        def predict(x: Tensor) -> Tensor:
            return tiling.tiled_forward(
                forward, x, scale=scale, tile=tile, overlap=overlap, batch=batch, multiple=multiple, progress=progress
            )

    elif mode == "acs" and multiple > 1:
        padding = options.acs_padding

        def predict(x: Tensor) -> Tensor:
            return cropping.acs_forward(forward, x, padding=padding)

    else:  # whole image (IMDN, or 'acs' asked for a network that needs no cropping)

        def predict(x: Tensor) -> Tensor:
            if multiple > 1 and (x.shape[-2] % multiple or x.shape[-1] % multiple):
                return cropping.pad_forward(forward, x, multiple=multiple, scale=scale)
            return forward(x)

    return predict
