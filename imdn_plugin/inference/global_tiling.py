"""Tiled inference with whole-image CCA statistics (IMDN / IMDN_AS only).

Plain tiling (:func:`.tiling.tiled_forward`) lets each tile's contrast-aware
channel attention (CCA, paper §3.2, Eq. 5) see only that tile, so the result
drifts from a whole-image pass (about 0.05–0.13 dB on a 1024² IMDN_AS image).
Here the network is streamed through the image *stage by stage*, each stage
tile by tile, with the whole-image maps between stages kept in a
:class:`.feature_store.FeatureStores` (a temporary file on a CPU):

1. shallow features ``fea`` (tiles + the 1-feature context the first conv needs);
2. for each IMDB ``j``: its progressive refinement (Eqs. 1–4) per tile with the
   4-feature context of its four 3×3 convs, summing the distilled features for
   the whole-image mean/std; then, pointwise in row bands, CCA with those
   statistics, the 1×1 fusion and the block residual, and the block's share
   ``W_j·h_j`` of the 1×1 information-collection conv (a conv over a
   concatenation is the sum of per-part convs, so no block output is kept);
3. LeakyReLU, LR conv + global residual and upsampler per tile (2 features of context).

Every stage reads exactly the context its convolutions need and the zero padding
falls where the whole image's does, so the result equals the whole-image forward
up to float rounding, for every tile size; ``overlap`` is not needed.  Each
conv runs once (plus the ~3% of context around a 256-pixel tile): the work is
that of one whole-image pass.  Memory is that of one tile plus the input and
output; the four feature maps between stages (``4·num_feat`` floats per
trunk pixel) live in the store.
"""
from __future__ import annotations

import logging
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ..archs import IMDNBase
from .cropping import check_int, replicate_pad, round_up
from .feature_store import FeatureStore, FeatureStores
from .tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    DEFAULT_TILE_BATCH,
    check_tiling_args,
    output_tensor,
    write_region,
)

logger = logging.getLogger(__name__)

#: Feature pixels of context each stage needs: the first conv(s) (IMDN: one 3×3; IMDN_AS: two
#: stride-2 3×3, whose receptive field is within one feature on each side), an IMDB's four
#: chained 3×3 convs, and the tail's LR conv + upsampler conv.
HEAD_CONTEXT, BLOCK_CONTEXT, TAIL_CONTEXT = 1, 4, 2


class Stages(Protocol):
    """The stages of an IMDN forward, by block index (see :class:`ModuleStages`)."""

    def fea_conv(self, x: Tensor) -> Tensor: ...
    def distill(self, j: int, x: Tensor) -> Tensor: ...
    def fuse(self, j: int, x: Tensor, distilled: Tensor, mean: Tensor, std: Tensor) -> Tensor: ...
    def collect(self, j: int, h: Tensor, acc: Tensor | None) -> Tensor: ...
    def finish(self, fea: Tensor, acc: Tensor) -> Tensor: ...
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

    def collect(self, j: int, h: Tensor, acc: Tensor | None) -> Tensor:
        """``acc + W_j·h`` for the 1×1 information-collection conv (bias added with block 0)."""
        conv, nf = self.network.c[0], h.shape[1]
        part = F.conv2d(h, conv.weight[:, j * nf : (j + 1) * nf], conv.bias if acc is None else None)
        return part if acc is None else acc + part

    def finish(self, fea: Tensor, acc: Tensor) -> Tensor:
        """LeakyReLU of the collected features, LR conv + global residual, upsampler."""
        net = self.network
        return net.upsampler(net.LR_conv(net.c[1](acc)) + fea)

    def blocks(self) -> list[int]:
        return list(range(len(self._blocks)))


def _bands(size: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(a + step, size)) for a in range(0, size, step)]


def _widen(span: tuple[int, int], context: int, size: int) -> tuple[int, int]:
    """``span`` widened by ``context`` on both sides, clipped to ``[0, size)``."""
    return max(span[0] - context, 0), min(span[1] + context, size)


def _read_around(
    src: FeatureStore, r: tuple[int, int], c: tuple[int, int], context: int, device: torch.device
) -> tuple[Tensor, slice, slice]:
    """``src`` over tile ``r×c`` widened by ``context`` (clipped to the map), and the tile's place in it."""
    (r0, r1), (c0, c1) = _widen(r, context, src.shape[1]), _widen(c, context, src.shape[2])
    return src.read(r0, r1, c0, c1, device), slice(r[0] - r0, r[1] - r0), slice(c[0] - c0, c[1] - c0)


