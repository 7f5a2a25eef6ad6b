"""The fused CPU plan of IMDN / IMDN_AS: oneDNN convolutions, fp32, channels-last.

:class:`FusedIMDNPlan` runs an unmodified :class:`~imdn_plugin.archs.IMDN` or
:class:`~imdn_plugin.archs.IMDN_AS` with the network's own weights through
oneDNN convolutions (``torch.ops.mkldnn._convolution_pointwise``, the kernels
inductor's freezing pass emits) with the LeakyReLU and the residual additions
fused in, and removes the copies around them:

* each progressive-refinement conv (paper Eqs. 1–4) runs as two convs
  (distilled / remaining output channels), so no channel slice is copied;
* the CCA statistic (Eq. 5, ``std + mean``) is a two-pass mean / variance over
  an ``(N, H·W, C)`` view; the CCA channel weights are folded into the 1×1
  fusion conv;
* the 1×1 conv over the six block outputs is accumulated block by block
  (no 6×64-channel concatenation); buffers are reused within a call.

:func:`self_check` compares a plan with the module's own forward on small
random inputs; :func:`.fast.make_fast_forward` runs it before using a plan.
Measurements: README, "Measurement history".
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..archs.imdn_arch import IMDB, IMDN, IMDN_AS, CCALayer

__all__ = ["FusedIMDNPlan", "fusable", "mkldnn_fusion_available", "self_check"]

#: Tolerance of :func:`self_check` against the network's own forward.
SELF_CHECK_ATOL = 1e-4


@contextmanager
def _one_thread() -> Iterator[None]:
    """One intra-op thread for the block (tiny self-check inputs gain nothing from more)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_CL = torch.channels_last


def mkldnn_fusion_available() -> bool:
    """Whether the oneDNN fused-convolution ops this plan needs exist in this PyTorch."""
    try:
        return bool(
            torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._convolution_pointwise.default is not None
            and torch.ops.mkldnn._convolution_pointwise.binary is not None
            and torch.ops.mkldnn._convolution_pointwise_.binary is not None
        )
    except (AttributeError, RuntimeError):
        return False


def _plain_conv(m: object) -> bool:
    return (
        type(m) is nn.Conv2d
        and m.bias is not None
        and m.groups == 1
        and m.padding_mode == "zeros"
        and isinstance(m.padding, tuple)
        and tuple(m.dilation) == (1, 1)
    )


def _is_lrelu(m: object) -> bool:
    return type(m) is nn.LeakyReLU


def fusable(network: nn.Module) -> bool:
    """Whether ``network`` is an unmodified IMDN / IMDN_AS the fused plan reproduces exactly."""
    if type(network).forward not in (IMDN.forward, IMDN_AS.forward):
        return False
    if any(m._forward_hooks or m._forward_pre_hooks for m in network.modules()):
        return False  # the plan would bypass the user's hooks
    try:
        fea = network.fea_conv
        if isinstance(network, IMDN_AS):
            if not (
                isinstance(fea, nn.Sequential) and len(fea) == 3 and _plain_conv(fea[0]) and _is_lrelu(fea[1])
                and _plain_conv(fea[2])
            ):
                return False
        elif not _plain_conv(fea):
            return False
        for block in network.blocks():
            if type(block).forward is not IMDB.forward or type(block.cca).forward is not CCALayer.forward:
                return False
            du = block.cca.conv_du
            if not (
                all(_plain_conv(c) for c in (block.c1, block.c2, block.c3, block.c4, block.c5, du[0], du[2]))
                and _is_lrelu(block.act) and len(du) == 4 and type(du[1]) is nn.ReLU and type(du[3]) is nn.Sigmoid
                and block.c5.kernel_size == (1, 1) and du[0].kernel_size == (1, 1) and du[2].kernel_size == (1, 1)
            ):
                return False
        c, up = network.c, network.upsampler
        return (
            len(c) == 2 and _plain_conv(c[0]) and c[0].kernel_size == (1, 1) and _is_lrelu(c[1])
            and _plain_conv(network.LR_conv) and len(up) == 2 and _plain_conv(up[0])
            and type(up[1]) is nn.PixelShuffle
        )
    except (AttributeError, TypeError, IndexError):
        return False


def _conv(
    x: Tensor, conv: nn.Conv2d, slope: Optional[float] = None, out: Optional[slice] = None
) -> Tensor:
    """oneDNN convolution (only output channels ``out`` if given), optionally with a fused LeakyReLU."""
    w, b = conv.weight, conv.bias
    if out is not None:
        w, b = w[out], b[out]
    attr, scalars, algorithm = ("none", [], "") if slope is None else ("leaky_relu", [slope], "")
    return torch.ops.mkldnn._convolution_pointwise(
        x, w, b, conv.padding, conv.stride, conv.dilation, conv.groups, attr, scalars, algorithm
    )


def _conv_add(x: Tensor, other: Tensor, conv: nn.Conv2d, weight: Optional[Tensor] = None) -> Tensor:
    """``conv(x) + other`` with the addition fused into the oneDNN convolution."""
    w = conv.weight if weight is None else weight
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, other, w, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups, "add", 1.0, None, [], None
    )


