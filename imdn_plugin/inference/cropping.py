"""Cropping strategies for running IMDN networks on images of any size.

* :func:`acs_forward` — the paper's adaptive cropping strategy (ACS; Hui et al.,
  ACM MM 2019, §3.3, Eqs. 6–8, Fig. 4) for networks such as the size-preserving
  :class:`~imdn_plugin.archs.imdn_arch.IMDN_AS` whose input sides must be divisible by 4.
* :func:`pad_forward` — replicate-pad bottom/right to a size multiple, run, crop.

Tiling (memory-bounded inference on a grid of overlapping tiles) is in
:mod:`.tiling` and :mod:`.global_tiling`.

All functions take a ``network`` (any ``Callable[[Tensor], Tensor]`` mapping an
NCHW batch to an NCHW batch) and an NCHW floating-point tensor ``x``.  They do
not import BasicSR.

The IMDN blocks contain a contrast-aware channel attention (CCA, §3.2) that uses
global per-channel statistics of each feature map, so any cropping (ACS or
tiles) gives results close to, but not bit-identical with, a whole-image pass.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ACS_MULTIPLE",
    "ACS_PADDING",
    "acs_forward",
    "acs_patch_size",
    "pad_forward",
    "replicate_pad",
]

logger = logging.getLogger(__name__)

Network = Callable[[Tensor], Tensor]

#: Side multiple required by IMDN_AS (two stride-2 convs, ×4 pixel shuffle); Eq. 7 uses mod 4.
ACS_MULTIPLE = 4
#: The paper's ACS increment ``padding`` (Eq. 8, ``padding = 4k``; the authors use 32).
ACS_PADDING = 32

# --------------------------------------------------------------------------- helpers


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_input(fn: str, x: object) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{fn}: x must be an NCHW tensor, got {shape}")
    if x.numel() == 0:
        raise ValueError(f"{fn}: x must be non-empty, got shape {tuple(x.shape)}")


def check_int(fn: str, name: str, value: object, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise ValueError(f"{fn}: {name} must be an integer >= {minimum}, got {value!r}")
    return value  # type: ignore[return-value]


def check_output(fn: str, out: object, n: int, h: int, w: int) -> Tensor:
    """Check that the network mapped an ``n×C×h'×w'`` batch to ``n×C'×h×w``."""
    if not isinstance(out, Tensor) or out.dim() != 4 or out.shape[0] != n or tuple(out.shape[-2:]) != (h, w):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{fn}: expected network output of shape ({n}, C, {h}, {w}), got {got}")
    return out


def replicate_pad(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """Replicate-pad ``x`` at the bottom by ``pad_h`` and on the right by ``pad_w`` rows/cols.

    Works for any input size, 1×1 included (unlike reflect padding), and for
    pads larger than the input.
    """
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def round_up(value: int, multiple: int) -> int:
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
    hp, wp = round_up(h, multiple), round_up(w, multiple)
    out = network(replicate_pad(x, hp - h, wp - w))
    if scale is None:
        scale = _infer_scale(fn, out, n, hp, wp)
    else:
        out = check_output(fn, out, n, scale * hp, scale * wp)
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
    check_input("pad_forward", x)
    multiple = check_int("pad_forward", "multiple", multiple, 1)
    scale = check_int("pad_forward", "scale", scale, 1)
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
    if not is_int(padding) or padding <= 0 or padding % ACS_MULTIPLE:  # type: ignore[operator]
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
    check_input("acs_forward", x)
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
    patches = torch.cat([x[:, :, r : r + ph, c : c + pw] for r, c in zip(rows, cols, strict=False)], dim=0)
    out = network(patches)
    s = _infer_scale("acs_forward", out, 4 * n, ph, pw)

    result = out.new_empty((n, out.shape[1], s * h, s * w))
    for i, (r, c, (r0, r1), (c0, c1)) in enumerate(zip(rows, cols, own_rows, own_cols, strict=False)):
        result[:, :, s * r0 : s * r1, s * c0 : s * c1] = out[
            i * n : (i + 1) * n, :, s * (r0 - r) : s * (r1 - r), s * (c0 - c) : s * (c1 - c)
        ]
    return result
