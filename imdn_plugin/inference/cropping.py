"""Cropping strategies for running IMDN networks on images of any size.

* :func:`acs_forward` — the paper's adaptive cropping strategy (ACS; Hui et al.,
  ACM MM 2019, §3.3, Eqs. 6–8, Fig. 4) for networks such as the size-preserving
  :class:`~imdn_plugin.archs.imdn_arch.IMDN_AS` whose input sides must be divisible by 4.
* :func:`pad_forward` — replicate-pad bottom/right to a size multiple, run, crop.
* :func:`tiled_forward` — memory-bounded inference on a grid of overlapping,
  equally sized tiles, a few tiles per network call.

All functions take a ``network`` (any ``Callable[[Tensor], Tensor]`` mapping an
NCHW batch to an NCHW batch) and an NCHW floating-point tensor ``x``.  They do
not import BasicSR.

The IMDN blocks contain a contrast-aware channel attention (CCA, §3.2) that uses
global per-channel statistics of each feature map, so any cropping (ACS or
tiles) gives results close to, but not bit-identical with, a whole-image pass.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

__all__ = [
    "ACS_MULTIPLE",
    "ACS_PADDING",
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "DEFAULT_TILE_BATCH",
    "acs_forward",
    "acs_patch_size",
    "pad_forward",
    "tiled_forward",
]

logger = logging.getLogger(__name__)

Network = Callable[[Tensor], Tensor]

#: Side multiple required by IMDN_AS (two stride-2 convs, ×4 pixel shuffle); Eq. 7 uses mod 4.
ACS_MULTIPLE = 4
#: The paper's ACS increment ``padding`` (Eq. 8, ``padding = 4k``; the authors use 32).
ACS_PADDING = 32

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


# --------------------------------------------------------------------------- helpers


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_input(fn: str, x: object) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{fn}: x must be an NCHW tensor, got {shape}")
    if x.numel() == 0:
        raise ValueError(f"{fn}: x must be non-empty, got shape {tuple(x.shape)}")


def _check_int(fn: str, name: str, value: object, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{fn}: {name} must be an integer >= {minimum}, got {value!r}")
    return value  # type: ignore[return-value]


def _check_output(fn: str, out: object, n: int, h: int, w: int) -> Tensor:
    """Check that the network mapped an ``n×C×h'×w'`` batch to ``n×C'×h×w``."""
    if not isinstance(out, Tensor) or out.dim() != 4 or out.shape[0] != n or tuple(out.shape[-2:]) != (h, w):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{fn}: expected network output of shape ({n}, C, {h}, {w}), got {got}")
    return out


