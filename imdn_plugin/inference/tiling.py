"""Memory-bounded tiled inference: the tile geometry and :func:`tiled_forward`.

The geometry (:func:`axis_spans`, :func:`tile_geometry`, :class:`Span`) is
shared with :mod:`.global_tiling`, which runs the same tiles with whole-image
CCA statistics.  No BasicSR import.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm import tqdm

from ..errors import NonFiniteError
from .cropping import (
    Network,
    check_input,
    check_int,
    check_output,
    replicate_pad,
    round_up,
)

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "DEFAULT_TILE_BATCH",
    "OOM_MIN_TILE",
    "Span",
    "axis_spans",
    "check_tiling_args",
    "halved_tile",
    "retry_out_of_memory",
    "tile_count",
    "tile_geometry",
    "tiled_forward",
    "write_region",
]

logger = logging.getLogger(__name__)

# Tiling defaults (scripts/check_tiling.py measures them).  With CCA frozen, overlap 32 leaves a
# stitching error of ~79 dB PSNR for IMDN_AS (32 input px = 8 feature px) and ~146 dB for IMDN
# (LR px); what remains is CCA's per-tile statistics: on Set5 x4 (IMDN_x4, forced 48-px tiles)
# the mean Y-PSNR moves by +0.003 dB (single images by up to ±0.04 dB); on a 1024² Set5 mosaic
# through IMDN_AS, tiles of 256 / 512 are 39 / 43 dB from the whole-image output and score
# +0.13 / +0.06 dB higher against the ground truth.  Peak memory is flat in the image size: one batch of tiles plus the
# input and output (IMDN_x4, tile 256, batch 4: ~1.3 GiB of activations on CPU, fp32).

#: Default tile side in *input* pixels for :func:`tiled_forward` (LR pixels for IMDN; a multiple of 4).
DEFAULT_TILE = 256
#: Default context, in input pixels, kept around each tile's core (a multiple of 4).
DEFAULT_OVERLAP = 32
#: Default number of tiles per network call.
DEFAULT_TILE_BATCH = 4


class Span(NamedTuple):
    """One tile along one axis: input window ``[start, start+size)`` and owned core ``[core0, core1)``."""

    start: int
    core0: int
    core1: int


def axis_spans(size: int, tile: int, overlap: int, multiple: int) -> tuple[int, list[Span]]:
    """Split one axis of length ``size`` into equally long windows with disjoint cores.

    The axis is virtually replicate-padded to ``padded = ⌈size/multiple⌉·multiple``.
    Windows are ``min(tile, padded)`` long and start at multiples of ``multiple``
    (so a stride-4 network sees the same sampling grid as in a whole-image pass
    through :func:`pad_forward`).  Each core has at least ``overlap`` pixels of
    context on both sides inside its window, except at the image borders.  The
    cores partition ``[0, size)``.

    Returns:
        ``(window_size, spans)``; ``O(size / (tile - 2·overlap))`` spans.
    """
    padded = round_up(size, multiple)
    if padded <= tile:
        return padded, [Span(0, 0, size)]
    spans = []
    start, core0 = 0, 0
    while True:
        if start + tile >= padded:  # last window: shift inward to end at the (padded) border
            spans.append(Span(padded - tile, core0, size))
            return tile, spans
        core1 = start + tile - overlap
        spans.append(Span(start, core0, core1))
        core0 = core1
        # Next window: context of >= overlap before its core, start aligned down to `multiple`.
        previous, start = start, (core0 - overlap) // multiple * multiple
        if start <= previous:  # callers keep 2·overlap < tile; a broken caller must not loop forever
            raise ValueError(f"axis_spans: tile {tile} with overlap {overlap} (multiple {multiple}) makes no progress")


def check_tiling_args(scale: object, tile: object, overlap: object, batch: object, multiple: object) -> None:
    fn = "tiled_forward"
    check_int(fn, "scale", scale, 1)
    check_int(fn, "multiple", multiple, 1)
    check_int(fn, "overlap", overlap, 0)
    check_int(fn, "batch", batch, 1)
    check_int(fn, "tile", tile, multiple)  # type: ignore[arg-type]
    if tile <= 2 * overlap:  # type: ignore[operator]
        raise ValueError(f"{fn}: overlap must be less than half the tile ({tile}), got {overlap!r}")


def tile_geometry(tile: int, overlap: int, multiple: int) -> tuple[int, int]:
    """Effective ``(tile, overlap)``: tile rounded down to a multiple of ``multiple``,
    overlap reduced (rare) so that each window advances by at least ``multiple``."""
    eff_tile = tile // multiple * multiple
    eff_overlap = min(overlap, (eff_tile - multiple) // 2)
    if eff_overlap < overlap:
        logger.warning(
            "tiled_forward: overlap %d reduced to %d to fit tile %d with multiple %d", overlap, eff_overlap, tile, multiple
        )
    return eff_tile, eff_overlap


def check_finite(y: Tensor) -> Tensor:
    """``y``, or :class:`~imdn_plugin.errors.NonFiniteError` if it holds NaN or Inf (broken weights
    or input): such an output must never become an image or a metric."""
    if not bool(torch.isfinite(y).all()):
        bad = int((~torch.isfinite(y)).sum())
        raise NonFiniteError(
            f"the network's output holds {bad} non-finite value(s) (NaN/Inf) of {y.numel()} (overflow with these "
            "weights or this precision?); nothing written"
        )
    return y


def write_region(dst: Tensor, src: Tensor) -> None:
    """Store a network output region (checked finite): as is into a floating ``dst``; into a
    ``uint8`` ``dst`` as ``round(clamp(src, 0, 1) · 255)`` (what an 8-bit PNG holds), so that a
    whole image never has to exist in float (4× the memory)."""
    check_finite(src)
    if dst.dtype == torch.uint8:
        dst.copy_(src.clamp(0, 1).mul_(255).round_())
    elif dst.dtype.is_floating_point:
        dst.copy_(src)
    else:
        raise ValueError(f"output tensor must be floating or uint8, got {dst.dtype}")


def output_tensor(out: Tensor | None, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """``out`` checked against ``shape``, or a new tensor of ``like``'s dtype and device."""
    if out is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"output tensor has shape {tuple(out.shape)}, expected {tuple(shape)}")
    return out


