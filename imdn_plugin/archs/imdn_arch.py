"""IMDN and IMDN_AS networks (pure PyTorch, no BasicSR import).

Hui, Gao, Yang, Wang: "Lightweight Image Super-Resolution with Information
Multi-distillation Network", ACM MM 2019 (arXiv:1909.11856).  Parameter and
module names follow the authors' released checkpoints (``fea_conv``,
``IMDB1``..``IMDBn``, ``c``, ``LR_conv``, ``upsampler``) so that those files load
with ``strict=True`` once their ``module.`` prefix is removed.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .spec import ArchSpec, conv_weight, split_upsampler

__all__ = ["CCALayer", "DistillationBlock", "IMDB", "IMDN", "IMDN_AS", "detect"]

#: Negative slope of every LeakyReLU in the paper's code.
LRELU_SLOPE = 0.05

#: Floating dtypes whose CCA statistics are computed in fp32 (see :meth:`CCALayer.statistics`).
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _conv(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=True)


class CCALayer(nn.Module):
    """Contrast-aware channel attention (paper §3.2, Eq. 5, Fig. 3).

    ``z_c = std(x_c) + mean(x_c)`` per channel, then 1×1 conv (C → C/r), ReLU,
    1×1 conv (C/r → C), sigmoid; the result rescales ``x`` channel-wise.

    Args:
        num_feat: Number of channels ``C``.
        reduction: Channel reduction ratio ``r`` (paper: 16).
    """

    def __init__(self, num_feat: int = 64, reduction: int = 16) -> None:
        super().__init__()
        if num_feat < reduction or num_feat % reduction:
            raise ValueError(f"CCALayer: num_feat={num_feat} must be a positive multiple of reduction={reduction}")
        self.conv_du = nn.Sequential(
            nn.Conv2d(num_feat, num_feat // reduction, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // reduction, num_feat, 1, bias=True),
            nn.Sigmoid(),
        )

    def gate(self, mean: Tensor, std: Tensor) -> Tensor:
        """Channel weights from the per-channel statistics (``N×C×1×1`` each)."""
        return self.conv_du(std + mean)

    @staticmethod
    def statistics(x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-channel ``(mean, std)`` over H×W of Eq. 5 (population std), ``N×C×1×1`` each.

        fp16 / bf16 maps are reduced in fp32 and the results cast back: a sum
        over a 300×300 map of values near 1 exceeds fp16's 65504, and bf16
        accumulates with 8 bits of mantissa.  The upcast is part of the traced
        graph, so an exported fp16 ONNX model reduces in fp32 too, whatever the
        runtime's accumulator.  fp32 / fp64 maps take the unchanged path.
        """
        if x.dtype in _LOW_PRECISION:
            var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=0)
            return mean.to(x.dtype), var.sqrt().to(x.dtype)
        # Population variance (correction=0) as in the paper; one pass for both.
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        return mean, var.sqrt()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(*self.statistics(x))