def global_tiled_forward(
    network: IMDNBase,
    x: Tensor,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch: int = DEFAULT_TILE_BATCH,
    progress: bool = False,
    stages: Stages | None = None,
    out: Tensor | None = None,
    temp_dir: str | None = None,
) -> Tensor:
    """Like :func:`.tiling.tiled_forward`, with every CCA using whole-image statistics.

    Args:
        network: An :class:`~imdn_plugin.archs.IMDN` or :class:`~imdn_plugin.archs.IMDN_AS`.
        x: ``N×C×H×W`` input, any ``H, W >= 1`` (IMDN_AS: replicate-padded to multiples of 4
            as :func:`.cropping.pad_forward` does).
        tile: Largest tile side in input pixels.
        overlap, batch: Checked as for :func:`.tiling.tiled_forward` but not needed: each stage
            reads the exact context it needs, and tiles run one per call (the tile side, not a
            batch of tiles, sets the memory).
        progress: Show a progress bar over the stage tiles.
        stages: How to run the network's stages; default :class:`ModuleStages` (the module's
            own submodules).  :func:`.predictor.build_predictor` passes the fused CPU plan of
            :func:`.fast.make_fast_forward` when there is one (same results, ~2x faster).
        out: Optional output tensor to fill, as for :func:`.tiling.tiled_forward`.
        temp_dir: Folder for the temporary feature maps (default ``$TMPDIR``).

    Returns:
        ``out``, or a new ``N×C'×(s·H)×(s·W)`` tensor on ``x``'s device.
    """
    if not isinstance(network, IMDNBase):
        raise TypeError(f"global_tiled_forward: needs an IMDN or IMDN_AS network, got {type(network).__name__}")
    scale, multiple, stride = network.scale, network.size_multiple, network.feature_stride
    check_tiling_args(scale, tile, 0, batch, multiple)  # overlap: any integer >= 0, not used
    check_int("global_tiled_forward", "overlap", overlap, 0)
    if stages is None:
        stages = ModuleStages(network)
    n, _, h, w = x.shape
    hp, wp = round_up(h, multiple), round_up(w, multiple)
    fh, fw = hp // stride, wp // stride  # trunk (feature) map size
    up = stride * scale  # output pixels per feature pixel
    ft = max(tile // stride, 1)  # tile side in features
    tiles = [(r, c) for r in _bands(fh, ft) for c in _bands(fw, ft)]
    rows = _bands(fh, max(1, ft * ft // fw))  # pointwise stages: full-width bands of about one tile's area
    blocks = stages.blocks()
    num_feat = network.LR_conv.out_channels
    result: Tensor | None = None
    total = n * (len(tiles) * (len(blocks) + 2) + len(rows) * len(blocks))
    with torch.no_grad(), FeatureStores(x.device, temp_dir) as store, tqdm(
        total=total, desc="tiles (global CCA)", unit="tile", disable=not progress, leave=False
    ) as bar:
        store.plan(4 * num_feat * fh * fw * max(x.element_size(), 4))  # fea, block output, distilled, collected
        for i in range(n):
            image = replicate_pad(x[i : i + 1], hp - h, wp - w)

            # 1. shallow features
            fea_store: FeatureStore | None = None
            for r, c in tiles:
                (r0, r1), (c0, c1) = _widen(r, HEAD_CONTEXT, fh), _widen(c, HEAD_CONTEXT, fw)
                f = stages.fea_conv(image[:, :, stride * r0 : stride * r1, stride * c0 : stride * c1])
                if fea_store is None:
                    fea_store = store.new(num_feat, fh, fw, f.dtype)
                fea_store.write(r[0], c[0], f[:, :, r[0] - r0 : r[1] - r0, c[0] - c0 : c[1] - c0])
                bar.update()
            assert fea_store is not None
            # 2. the blocks: block j reads h_{j-1} (fea for j = 0) and writes h_j into out_store
            src, out_store = fea_store, None
            dist_store = acc_store = None
            for j in blocks:
                s1 = s2 = None
                for r, c in tiles:
                    t, rs, cs = _read_around(src, r, c, BLOCK_CONTEXT, x.device)
                    d = stages.distill(j, t)[:, :, rs, cs]
                    del t
                    if dist_store is None:
                        dist_store = store.new(d.shape[1], fh, fw, d.dtype)
                    dist_store.write(r[0], c[0], d)
                    core = d.double()
                    a, b = core.sum(dim=(0, 2, 3)), core.square_().sum(dim=(0, 2, 3))
                    s1, s2 = (a, b) if s1 is None else (s1 + a, s2 + b)
                    del d, core
                    bar.update()
                assert s1 is not None and s2 is not None and dist_store is not None
                mean = s1 / (fh * fw)
                var = (s2 / (fh * fw) - mean * mean).clamp_min(0)
                mean_t = mean.view(1, -1, 1, 1).to(x.dtype)
                std_t = var.sqrt().view(1, -1, 1, 1).to(x.dtype)
                for r0, r1 in rows:
                    hb = stages.fuse(j, src.read(r0, r1, 0, fw, x.device), dist_store.read(r0, r1, 0, fw, x.device),
                                     mean_t, std_t)  # fmt: skip
                    if out_store is None:
                        out_store = store.new(num_feat, fh, fw, hb.dtype)
                    out_store.write(r0, 0, hb)
                    acc = stages.collect(j, hb, None if j == blocks[0] else acc_store.read(r0, r1, 0, fw, x.device))  # type: ignore[union-attr]
                    if acc_store is None:
                        acc_store = store.new(num_feat, fh, fw, acc.dtype)
                    acc_store.write(r0, 0, acc)
                    del hb, acc
                    bar.update()
                src = out_store  # h_j overwrote h_{j-1} (or lives beside fea) row band by row band
            assert acc_store is not None
            # 3. information collection's activation, LR conv + global residual, upsampler
            for r, c in tiles:
                a, rs, cs = _read_around(acc_store, r, c, TAIL_CONTEXT, x.device)
                f, _, _ = _read_around(fea_store, r, c, TAIL_CONTEXT, x.device)
                y = stages.finish(f, a)
                del a, f
                y = y[:, :, up * rs.start : up * rs.stop, up * cs.start : up * cs.stop]
                if result is None:
                    result = output_tensor(out, (n, y.shape[1], scale * h, scale * w), y)
                o0, o1 = up * r[0], min(up * r[1], scale * h)
                p0, p1 = up * c[0], min(up * c[1], scale * w)
                if o1 > o0 and p1 > p0:
                    write_region(result[i, :, o0:o1, p0:p1], y[0, :, : o1 - o0, : p1 - p0])
                del y
                bar.update()
            store.close()  # this image's maps: the next one gets its own (disk use of one image)
    assert result is not None
    return result