def _replicate_pad(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """Replicate-pad ``x`` at the bottom by ``pad_h`` and on the right by ``pad_w`` rows/cols.

    Works for any input size, 1×1 included (unlike reflect padding), and for
    pads larger than the input.
    """
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _infer_scale(fn: str, out: object, n: int, h: int, w: int) -> int:
    """Integer ``s >= 1`` such that ``out`` is ``n×C'×(s·h)×(s·w)``; ValueError otherwise."""
    if isinstance(out, Tensor) and out.dim() == 4 and out.shape[0] == n:
        s = out.shape[-2] // h
        if s >= 1 and tuple(out.shape[-2:]) == (s * h, s * w):
            return s
    got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    raise ValueError(f"{fn}: expected network output of shape ({n}, C, s*{h}, s*{w}) for an integer s, got {got}")


def _padded_run(fn: str, network: Network, x: Tensor, multiple: int, scale: int | None) -> Tensor:
    """Replicate-pad to multiples of ``multiple``, run, crop back; ``scale=None`` infers it."""
    n, _, h, w = x.shape
    hp, wp = _round_up(h, multiple), _round_up(w, multiple)
    out = network(_replicate_pad(x, hp - h, wp - w))
    if scale is None:
        scale = _infer_scale(fn, out, n, hp, wp)
    else:
        out = _check_output(fn, out, n, scale * hp, scale * wp)
    return out[..., : scale * h, : scale * w]


# --------------------------------------------------------------------------- pad_forward


def pad_forward(network: Network, x: Tensor, *, multiple: int, scale: int) -> Tensor:
    """Replicate-pad ``x`` bottom/right to sides divisible by ``multiple``, run ``network``, crop back.

    Args:
        network: Maps ``N×C×h×w`` to ``N×C'×(scale·h)×(scale·w)``.
        x: ``N×C×H×W`` input (any ``H, W >= 1``; replicate padding works for 1×1).
        multiple: Side multiple the network needs (4 for IMDN_AS, 1 for IMDN).
        scale: Output/input size ratio (the IMDN upscale; 1 for IMDN_AS).

    Returns:
        ``N×C'×(scale·H)×(scale·W)``.
    """
    _check_input("pad_forward", x)
    multiple = _check_int("pad_forward", "multiple", multiple, 1)
    scale = _check_int("pad_forward", "scale", scale, 1)
    return _padded_run("pad_forward", network, x, multiple, scale)


# --------------------------------------------------------------------------- ACS (§3.3)


def acs_patch_size(size: int, padding: int = ACS_PADDING) -> int:
    """Side of an ACS patch along one axis: ``⌊size/2⌋ + Δl`` (paper Eqs. 6–7).

    ``Δl = padding − ((⌊size/2⌋ + padding) mod 4)`` makes the patch side divisible
    by 4 and, with ``padding = 4k, k >= 1`` (Eq. 8), at least ``⌊size/2⌋ + 1``, so
    the patch anchored at the far edge covers the other half.
    """
    half = size // 2
    return half + padding - (half + padding) % ACS_MULTIPLE


def _check_padding(padding: object) -> int:
    if not _is_int(padding) or padding <= 0 or padding % ACS_MULTIPLE:  # type: ignore[operator]
        raise ValueError(f"acs_forward: padding must be a positive integer multiple of 4 (Eq. 8), got {padding!r}")
    return padding  # type: ignore[return-value]


def acs_forward(network: Network, x: Tensor, padding: int = ACS_PADDING) -> Tensor:
    """Adaptive cropping strategy (paper §3.3, Eqs. 6–8, Fig. 4) for networks needing sides divisible by 4.

    If ``H`` and ``W`` are both divisible by 4 the whole image goes through
    ``network`` once.  Otherwise four overlapping patches of
    ``(⌊H/2⌋+Δl_H) × (⌊W/2⌋+Δl_W)`` pixels (Eqs. 6–7, see :func:`acs_patch_size`),
    anchored at the four image corners, go through ``network`` as one batch; each
    patch contributes the quadrant it owns (split at ``⌊H/2⌋``, ``⌊W/2⌋``) and its
    increment is discarded.  Images too small for the patches (a patch side
    larger than the image side) fall back to replicate padding to multiples of
    4 (as :func:`pad_forward`).

    The paper applies ACS to the size-preserving IMDN_AS; a network whose output
    is an integer multiple ``s`` of its input size also works (``s`` is read
    from the output).

    Args:
        network: Network whose input sides must be divisible by 4 (IMDN_AS).
        x: ``N×C×H×W`` input (any ``H, W >= 1``).
        padding: ``padding = 4k, k >= 1`` of Eq. 8 (the paper uses 32).

    Returns:
        ``N×C'×(s·H)×(s·W)``; ``N×C'×H×W`` for IMDN_AS.
    """
    padding = _check_padding(padding)
    _check_input("acs_forward", x)
    n, _, h, w = x.shape
    if h % ACS_MULTIPLE == 0 and w % ACS_MULTIPLE == 0:
        out = network(x)
        _infer_scale("acs_forward", out, n, h, w)
        return out
    ph, pw = acs_patch_size(h, padding), acs_patch_size(w, padding)
    if ph > h or pw > w:
        logger.debug("acs_forward: %dx%d is too small for %dx%d ACS patches; padding instead", h, w, ph, pw)
        return _padded_run("acs_forward", network, x, ACS_MULTIPLE, None)

    h2, w2 = h // 2, w // 2
    # Patch origins (row, col) in the order TL, TR, BL, BR, and the quadrant each owns.
    rows = (0, 0, h - ph, h - ph)
    cols = (0, w - pw, 0, w - pw)
    own_rows = ((0, h2), (0, h2), (h2, h), (h2, h))
    own_cols = ((0, w2), (w2, w), (0, w2), (w2, w))
    patches = torch.cat([x[:, :, r : r + ph, c : c + pw] for r, c in zip(rows, cols)], dim=0)
    out = network(patches)
    s = _infer_scale("acs_forward", out, 4 * n, ph, pw)

    result = out.new_empty((n, out.shape[1], s * h, s * w))
    for i, (r, c, (r0, r1), (c0, c1)) in enumerate(zip(rows, cols, own_rows, own_cols)):
        result[:, :, s * r0 : s * r1, s * c0 : s * c1] = out[
            i * n : (i + 1) * n, :, s * (r0 - r) : s * (r1 - r), s * (c0 - c) : s * (c1 - c)
        ]
    return result


# --------------------------------------------------------------------------- tiled_forward


class _Span(NamedTuple):
    """One tile along one axis: input window ``[start, start+size)`` and owned core ``[core0, core1)``."""

    start: int
    core0: int
    core1: int


def _axis_spans(size: int, tile: int, overlap: int, multiple: int) -> tuple[int, list[_Span]]:
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
    padded = _round_up(size, multiple)
    if padded <= tile:
        return padded, [_Span(0, 0, size)]
    spans = []
    start, core0 = 0, 0
    while True:
        if start + tile >= padded:  # last window: shift inward to end at the (padded) border
            spans.append(_Span(padded - tile, core0, size))
            return tile, spans
        core1 = start + tile - overlap
        spans.append(_Span(start, core0, core1))
        core0 = core1
        # Next window: context of >= overlap before its core, start aligned down to `multiple`.
        start = (core0 - overlap) // multiple * multiple


def _check_tiling_args(scale: object, tile: object, overlap: object, batch: object, multiple: object) -> None:
    fn = "tiled_forward"
    _check_int(fn, "scale", scale, 1)
    _check_int(fn, "multiple", multiple, 1)
    _check_int(fn, "overlap", overlap, 0)
    _check_int(fn, "batch", batch, 1)
    _check_int(fn, "tile", tile, multiple)  # type: ignore[arg-type]
    if tile <= 2 * overlap:  # type: ignore[operator]
        raise ValueError(f"{fn}: overlap must be less than half the tile ({tile}), got {overlap!r}")


def _tile_geometry(tile: int, overlap: int, multiple: int) -> tuple[int, int]:
    """Effective ``(tile, overlap)``: tile rounded down to a multiple of ``multiple``,
    overlap reduced (rare) so that each window advances by at least ``multiple``."""
    eff_tile = tile // multiple * multiple
    eff_overlap = min(overlap, (eff_tile - multiple) // 2)
    if eff_overlap < overlap:
        logger.warning(
            "tiled_forward: overlap %d reduced to %d to fit tile %d with multiple %d", overlap, eff_overlap, tile, multiple
        )
    return eff_tile, eff_overlap


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

    Returns:
        ``N×C'×(scale·H)×(scale·W)`` tensor on ``x``'s device with ``x``'s dtype.

    Raises:
        ValueError: For invalid arguments or a network output of the wrong size.
        Any exception raised by ``network`` propagates unchanged.
    """
    _check_input("tiled_forward", x)
    _check_tiling_args(scale, tile, overlap, batch, multiple)
    tile, overlap = _tile_geometry(tile, overlap, multiple)
    n, _, h, w = x.shape
    th, rows = _axis_spans(h, tile, overlap, multiple)
    tw, cols = _axis_spans(w, tile, overlap, multiple)
    total = n * len(rows) * len(cols)
    logger.debug(
        "tiled_forward: %dx%dx%d -> %d tiles of %dx%d (grid %dx%d), overlap %d, batch %d",
        n, h, w, total, th, tw, len(rows), len(cols), overlap, batch,
    )

    def windows() -> Iterator[tuple[int, _Span, _Span]]:
        for i in range(n):
            for r in rows:
                for c in cols:
                    yield i, r, c

    def crop(i: int, r: _Span, c: _Span) -> Tensor:
        patch = x[i : i + 1, :, r.start : r.start + th, c.start : c.start + tw]
        return _replicate_pad(patch, th - patch.shape[-2], tw - patch.shape[-1])

    s = scale
    result: Tensor | None = None
    pending: list[tuple[int, _Span, _Span]] = []
    with torch.no_grad(), tqdm(total=total, desc="tiles", unit="tile", disable=not progress, leave=False) as bar:
        it = windows()
        while True:
            pending = [win for _, win in zip(range(batch), it)]
            if not pending:
                break
            inp = torch.cat([crop(*win) for win in pending], dim=0)
            out = _check_output("tiled_forward", network(inp), len(pending), s * th, s * tw)
            del inp
            if result is None:
                result = torch.empty((n, out.shape[1], s * h, s * w), dtype=x.dtype, device=x.device)
            for k, (i, r, c) in enumerate(pending):
                result[i, :, s * r.core0 : s * r.core1, s * c.core0 : s * c.core1] = out[
                    k, :, s * (r.core0 - r.start) : s * (r.core1 - r.start), s * (c.core0 - c.start) : s * (c.core1 - c.start)
                ]
            del out
            bar.update(len(pending))
    assert result is not None  # at least one window exists for a non-empty x
    return result