class DistillationBlock(nn.Module):
    """The progressive refinement of an IMDB without its attention (paper §3.1, Eqs. 1–4, Fig. 2).

    Three times a 3×3 conv + LeakyReLU whose output is split into ``distilled``
    kept channels and ``remaining`` channels that are refined further; a last
    3×3 conv produces ``distilled`` channels.  The four distilled parts are
    concatenated, fused by a 1×1 conv and added to the block input.  The
    authors' real-time release (``IMDN_RTC``) uses it as it is; :class:`IMDB`
    adds the contrast-aware channel attention before the fusion.

    Args:
        num_feat: Block width (paper: 64).
        distillation_rate: Fraction of channels kept at each step (paper: 0.25,
            i.e. 16 kept / 48 refined).
    """

    def __init__(self, num_feat: int = 64, distillation_rate: float = 0.25) -> None:
        super().__init__()
        self.distilled = int(num_feat * distillation_rate)
        self.remaining = num_feat - self.distilled
        if self.distilled < 1 or self.remaining < 1:
            raise ValueError(
                f"{type(self).__name__}: num_feat={num_feat} with distillation_rate={distillation_rate} "
                "leaves no channels to keep or refine"
            )
        self.c1 = _conv(num_feat, num_feat, 3)
        self.c2 = _conv(self.remaining, num_feat, 3)
        self.c3 = _conv(self.remaining, num_feat, 3)
        self.c4 = _conv(self.remaining, self.distilled, 3)
        self.act = nn.LeakyReLU(LRELU_SLOPE, inplace=True)
        self.c5 = _conv(self.distilled * 4, num_feat, 1)

    def distill(self, x: Tensor) -> Tensor:
        """Progressive refinement (Eqs. 1–4): the concatenated distilled features."""
        d = self.distilled
        out1 = self.act(self.c1(x))
        out2 = self.act(self.c2(out1[:, d:]))
        out3 = self.act(self.c3(out2[:, d:]))
        out4 = self.c4(out3[:, d:])
        return torch.cat((out1[:, :d], out2[:, :d], out3[:, :d], out4), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.c5(self.distill(x)) + x


class IMDB(DistillationBlock):
    """Information multi-distillation block (paper §3.1–3.2, Fig. 2): :class:`DistillationBlock`
    with the distilled features weighted by :class:`CCALayer` (Eq. 5) before the 1×1 fusion."""

    def __init__(self, num_feat: int = 64, distillation_rate: float = 0.25) -> None:
        super().__init__(num_feat, distillation_rate)
        self.cca = CCALayer(self.distilled * 4)

    def fuse(self, x: Tensor, distilled: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """CCA with given statistics, 1×1 fusion and the block residual."""
        return self.c5(distilled * self.cca.gate(mean, std)) + x

    def forward(self, x: Tensor) -> Tensor:
        return self.c5(self.cca(self.distill(x))) + x


class _IMDNBody(nn.Module):
    """Shared trunk of IMDN and IMDN_AS after the feature extraction."""

    #: Output size / input size.
    scale: int = 1
    #: Input sides must be multiples of this.
    size_multiple: int = 1
    #: Input pixels per feature-map pixel inside the trunk.
    feature_stride: int = 1
    #: ``num_feat`` must be a multiple of this: each IMDB distils ``num_feat / 4``
    #: channels four times and CCA reduces the ``num_feat`` distilled ones by 16.
    num_feat_multiple: int = 16

    def __init__(self, num_in_ch: int, num_out_ch: int, num_feat: int, num_block: int, upscale: int) -> None:
        super().__init__()
        if num_block < 1:
            raise ValueError(f"{type(self).__name__}: num_block must be >= 1, got {num_block}")
        m = self.num_feat_multiple
        if num_feat < m or num_feat % m:
            raise ValueError(f"{type(self).__name__}: num_feat must be a positive multiple of {m}, got {num_feat}")
        self.num_block = num_block
        for i in range(1, num_block + 1):
            # Named IMDB1..IMDBn as in the authors' checkpoints.
            self.add_module(f"IMDB{i}", IMDB(num_feat))
        # Intermediate information collection: 1x1 conv over all block outputs.
        self.c = nn.Sequential(_conv(num_feat * num_block, num_feat, 1), nn.LeakyReLU(LRELU_SLOPE, inplace=True))
        self.LR_conv = _conv(num_feat, num_feat, 3)
        self.upsampler = nn.Sequential(_conv(num_feat, num_out_ch * upscale**2, 3), nn.PixelShuffle(upscale))

    def blocks(self) -> list[IMDB]:
        return [getattr(self, f"IMDB{i}") for i in range(1, self.num_block + 1)]

    def _trunk(self, fea: Tensor) -> Tensor:
        outs = []
        h = fea
        for block in self.blocks():
            h = block(h)
            outs.append(h)
        return self.tail(fea, outs)

    def tail(self, fea: Tensor, block_outputs: list[Tensor]) -> Tensor:
        """Information collection (1×1 conv over all block outputs), global residual, upsampler."""
        body = self.c(torch.cat(block_outputs, dim=1))
        return self.upsampler(self.LR_conv(body) + fea)


class IMDN(_IMDNBody):
    """Information multi-distillation network (paper §3, Fig. 2, Table 1).

    3×3 feature conv → ``num_block`` IMDBs → 1×1 conv over the concatenated block
    outputs + LeakyReLU → 3×3 conv → global residual → 3×3 conv to
    ``num_out_ch·upscale²`` channels + pixel shuffle.

    Args:
        num_in_ch: Input channels.
        num_out_ch: Output channels.
        num_feat: Feature width (paper: 64).
        num_block: Number of IMDBs (paper: 6).
        upscale: Integer scale factor >= 2 (paper: 2, 3, 4).
    """

    def __init__(
        self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 6, upscale: int = 4
    ) -> None:
        if not isinstance(upscale, int) or isinstance(upscale, bool) or upscale < 2:
            raise ValueError(f"IMDN: upscale must be an integer >= 2, got {upscale!r}")
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, upscale)
        self.upscale = self.scale = upscale
        self.fea_conv = _conv(num_in_ch, num_feat, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self._trunk(self.fea_conv(x))


class IMDN_AS(_IMDNBody):
    """IMDN for arbitrary scale / real images (paper §3.3, Fig. 5).

    Two stride-2 3×3 convs (LeakyReLU between) shrink the input by 4, the IMDN
    trunk follows, and a ×4 pixel-shuffle restores the size: output size equals
    input size.  The input is expected to be already upscaled to the target
    size (bicubic), or a same-size real LR image.  Input sides must be
    divisible by 4; use :func:`imdn_plugin.inference.acs_forward` for others.

    Args:
        num_in_ch: Input channels.
        num_out_ch: Output channels.
        num_feat: Feature width (paper: 64).
        num_block: Number of IMDBs (paper: 6).
    """

    scale = 1
    size_multiple = 4
    feature_stride = 4

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 6) -> None:
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, upscale=4)
        self.fea_conv = nn.Sequential(
            _conv(num_in_ch, num_feat, 3, stride=2),
            nn.LeakyReLU(LRELU_SLOPE, inplace=True),
            _conv(num_feat, num_feat, 3, stride=2),
        )

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            raise ValueError(
                f"IMDN_AS: input size {h}x{w} is not divisible by 4; pad it or use "
                "imdn_plugin.inference.acs_forward (the paper's adaptive cropping)"
            )
        return self._trunk(self.fea_conv(x))


