"""IMDN_RTC and IMDN_RTE: the authors' real-time releases (pure PyTorch, no BasicSR import).

Both come from the authors' repository (Zheng222/IMDN, ``model/architecture.py``),
not from the ACM MM 2019 paper:

* ``IMDN_RTC`` — winner of the AI in RTC 2019 image SR challenge: ×2, 12
  features, 5 information multi-distillation blocks *without* contrast-aware
  channel attention (the paper's IMDB of §3.1 minus the CCA of §3.2), a 1×1
  conv and a residual over the whole trunk, then a 3×3 conv + pixel shuffle.
* ``IMDN_RTE`` — second in AI in RTE 2020: a "down-up" ×2 network. A 3×3 conv,
  ReLU and a stride-2 3×3 conv halve the size; six *six-step* distillation
  blocks (five refinement convs keep ``num_feat / 4`` channels each, ReLU, no
  biases) and a 1×1 conv follow, then a ×4 pixel shuffle gives twice the input
  size. Input sides must be even.

Parameter names follow the authors' files (``model.N.*`` for RTC; ``fea_conv``,
``block1``..``block6``, ``LR_conv``, ``upsampler`` for RTE) so that they load
with ``strict=True``.

The two releases work in different pixel ranges (RTC in [0, 1], RTE in
[0, 255]); the range and channel order a file expects are constructor
arguments (``img_range``, ``bgr``) whose defaults are those of the released
files (``docs/networks.md`` gives the measurement). The conversion happens inside
``forward``: callers always pass RGB in [0, 1] and get RGB in [0, 1] back.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .imdn_arch import DistillationBlock
from .spec import ArchSpec, conv_weight, split_upsampler

__all__ = ["IMDN_RTC", "IMDN_RTE", "RTCBlock", "RTEBlock", "detect_rtc", "detect_rte"]


def _conv(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)


class _RangeMixin(nn.Module):
    """Input/output conversion between RGB in [0, 1] and what the weights were trained on."""

    img_range: float
    bgr: bool

    def _to_net(self, x: Tensor) -> Tensor:
        if self.bgr:
            x = x.flip(1)
        return x * self.img_range if self.img_range != 1.0 else x

    def _from_net(self, y: Tensor) -> Tensor:
        if self.img_range != 1.0:
            y = y / self.img_range
        return y.flip(1) if self.bgr else y


def _check_range(name: str, img_range: float, bgr: bool, num_in_ch: int, num_out_ch: int) -> None:
    if not isinstance(img_range, (int, float)) or isinstance(img_range, bool) or not img_range > 0:
        raise ValueError(f"{name}: img_range must be a positive number, got {img_range!r}")
    if bgr and (num_in_ch != 3 or num_out_ch != 3):
        raise ValueError(f"{name}: bgr=True needs 3 input and 3 output channels, got {num_in_ch}->{num_out_ch}")


class RTCBlock(DistillationBlock):
    """IMDB without CCA (paper §3.1, Eqs. 1–4; the RTC release drops §3.2's attention): three
    3×3 conv + LeakyReLU(0.05) steps, each keeping ``num_feat / 4`` channels and refining the rest,
    a last 3×3 conv giving ``num_feat / 4`` channels, concatenation, 1×1 fusion and the block residual."""

    def __init__(self, num_feat: int = 12, distillation_rate: float = 0.25) -> None:
        super().__init__(num_feat, distillation_rate)


class _Residual(nn.Module):
    """``x + body(x)``; the body is kept as ``sub`` (the released key layout ``model.1.sub.*``)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.sub = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.sub(x)


class IMDN_RTC(_RangeMixin):
    """Ultra-light IMDN of the AI in RTC 2019 challenge (authors' release, ×2, ~20K parameters).

    3×3 feature conv → [``num_block`` :class:`RTCBlock` → 1×1 conv] with a
    residual over the bracket → 3×3 conv to ``num_out_ch·upscale²`` channels +
    pixel shuffle. No information collection over all blocks (unlike IMDN).

    Args:
        num_in_ch: Input channels.
        num_out_ch: Output channels.
        num_feat: Feature width (release: 12; a multiple of 4).
        num_block: Number of blocks (release: 5).
        upscale: Integer scale factor >= 2 (release: 2).
        img_range: Pixel range the weights work in (release: 1, i.e. [0, 1]);
            inputs in [0, 1] are multiplied by it and outputs divided by it.
        bgr: Whether the weights work in BGR order (release: False; see
            ``docs/networks.md``); RGB in and out either way.
    """

    size_multiple = 1
    feature_stride = 1

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 12,
        num_block: int = 5,
        upscale: int = 2,
        img_range: float = 1.0,
        bgr: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(upscale, int) or isinstance(upscale, bool) or upscale < 2:
            raise ValueError(f"IMDN_RTC: upscale must be an integer >= 2, got {upscale!r}")
        if num_block < 1:
            raise ValueError(f"IMDN_RTC: num_block must be >= 1, got {num_block}")
        if num_feat < 4 or num_feat % 4:
            raise ValueError(f"IMDN_RTC: num_feat must be a positive multiple of 4, got {num_feat}")
        _check_range("IMDN_RTC", img_range, bgr, num_in_ch, num_out_ch)
        self.upscale = self.scale = upscale
        self.num_block = num_block
        self.img_range, self.bgr = float(img_range), bool(bgr)
        blocks = [RTCBlock(num_feat) for _ in range(num_block)]
        self.model = nn.Sequential(
            _conv(num_in_ch, num_feat, 3),
            _Residual(nn.Sequential(*blocks, _conv(num_feat, num_feat, 1))),
            _conv(num_feat, num_out_ch * upscale**2, 3),
            nn.PixelShuffle(upscale),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self._from_net(self.model(self._to_net(x)))


class RTEBlock(nn.Module):
    """Six-step distillation block of the RTE release (an IMDB with two more steps, ReLU, no biases).

    With ``d = num_feat / 4``: 3×3 convs ``C→C``, ``C-d→C``, ``C-d→C`` each keep
    ``d`` channels and pass ``C-d`` on; a ``C-d→C-d`` conv keeps ``d`` and
    passes ``C-2d``; a ``C-2d→C-2d`` conv keeps ``d`` and passes ``C-3d = d``;
    a last ``d→d`` conv. Every conv is followed by ReLU. The six ``d``-channel
    parts are concatenated, fused by a 1×1 conv and added to the input.
    """

    def __init__(self, num_feat: int = 20) -> None:
        super().__init__()
        if num_feat < 4 or num_feat % 4:
            raise ValueError(f"RTEBlock: num_feat must be a positive multiple of 4, got {num_feat}")
        d = self.distilled = num_feat // 4
        r = self.remaining = num_feat - d
        self.c1 = _conv(num_feat, num_feat, 3, bias=False)
        self.c2 = _conv(r, num_feat, 3, bias=False)
        self.c3 = _conv(r, num_feat, 3, bias=False)
        self.c4 = _conv(r, r, 3, bias=False)
        self.c5 = _conv(r - d, r - d, 3, bias=False)
        self.c6 = _conv(r - 2 * d, r - 2 * d, 3, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.c7 = _conv(d * 6, num_feat, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        d = self.distilled
        kept = []
        h = x
        for conv in (self.c1, self.c2, self.c3, self.c4, self.c5):
            h = self.act(conv(h))
            kept.append(h[:, :d])
            h = h[:, d:]
        kept.append(self.act(self.c6(h)))
        return self.c7(torch.cat(kept, dim=1)) + x


class IMDN_RTE(_RangeMixin):
    """Down-up IMDN of the AI in RTE 2020 challenge (authors' release, ×2, ~90K parameters).

    3×3 conv + ReLU → stride-2 3×3 conv (no bias) → ``num_block``
    :class:`RTEBlock` → 1×1 conv (no bias) + residual from the stride-2 conv →
    3×3 conv to ``num_out_ch·(2·upscale)²`` channels + pixel shuffle by
    ``2·upscale``. Output size = ``upscale`` × input size; input sides must be
    even (the stride-2 front).

    Args:
        num_in_ch: Input channels.
        num_out_ch: Output channels.
        num_feat: Feature width (release: 20; a multiple of 4).
        num_block: Number of blocks (release: 6).
        upscale: Integer scale factor >= 1 (release: 2).
        img_range: Pixel range the weights work in (release: 255, i.e. [0, 255]).
        bgr: Whether the weights work in BGR order (release: False).
    """

    size_multiple = 2
    feature_stride = 2

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 20,
        num_block: int = 6,
        upscale: int = 2,
        img_range: float = 255.0,
        bgr: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(upscale, int) or isinstance(upscale, bool) or upscale < 1:
            raise ValueError(f"IMDN_RTE: upscale must be an integer >= 1, got {upscale!r}")
        if num_block < 1:
            raise ValueError(f"IMDN_RTE: num_block must be >= 1, got {num_block}")
        _check_range("IMDN_RTE", img_range, bgr, num_in_ch, num_out_ch)
        self.upscale = self.scale = upscale
        self.num_block = num_block
        self.img_range, self.bgr = float(img_range), bool(bgr)
        self.fea_conv = nn.Sequential(
            _conv(num_in_ch, num_feat, 3), nn.ReLU(inplace=True), _conv(num_feat, num_feat, 3, stride=2, bias=False)
        )
        for i in range(1, num_block + 1):
            self.add_module(f"block{i}", RTEBlock(num_feat))
        self.LR_conv = _conv(num_feat, num_feat, 1, bias=False)
        shuffle = 2 * upscale
        self.upsampler = nn.Sequential(_conv(num_feat, num_out_ch * shuffle**2, 3), nn.PixelShuffle(shuffle))

    def blocks(self) -> list[RTEBlock]:
        return [getattr(self, f"block{i}") for i in range(1, self.num_block + 1)]

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            raise ValueError(
                f"IMDN_RTE: input size {h}x{w} is not even (stride-2 front); pad it to even sides "
                "(basicsr infer and the predictor do) or crop it"
            )
        fea = self.fea_conv(self._to_net(x))
        out = fea
        for block in self.blocks():
            out = block(out)
        return self._from_net(self.upsampler(self.LR_conv(out) + fea))


def _count(state: Mapping[str, Any], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.fullmatch(pattern, k))})


def detect_rtc(state: Mapping[str, Any]) -> ArchSpec | None:
    """IMDN_RTC and its sizes from a state dict (keys ``model.0``, ``model.1.sub.N.c1``..), else None."""
    first, up = conv_weight(state, "model.0.weight"), conv_weight(state, "model.2.weight")
    if first is None or up is None or conv_weight(state, "model.1.sub.0.c5.weight") is None:
        return None
    num_block = _count(state, r"model\.1\.sub\.(\d+)\.c1\.weight")
    if num_block < 1 or conv_weight(state, f"model.1.sub.{num_block}.weight") is None:
        return None  # the 1x1 conv after the blocks
    num_feat, num_in_ch = int(first.shape[0]), int(first.shape[1])
    num_out_ch, upscale = split_upsampler(int(up.shape[0]), num_in_ch)
    return ArchSpec("IMDN_RTC", num_in_ch, num_out_ch, num_feat, num_block, upscale)


def detect_rte(state: Mapping[str, Any]) -> ArchSpec | None:
    """IMDN_RTE and its sizes from a state dict (``fea_conv.0/2``, ``block1``.. with ``c7``), else None."""
    first, up = conv_weight(state, "fea_conv.0.weight"), conv_weight(state, "upsampler.0.weight")
    if first is None or up is None or conv_weight(state, "block1.c7.weight") is None:
        return None
    num_block = _count(state, r"block(\d+)\.c1\.weight")
    num_feat, num_in_ch = int(first.shape[0]), int(first.shape[1])
    num_out_ch, shuffle = split_upsampler(int(up.shape[0]), num_in_ch)
    if num_block < 1 or shuffle < 2 or shuffle % 2:
        return None  # the pixel shuffle undoes the stride-2 front: an even factor
    return ArchSpec("IMDN_RTE", num_in_ch, num_out_ch, num_feat, num_block, shuffle // 2)