def tile_count(h: int, w: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """Number of tiles an ``h×w`` image is cut into (per image)."""
    tile, overlap = tile_geometry(tile, overlap, multiple)
    return len(axis_spans(h, tile, overlap, multiple)[1]) * len(axis_spans(w, tile, overlap, multiple)[1])


def tiled_forward(
    network: Network,
    x: Tensor,
    *,
    scale: int,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch: int = DEFAULT_TILE_BATCH,
    multiple: int = 1,
    progress: bool = False,
    out: Tensor | None = None,
) -> Tensor:
    """Memory-bounded inference on a grid of overlapping tiles (no gradients).

    The image is cut into windows of ``T_H × T_W`` input pixels, ``T = min(tile,
    ⌈side/multiple⌉·multiple)``, all of the same size (edge windows are shifted
    inward; images smaller than ``tile`` are replicate-padded to a multiple of
    ``multiple``).  Each window is a core plus at least ``overlap`` pixels of
    context on every side that is not an image border; window origins are
    multiples of ``multiple``.  Up to ``batch`` windows go through ``network``
    per call, and the core of each output window is pasted into an output
    tensor allocated once, so peak memory is the output plus one batch of
    activations, independent of the image size.  Unlike the paper's ACS (§3.3),
    whose four patches are each about a quarter of the image, this bounds memory.
    Stitching is exact for networks whose receptive field fits in ``overlap``;
    IMDN's CCA (§3.2) sees per-tile instead of whole-image statistics, so the
    result is close to, not equal to, a whole-image pass.

    Rules: integers with ``scale >= 1``, ``multiple >= 1``, ``overlap >= 0``,
    ``batch >= 1``, ``tile >= multiple`` and ``tile > 2*overlap``.  ``tile`` is
    rounded down to a multiple of ``multiple``; in the rare case that leaves no
    room for a core of ``multiple`` pixels, ``overlap`` is reduced (with a
    warning) to ``(tile - multiple) // 2``.

    Args:
        network: Maps ``B×C×T_H×T_W`` to ``B×C'×(scale·T_H)×(scale·T_W)``.
        x: ``N×C×H×W`` input (any ``H, W >= 1``).
        scale: Output/input size ratio (IMDN: its upscale; IMDN_AS: 1).
        tile: Largest window side, in input pixels.
        overlap: Context kept around each core, in input pixels.
        batch: Windows per network call (the network never sees a larger batch).
        multiple: Side multiple the network needs (IMDN: 1; IMDN_AS: 4).
        progress: Show a tqdm progress bar.
        out: Optional ``N×C'×(scale·H)×(scale·W)`` tensor to fill (floating, or ``uint8``:
            each tile quantised as it is written, see :func:`write_region`).

    Returns:
        ``out``, or a new ``N×C'×(scale·H)×(scale·W)`` tensor on ``x``'s device with ``x``'s dtype.

    Raises:
        ValueError: For invalid arguments or a network output of the wrong size.
        Any exception raised by ``network`` propagates unchanged.
    """
    check_input("tiled_forward", x)
    check_tiling_args(scale, tile, overlap, batch, multiple)
    tile, overlap = tile_geometry(tile, overlap, multiple)
    n, _, h, w = x.shape
    th, rows = axis_spans(h, tile, overlap, multiple)
    tw, cols = axis_spans(w, tile, overlap, multiple)
    total = n * len(rows) * len(cols)
    logger.debug(
        "tiled_forward: %dx%dx%d -> %d tiles of %dx%d (grid %dx%d), overlap %d, batch %d",
        n, h, w, total, th, tw, len(rows), len(cols), overlap, batch,
    )

    def windows() -> Iterator[tuple[int, Span, Span]]:
        for i in range(n):
            for r in rows:
                for c in cols:
                    yield i, r, c

    def crop(i: int, r: Span, c: Span) -> Tensor:
        patch = x[i : i + 1, :, r.start : r.start + th, c.start : c.start + tw]
        return replicate_pad(patch, th - patch.shape[-2], tw - patch.shape[-1])

    s = scale
    result: Tensor | None = None
    pending: list[tuple[int, Span, Span]] = []
    with torch.no_grad(), tqdm(total=total, desc="tiles", unit="tile", disable=not progress, leave=False) as bar:
        it = windows()
        while True:
            pending = [win for _, win in zip(range(batch), it, strict=False)]
            if not pending:
                break
            inp = torch.cat([crop(*win) for win in pending], dim=0)
            y = check_output("tiled_forward", network(inp), len(pending), s * th, s * tw)
            del inp
            if result is None:
                result = output_tensor(out, (n, y.shape[1], s * h, s * w), x)
            for k, (i, r, c) in enumerate(pending):
                write_region(
                    result[i, :, s * r.core0 : s * r.core1, s * c.core0 : s * c.core1],
                    y[k, :, s * (r.core0 - r.start) : s * (r.core1 - r.start), s * (c.core0 - c.start) : s * (c.core1 - c.start)],
                )  # fmt: skip
            del y
            bar.update(len(pending))
    assert result is not None  # at least one window exists for a non-empty x
    return result


# --------------------------------------------------------------------------- out-of-memory recovery

#: Smallest tile side (input pixels) the out-of-memory recovery halves down to; below it a GPU that
#: cannot run the network is out of memory for other reasons (and tiles would be mostly overlap).
OOM_MIN_TILE = 64


def halved_tile(tile: int | None, h: int, w: int, floor: int = OOM_MIN_TILE) -> int | None:
    """The tile to retry with after running out of memory with ``tile`` (``None``: the whole
    ``h×w`` image): half of it (of the larger side), a multiple of 4, at least ``floor``
    (rounded up to a multiple of 4); ``None`` when ``tile`` is at the floor already."""
    floor = round_up(floor, 4)
    current = max(h, w) if tile is None else tile
    if current <= floor:
        return None
    return max(floor, current // 2 // 4 * 4)


def retry_out_of_memory(
    run: Callable[[int | None], Tensor], tile: int | None, h: int, w: int, floor: int = OOM_MIN_TILE
) -> tuple[Tensor, int | None]:
    """``(run(tile), tile)``; on :class:`torch.cuda.OutOfMemoryError` the CUDA cache is freed and
    ``run`` is called again with the tile halved (:func:`halved_tile`), until it fits or the floor
    fails too (then the error propagates).  One warning says what was done.  ``run(t)`` must
    produce the whole result from scratch, so the output is that of a run with the final tile
    from the start."""
    first = tile
    while True:
        try:
            y = run(tile)
        except torch.cuda.OutOfMemoryError:
            smaller = halved_tile(tile, h, w, floor)
            if smaller is None:
                raise
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
            tile = smaller
            continue
        if tile != first:
            logger.warning(
                "out of GPU memory with %s: tiles of %d px instead (the same result as --tile %d; "
                "later images start from it)", "the whole image" if first is None else f"tile {first}", tile, tile,
            )  # fmt: skip
        return y, tile