def _channel_std_plus_mean(f: Tensor, scratch: Tensor) -> Tensor:
    """CCA statistic ``std + mean`` per channel (population variance), shape ``(N, C)``.

    Two-pass (mean, then mean of squared deviations) over an ``(N, H·W, C)``
    view of the channels-last map ``f``: as exact as ``torch.var_mean`` and
    several times faster on CPU, where the latter's spatial reduction is a
    scalar Welford loop.  ``scratch`` (same shape as ``f``, channels-last) holds
    the squared deviations.
    """
    n, c, h, w = f.shape
    v = f.permute(0, 2, 3, 1).reshape(n, h * w, c)
    dev = scratch.permute(0, 2, 3, 1).view(n, h * w, c)
    mean = v.mean(dim=1, keepdim=True)
    torch.sub(v, mean, out=dev)
    dev.mul_(dev)
    return dev.mean(dim=1).sqrt_().add_(mean.squeeze(1))


def _pixel_shuffle_to_nchw(y: Tensor, r: int) -> Tensor:
    """``F.pixel_shuffle(y, r).contiguous()`` for a channels-last ``y`` in one copy."""
    n, c, h, w = y.shape
    oc = c // (r * r)
    nhwc = y.permute(0, 2, 3, 1).reshape(n, h, w, oc, r, r)
    return nhwc.permute(0, 3, 1, 4, 2, 5).reshape(n, oc, h * r, w * r)


