"""Tiled inference with whole-image CCA statistics (IMDN / IMDN_AS only).

Plain tiling (:func:`.tiling.tiled_forward`) lets each tile's contrast-aware
channel attention (CCA, paper §3.2, Eq. 5) see only that tile, so the result
drifts from a whole-image pass (about 0.05–0.13 dB on a 1024² IMDN_AS image).
Here each block's CCA gets the mean and standard deviation of its input over
the *whole* image, gathered tile by tile: pass ``k`` runs the tiles up to
block ``k`` (earlier blocks already use their global statistics) and sums the
block's distilled features over each tile's core; a last pass produces the
output.  Memory stays that of one batch of tiles; compute is about
``(num_block + 1) / 2 + 1`` times a plain tiled pass.  The result equals a
whole-image forward up to float rounding and the receptive field that
``overlap`` cuts off.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Optional, Protocol

import torch
from torch import Tensor
from tqdm import tqdm

from ..archs import IMDNBase
from .cropping import replicate_pad
from .tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    DEFAULT_TILE_BATCH,
    Span,
    axis_spans,
    check_tiling_args,
    output_tensor,
    tile_geometry,
    write_region,
)

logger = logging.getLogger(__name__)


class Stages(Protocol):
    """The stages of an IMDN forward, by block index (see :class:`ModuleStages`)."""

    def fea_conv(self, x: Tensor) -> Tensor: ...
    def distill(self, j: int, x: Tensor) -> Tensor: ...
    def fuse(self, j: int, x: Tensor, distilled: Tensor, mean: Tensor, std: Tensor) -> Tensor: ...
    def tail(self, fea: Tensor, block_outputs: list[Tensor]) -> Tensor: ...
    def blocks(self) -> list[int]: ...


class ModuleStages:
    """:class:`Stages` of an IMDN / IMDN_AS module, run eagerly through its own submodules."""

    def __init__(self, network: IMDNBase) -> None:
        self.network = network
        self._blocks = network.blocks()

    def fea_conv(self, x: Tensor) -> Tensor:
        return self.network.fea_conv(x)

    def distill(self, j: int, x: Tensor) -> Tensor:
        return self._blocks[j].distill(x)

    def fuse(self, j: int, x: Tensor, distilled: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        return self._blocks[j].fuse(x, distilled, mean, std)

    def tail(self, fea: Tensor, block_outputs: list[Tensor]) -> Tensor:
        return self.network.tail(fea, block_outputs)

    def blocks(self) -> list[int]:
        return list(range(len(self._blocks)))


def _feature_core(span: Span, stride: int) -> tuple[int, int]:
    """Feature rows owned by a tile: feature ``f`` covers input ``[stride·f, stride·f + stride)``
    and belongs to the tile whose core holds input pixel ``stride·f`` (ceil on both ends, so the
    tiles' feature cores partition the feature map of the padded image)."""
    lo = -(-(span.core0 - span.start) // stride)
    hi = -(-(span.core1 - span.start) // stride)
    return lo, hi


def global_tiled_forward(
    network: IMDNBase,
    x: Tensor,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch: int = DEFAULT_TILE_BATCH,
    progress: bool = False,
    stages: Optional[Stages] = None,
    out: Optional[Tensor] = None,
) -> Tensor:
    """Like :func:`.tiling.tiled_forward`, with every CCA using whole-image statistics.

    Args:
        network: An :class:`~imdn_plugin.archs.IMDN` or :class:`~imdn_plugin.archs.IMDN_AS`.
        x: ``N×C×H×W`` input, any ``H, W >= 1`` (IMDN_AS: replicate-padded to multiples of 4
            as :func:`.cropping.pad_forward` does).
        tile, overlap, batch, progress: As for :func:`.tiling.tiled_forward`.
        stages: How to run the network's stages; default :class:`ModuleStages` (the module's
            own submodules).  :func:`.predictor.build_predictor` passes the fused CPU plan of
            :func:`.fast.make_fast_forward` when there is one (same results, ~2x faster).
        out: Optional output tensor to fill, as for :func:`.tiling.tiled_forward`.

    Returns:
        ``out``, or a new ``N×C'×(s·H)×(s·W)`` tensor on ``x``'s device.
    """
    if not isinstance(network, IMDNBase):
        raise TypeError(f"global_tiled_forward: needs an IMDN or IMDN_AS network, got {type(network).__name__}")
    scale, multiple, stride = network.scale, network.size_multiple, network.feature_stride
    check_tiling_args(scale, tile, overlap, batch, multiple)
    tile, overlap = tile_geometry(tile, overlap, multiple)
    n, _, h, w = x.shape
    th, rows = axis_spans(h, tile, overlap, multiple)
    tw, cols = axis_spans(w, tile, overlap, multiple)
    if stages is None:
        stages = ModuleStages(network)
    blocks = stages.blocks()
    windows = [(r, c) for r in rows for c in cols]
    result: Tensor | None = None
    with torch.no_grad(), tqdm(
        total=n * (len(blocks) + 1) * len(windows), desc="tiles (global CCA)", unit="tile", disable=not progress, leave=False
    ) as bar:
        for i in range(n):
            image = x[i : i + 1]

            def batches() -> Iterator[tuple[list[tuple[Span, Span]], Tensor]]:
                for k in range(0, len(windows), batch):
                    group = windows[k : k + batch]
                    crops = []
                    for r, c in group:
                        patch = image[:, :, r.start : r.start + th, c.start : c.start + tw]
                        crops.append(replicate_pad(patch, th - patch.shape[-2], tw - patch.shape[-1]))
                    yield group, torch.cat(crops, dim=0)

            stats: list[tuple[Tensor, Tensor]] = []
            for k in range(len(blocks)):  # pass k: statistics of block k's distilled features
                total = count = total_sq = None
                for group, inp in batches():
                    hcur = stages.fea_conv(inp)
                    for j in range(k):
                        hcur = stages.fuse(j, hcur, stages.distill(j, hcur), *stats[j])
                    feat = stages.distill(k, hcur)
                    del hcur
                    for t, (r, c) in enumerate(group):
                        r0, r1 = _feature_core(r, stride)
                        c0, c1 = _feature_core(c, stride)
                        core = feat[t, :, r0:r1, c0:c1].double()
                        s1, s2 = core.sum(dim=(1, 2)), core.square_().sum(dim=(1, 2))
                        total = s1 if total is None else total + s1
                        total_sq = s2 if total_sq is None else total_sq + s2
                        count = core[0].numel() + (count or 0)
                    bar.update(len(group))
                mean = total / count
                var = (total_sq / count - mean * mean).clamp_min(0)
                shape = (1, -1, 1, 1)
                stats.append((mean.view(shape).to(x.dtype), var.sqrt().view(shape).to(x.dtype)))
            for group, inp in batches():  # last pass: the output, every CCA with global statistics
                fea = hcur = stages.fea_conv(inp)
                outs = []
                for j in blocks:
                    hcur = stages.fuse(j, hcur, stages.distill(j, hcur), *stats[j])
                    outs.append(hcur)
                y = stages.tail(fea, outs)
                del fea, hcur, outs
                if result is None:
                    result = output_tensor(out, (n, y.shape[1], scale * h, scale * w), y)
                for t, (r, c) in enumerate(group):
                    write_region(
                        result[i, :, scale * r.core0 : scale * r.core1, scale * c.core0 : scale * c.core1],
                        y[t, :, scale * (r.core0 - r.start) : scale * (r.core1 - r.start),
                          scale * (c.core0 - c.start) : scale * (c.core1 - c.start)],
                    )  # fmt: skip
                del y
                bar.update(len(group))
    assert result is not None
    return result