def detect(state: Mapping[str, Any]) -> ArchSpec | None:
    """IMDN / IMDN_AS and their sizes from a state dict (no ``module.`` prefix), else None.

    IMDN has one ``fea_conv.weight``; IMDN_AS two convs ``fea_conv.0`` / ``fea_conv.2``.
    Both need the blocks ``IMDB1``.. with CCA and the upsampler.
    """
    if "fea_conv.weight" in state:
        arch, first = "IMDN", conv_weight(state, "fea_conv.weight")
    elif "fea_conv.0.weight" in state:
        arch, first = "IMDN_AS", conv_weight(state, "fea_conv.0.weight")
    else:
        return None
    up = conv_weight(state, "upsampler.0.weight")
    if up is None or first is None or "IMDB1.cca.conv_du.0.weight" not in state:
        return None
    num_feat, num_in_ch = int(first.shape[0]), int(first.shape[1])
    num_block = len({m.group(1) for k in state if (m := re.match(r"IMDB(\d+)\.c1\.weight$", k))})
    if num_block < 1:
        return None
    up_ch = int(up.shape[0])
    if arch == "IMDN_AS":
        num_out_ch, upscale = up_ch // 16, 4
    else:
        num_out_ch, upscale = split_upsampler(up_ch, num_in_ch)
    return ArchSpec(arch, num_in_ch, num_out_ch, num_feat, num_block, upscale)