class FusedIMDNPlan:
    """IMDN / IMDN_AS forward on CPU with oneDNN fused convolutions (fp32, channels-last).

    Reads the weights from ``network``'s modules at every call (so it follows
    the module it is given; :func:`.fast.make_fast_forward` gives it a private
    frozen copy).  Numerically it differs from the module's forward
    only by float rounding (different summation orders), ~1e-6 on ``[0, 1]``
    images with the authors' weights.

    Besides the whole forward (``plan(x)``) it offers the network's stages with
    the module API that :func:`.global_tiling.global_tiled_forward` drives
    (``fea_conv``, ``distill``, ``fuse``, ``tail``), so tiles with whole-image
    CCA statistics run on the same kernels.
    """

    def __init__(self, network: nn.Module) -> None:
        self.net = network
        self.is_as = isinstance(network, IMDN_AS)
        self._blocks = network.blocks()
        self.num_feat = network.LR_conv.out_channels

    # -- stages ------------------------------------------------------------------------

    def fea_conv(self, x: Tensor) -> Tensor:
        """Shallow features (channels-last)."""
        x = x.contiguous(memory_format=_CL)
        if self.is_as:
            s1, act, s2 = self.net.fea_conv
            return _conv(_conv(x, s1, act.negative_slope), s2)
        return _conv(x, self.net.fea_conv)

    def distill(self, j: int, x: Tensor, out: Optional[Tensor] = None) -> Tensor:
        """Block ``j``'s progressive refinement (Eqs. 1–4): the concatenated distilled features."""
        block = self._blocks[j]
        d, slope = block.distilled, block.act.negative_slope
        # Each progressive-refinement conv runs as two: the distilled (kept) channels and the
        # remaining ones, so that no channel slice of a channels-last map has to be copied
        # before the next conv or gathered by the concatenation (same FLOPs, ~10% faster).
        keep, rest = slice(0, d), slice(d, None)
        parts = []
        h = x.contiguous(memory_format=_CL)
        for conv in (block.c1, block.c2, block.c3):
            parts.append(_conv(h, conv, slope, keep))
            h = _conv(h, conv, slope, rest)
        parts.append(_conv(h, block.c4))
        del h
        return torch.cat(parts, dim=1, out=out) if out is not None else torch.cat(parts, dim=1)

    def gate(self, j: int, z: Tensor) -> Tensor:
        """CCA channel weights ``sigmoid(W2 relu(W1 z + b1) + b2)`` from ``z = std + mean``, ``(N, C)``."""
        du1, _, du2, _ = self._blocks[j].cca.conv_du
        return torch.sigmoid(
            F.linear(torch.relu(F.linear(z, du1.weight.flatten(1), du1.bias)), du2.weight.flatten(1), du2.bias)
        )

    def fuse_gated(self, j: int, x: Tensor, f: Tensor, s: Tensor, scratch: Optional[Tensor], in_place: bool) -> Tensor:
        """``x + c5(f * s)`` for channel weights ``s`` of shape ``(N, C)`` or ``(1, C)`` (shared)."""
        c5 = self._blocks[j].c5
        if s.shape[0] == 1:
            # c5(f * s) == conv(f, W5 * s): scale the 1x1 weights instead of the feature map.
            weight = c5.weight * s.view(1, -1, 1, 1)
        else:
            f = torch.mul(f, s.view(*s.shape, 1, 1), out=scratch)
            weight = c5.weight
        x = x.contiguous(memory_format=_CL)
        if in_place:  # x += c5(f): the block input is not needed afterwards
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                x, f, weight, c5.bias, c5.padding, c5.stride, c5.dilation, c5.groups, "add", 1.0, None, [], None
            )
        return _conv_add(f, x, c5, weight)

    def fuse(self, j: int, x: Tensor, f: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """Block ``j``'s CCA with given statistics, 1×1 fusion and residual (``IMDB.fuse``)."""
        z = (std + mean).reshape(std.shape[0], -1).to(f.dtype)
        return self.fuse_gated(j, x, f, self.gate(j, z), None, in_place=False)

    def blocks(self) -> list[int]:
        """Block indices, for ``distill`` / ``fuse`` (the module API's ``blocks()``)."""
        return list(range(len(self._blocks)))

    def _accumulate(self, acc: Optional[Tensor], i: int, h: Tensor) -> Tensor:
        """The 1x1 conv over cat(block outputs), as a running sum of per-block 1x1 convs."""
        c_conv, nf = self.net.c[0], self.num_feat
        w_i = c_conv.weight[:, i * nf:(i + 1) * nf].contiguous()
        if acc is None:
            return torch.ops.mkldnn._convolution_pointwise(h, w_i, c_conv.bias, [0, 0], [1, 1], [1, 1], 1, "none", [], "")
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            acc, h, w_i, None, [0, 0], [1, 1], [1, 1], 1, "add", 1.0, None, [], None
        )

    def _finish(self, fea: Tensor, acc: Tensor) -> Tensor:
        """LeakyReLU, LR conv + global residual, upsampler (NCHW out)."""
        net = self.net
        F.leaky_relu_(acc, net.c[1].negative_slope)
        y = _conv_add(acc, fea, net.LR_conv)
        del acc
        up_conv, shuffle = net.upsampler
        return _pixel_shuffle_to_nchw(_conv(y, up_conv), shuffle.upscale_factor)

    def tail(self, fea: Tensor, block_outputs: list[Tensor]) -> Tensor:
        """Information collection, global residual and upsampler (``_IMDNBody.tail``)."""
        acc: Optional[Tensor] = None
        for i, h in enumerate(block_outputs):
            acc = self._accumulate(acc, i, h.contiguous(memory_format=_CL))
        assert acc is not None
        return self._finish(fea.contiguous(memory_format=_CL), acc)

    # -- the whole forward --------------------------------------------------------------

    def __call__(self, x: Tensor) -> Tensor:
        net = self.net
        if x.dim() != 4:
            raise ValueError(f"{type(net).__name__}: expected an NCHW batch, got shape {tuple(x.shape)}")
        if self.is_as and (x.shape[-2] % 4 or x.shape[-1] % 4):
            raise ValueError(
                f"IMDN_AS: input size {x.shape[-2]}x{x.shape[-1]} is not divisible by 4; pad it or use "
                "imdn_plugin.inference.acs_forward (the paper's adaptive cropping)"
            )
        fea = self.fea_conv(x)
        # Buffers reused by every block of this call: fewer large allocations means fewer
        # page faults (a fresh 16 MB map costs ~4000 of them) — ~10% of the forward otherwise.
        n, _, hh, ww = fea.shape
        cat_channels = 4 * self._blocks[0].distilled
        f_buf = torch.empty((n, cat_channels, hh, ww), memory_format=_CL)
        scratch = torch.empty_like(f_buf)
        h = fea
        acc: Optional[Tensor] = None
        for i in range(len(self._blocks)):
            f = self.distill(i, h, out=f_buf)
            s = self.gate(i, _channel_std_plus_mean(f, scratch))
            # Block 1 must keep ``fea`` (global residual); later inputs are dead after the block.
            h = self.fuse_gated(i, h, f, s, scratch, in_place=i > 0)
            acc = self._accumulate(acc, i, h)
        del f_buf, scratch, h
        assert acc is not None
        return self._finish(fea, acc)


def self_check(plan: FusedIMDNPlan, network: nn.Module) -> Optional[str]:
    """Run the plan and the module's forward on small random inputs; ``None`` if they agree."""
    in_ch = network.fea_conv[0].in_channels if isinstance(network, IMDN_AS) else network.fea_conv.in_channels
    sizes = [(1, 16, 12), (2, 8, 8)] if isinstance(network, IMDN_AS) else [(1, 11, 9), (2, 6, 7)]
    gen = torch.Generator().manual_seed(0)
    try:
        # One thread: tiny inputs gain nothing from more, and on a busy machine each
        # OpenMP barrier of a multi-threaded op can cost milliseconds.
        with torch.inference_mode(), _one_thread():
            for n, h, w in sizes:
                x = torch.rand(n, in_ch, h, w, generator=gen)
                ref, out = network(x), plan(x)
                if out.shape != ref.shape:
                    return f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
                diff = (out - ref).abs().max().item()
                if not diff <= SELF_CHECK_ATOL * max(1.0, ref.abs().max().item()):
                    return f"max abs diff {diff:.3g} on a {n}x{in_ch}x{h}x{w} input"
    except Exception as exc:  # an op missing or changed in this PyTorch build
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None
