"""The fused CPU plans of IMDN / IMDN_AS: oneDNN convolutions, channels-last, fp32 or bf16.

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

:class:`FusedIMDNPlanBF16` is the same plan with the convolutions of the
trunk in bfloat16 (weights cast once, bf16 channels-last activations, fp32
accumulation inside oneDNN) and, in fp32, the CCA statistics and gate (Eq. 5)
and the layer groups listed in :data:`BF16_FP32_GROUPS` (those that cost PSNR).
On a CPU without native bf16 convolutions (oneDNN needs AVX-512 or
AVX-NE-CONVERT; fast with AMX) it computes the same bf16 numbers by running
fp32 kernels on bf16-rounded values: same results, no speed gain.
Measurements: README, "Measurement history" and "bf16 on CPU".
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..archs.imdn_arch import IMDB, IMDN, IMDN_AS, CCALayer
from ..machine import mkldnn_bf16_native

__all__ = [
    "BF16_FP32_GROUPS",
    "FusedIMDNPlan",
    "FusedIMDNPlanBF16",
    "LAYER_GROUPS",
    "fusable",
    "mkldnn_fusion_available",
    "self_check",
]

#: Tolerance of :func:`self_check` against the network's own forward (fp32 plan).
SELF_CHECK_ATOL = 1e-4

#: The precision groups of the networks' layers: ``fea_conv`` (shallow features; IMDN_AS:
#: both stride-2 convs), ``distill`` (c1–c4 of every block, Eqs. 1–4: ~85% of the FLOPs),
#: ``fusion`` (c5 and the block residual), ``collect`` (the 1×1 conv over all block
#: outputs), ``LR_conv`` (the conv after it), ``global_residual`` (the addition of the
#: shallow features to LR_conv's output: fused into LR_conv when both have one dtype) and
#: ``upsampler`` (the conv before the pixel shuffle).
LAYER_GROUPS = ("fea_conv", "distill", "fusion", "collect", "LR_conv", "global_residual", "upsampler")

#: Groups the bf16 plan keeps in fp32 by default, those that cost PSNR (Set5, README "bf16
#: on CPU"): the image-facing first conv (bf16 holds 8 significant bits, coarser than an
#: 8-bit image's steps near 1: -0.014 dB at x2 alone), the global residual (the upsampler's
#: input rounded to bf16: ~-0.003 dB) and the upsampler (a bf16 output is off by up to half
#: an 8-bit step).  With them, Set5 x2/x3/x4 stay within ~0.003 dB of fp32 (-0.0019,
#: -0.0019, -0.0031 dB; without the global residual: -0.0048, -0.0043, -0.0038 dB).
BF16_FP32_GROUPS = frozenset({"fea_conv", "global_residual", "upsampler"})


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


class _OneDNN:
    """The oneDNN fused convolutions the plans call, in the dtype of their input.

    With ``emulate_bf16`` (a CPU whose oneDNN has no bf16 convolutions), a bf16
    call runs the fp32 kernel on the bf16 values (exact in fp32) and rounds the
    result to bf16: what a native bf16 kernel computes (bf16 operands, fp32
    accumulation, bias and post-ops, one rounding of the output), up to the
    summation order.
    """

    def __init__(self, emulate_bf16: bool = False) -> None:
        self.emulate_bf16 = emulate_bf16

    def _emulated(self, x: Tensor) -> bool:
        return self.emulate_bf16 and x.dtype == torch.bfloat16

    def conv(self, x: Tensor, w: Tensor, b: Tensor | None, conv: nn.Conv2d, slope: float | None = None) -> Tensor:
        """``conv(x)`` (weights ``w``, bias ``b``, geometry of ``conv``), optionally with a fused LeakyReLU."""
        if self._emulated(x):
            return self.conv(x.float(), w.float(), _float(b), conv, slope).to(torch.bfloat16)
        attr, scalars = ("none", []) if slope is None else ("leaky_relu", [slope])
        return torch.ops.mkldnn._convolution_pointwise(
            x, w, b, conv.padding, conv.stride, conv.dilation, conv.groups, attr, scalars, ""
        )

    def conv_add(self, x: Tensor, other: Tensor, w: Tensor, b: Tensor | None, conv: nn.Conv2d) -> Tensor:
        """``conv(x) + other`` with the addition fused into the convolution."""
        if self._emulated(x):
            return self.conv_add(x.float(), other.float(), w.float(), _float(b), conv).to(torch.bfloat16)
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, w, b, conv.padding, conv.stride, conv.dilation, conv.groups, "add", 1.0, None, [], None
        )

    def conv_add_(self, acc: Tensor, x: Tensor, w: Tensor, b: Tensor | None, conv: nn.Conv2d) -> Tensor:
        """``acc += conv(x)`` in place (returns ``acc``)."""
        if self._emulated(x):
            return acc.copy_(self.conv_add(x.float(), acc.float(), w.float(), _float(b), conv))
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            acc, x, w, b, conv.padding, conv.stride, conv.dilation, conv.groups, "add", 1.0, None, [], None
        )


def _float(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.float()


def _as(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x`` in ``dtype``, channels-last (no copy when it already is)."""
    if x.dtype != dtype:
        x = x.to(dtype)
    return x.contiguous(memory_format=_CL)


def _channel_std_plus_mean(f: Tensor, scratch: Tensor) -> Tensor:
    """CCA statistic ``std + mean`` per channel (population variance), shape ``(N, C)``, in ``scratch``'s dtype.

    Two-pass (mean, then mean of squared deviations) over an ``(N, H·W, C)``
    view of the channels-last map ``f``: as exact as ``torch.var_mean`` and
    several times faster on CPU, where the latter's spatial reduction is a
    scalar Welford loop.  ``scratch`` (same shape as ``f``, channels-last; fp32
    also for a bf16 ``f``) holds the squared deviations.
    """
    n, c, h, w = f.shape
    v = f.permute(0, 2, 3, 1).reshape(n, h * w, c)
    dev = scratch.permute(0, 2, 3, 1).view(n, h * w, c)
    mean = v.mean(dim=1, keepdim=True, dtype=scratch.dtype)
    torch.sub(v, mean, out=dev)
    dev.mul_(dev)
    return dev.mean(dim=1).sqrt_().add_(mean.squeeze(1))


def _pixel_shuffle_to_nchw(y: Tensor, r: int) -> Tensor:
    """``F.pixel_shuffle(y, r)`` for a channels-last ``y``, as contiguous NCHW float32, in one copy."""
    n, c, h, w = y.shape
    oc = c // (r * r)
    out = torch.empty((n, oc, h * r, w * r), dtype=torch.float32)
    nhwc = y.permute(0, 2, 3, 1).reshape(n, h, w, oc, r, r)
    out.view(n, oc, h, r, w, r).copy_(nhwc.permute(0, 3, 1, 4, 2, 5))
    return out


class FusedIMDNPlan:
    """IMDN / IMDN_AS forward on CPU with oneDNN fused convolutions (fp32, channels-last).

    Reads the weights from ``network``'s modules at every call (so it follows
    the module it is given; :func:`.fast.make_fast_forward` gives it a private
    frozen copy).  Numerically it differs from the module's forward
    only by float rounding (different summation orders), ~1e-6 on ``[0, 1]``
    images with the authors' weights.

    Besides the whole forward (``plan(x)``) it offers the network's stages with
    the module API that :func:`.global_tiling.global_tiled_forward` drives
    (``fea_conv``, ``distill``, ``fuse``, ``collect``, ``finish``), so tiles with whole-image
    CCA statistics run on the same kernels.

    Every convolution belongs to one of :data:`LAYER_GROUPS`; its input is
    brought to the group's dtype (:meth:`dtype`, fp32 here) and its weights come
    from :meth:`_weights` — the two hooks :class:`FusedIMDNPlanBF16` changes.
    """

    #: Name of the plan in :attr:`.fast.FastForward.path`.
    name = "fused-cpu"

    def __init__(self, network: nn.Module) -> None:
        self.net = network
        self.is_as = isinstance(network, IMDN_AS)
        self._blocks = network.blocks()
        self.num_feat = network.LR_conv.out_channels
        self._k = _OneDNN()

    # -- precision hooks ----------------------------------------------------------------

    def dtype(self, group: str) -> torch.dtype:
        """Activation and weight dtype of the convolutions of ``group`` (one of :data:`LAYER_GROUPS`)."""
        return torch.float32

    def _weights(self, conv: nn.Conv2d, group: str) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` of ``conv`` in :meth:`dtype` of ``group``."""
        return conv.weight, conv.bias

    def _conv(
        self, x: Tensor, conv: nn.Conv2d, group: str, slope: float | None = None, out: slice | None = None
    ) -> Tensor:
        """``conv(x)`` in ``group``'s dtype (only output channels ``out`` if given), optionally with a fused LeakyReLU."""
        w, b = self._weights(conv, group)
        if out is not None:
            w, b = w[out], (None if b is None else b[out])
        return self._k.conv(_as(x, self.dtype(group)), w, b, conv, slope)

    # -- stages ------------------------------------------------------------------------

    def fea_conv(self, x: Tensor) -> Tensor:
        """Shallow features (channels-last, in the ``fea_conv`` group's dtype)."""
        if self.is_as:
            s1, act, s2 = self.net.fea_conv
            return self._conv(self._conv(x, s1, "fea_conv", act.negative_slope), s2, "fea_conv")
        return self._conv(x, self.net.fea_conv, "fea_conv")

    def distill(self, j: int, x: Tensor, out: Tensor | None = None) -> Tensor:
        """Block ``j``'s progressive refinement (Eqs. 1–4): the concatenated distilled features."""
        block = self._blocks[j]
        d, slope = block.distilled, block.act.negative_slope
        # Each progressive-refinement conv runs as two: the distilled (kept) channels and the
        # remaining ones, so that no channel slice of a channels-last map has to be copied
        # before the next conv or gathered by the concatenation (same FLOPs, ~10% faster).
        keep, rest = slice(0, d), slice(d, None)
        parts = []
        h = _as(x, self.dtype("distill"))
        for conv in (block.c1, block.c2, block.c3):
            parts.append(self._conv(h, conv, "distill", slope, keep))
            h = self._conv(h, conv, "distill", slope, rest)
        parts.append(self._conv(h, block.c4, "distill"))
        del h
        return torch.cat(parts, dim=1, out=out) if out is not None else torch.cat(parts, dim=1)

    def gate(self, j: int, z: Tensor) -> Tensor:
        """CCA channel weights ``sigmoid(W2 relu(W1 z + b1) + b2)`` from ``z = std + mean``, ``(N, C)``, fp32."""
        du1, _, du2, _ = self._blocks[j].cca.conv_du
        with torch.autocast("cpu", enabled=False):  # fp32 whatever the caller's context
            z = z.float()
            return torch.sigmoid(
                F.linear(torch.relu(F.linear(z, du1.weight.flatten(1), du1.bias)), du2.weight.flatten(1), du2.bias)
            )

    def fuse_gated(self, j: int, x: Tensor, f: Tensor, s: Tensor, scratch: Tensor | None, in_place: bool) -> Tensor:
        """``x + c5(f * s)`` for fp32 channel weights ``s`` of shape ``(N, C)`` or ``(1, C)`` (shared).

        ``scratch``: a channels-last buffer like ``f`` in the ``fusion`` group's dtype (or None).
        """
        c5, dtype = self._blocks[j].c5, self.dtype("fusion")
        w, b = self._weights(c5, "fusion")
        if s.shape[0] == 1:
            # c5(f * s) == conv(f, W5 * s): scale the 1x1 weights (fp32) instead of the feature map.
            w = (c5.weight * s.view(1, -1, 1, 1)).to(dtype)
        elif scratch is not None and scratch.dtype == dtype:
            f = torch.mul(f, s.view(*s.shape, 1, 1), out=scratch)
        else:
            f = torch.mul(f, s.view(*s.shape, 1, 1)).to(dtype)
        f, x = _as(f, dtype), _as(x, dtype)
        if in_place:  # x += c5(f): the block input is not needed afterwards
            return self._k.conv_add_(x, f, w, b, c5)
        return self._k.conv_add(f, x, w, b, c5)

    def fuse(self, j: int, x: Tensor, f: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """Block ``j``'s CCA with given statistics, 1×1 fusion and residual (``IMDB.fuse``)."""
        z = (std + mean).reshape(std.shape[0], -1).float()
        return self.fuse_gated(j, x, f, self.gate(j, z), None, in_place=False)

    def blocks(self) -> list[int]:
        """Block indices, for ``distill`` / ``fuse`` (the module API's ``blocks()``)."""
        return list(range(len(self._blocks)))

    def _accumulate(self, acc: Tensor | None, i: int, h: Tensor) -> Tensor:
        """The 1x1 conv over cat(block outputs), as a running sum of per-block 1x1 convs."""
        c_conv, nf = self.net.c[0], self.num_feat
        w, b = self._weights(c_conv, "collect")
        w_i = w[:, i * nf:(i + 1) * nf].contiguous()
        h = _as(h, self.dtype("collect"))
        if acc is None:
            return self._k.conv(h, w_i, b, c_conv)
        return self._k.conv_add_(acc, h, w_i, None, c_conv)

    def _finish(self, fea: Tensor, acc: Tensor) -> Tensor:
        """LeakyReLU, LR conv + global residual, upsampler (NCHW float32 out)."""
        net = self.net
        F.leaky_relu_(acc, net.c[1].negative_slope)
        dtype, sum_dtype = self.dtype("LR_conv"), self.dtype("global_residual")
        w, b = self._weights(net.LR_conv, "LR_conv")
        if dtype == sum_dtype:  # the residual fused into the convolution
            y = self._k.conv_add(_as(acc, dtype), _as(fea, dtype), w, b, net.LR_conv)
        else:  # e.g. a bf16 conv whose output is added to the shallow features in fp32
            y = self._k.conv(_as(acc, dtype), w, b, net.LR_conv).to(sum_dtype).add_(_as(fea, sum_dtype))
        del acc
        up_conv, shuffle = net.upsampler
        return _pixel_shuffle_to_nchw(self._conv(y, up_conv, "upsampler"), shuffle.upscale_factor)

    def collect(self, j: int, h: Tensor, acc: Tensor | None) -> Tensor:
        """``acc + W_j·h``: block ``j``'s share of the 1×1 information-collection conv (in place into ``acc``)."""
        return self._accumulate(acc, j, h)

    def finish(self, fea: Tensor, acc: Tensor) -> Tensor:
        """LeakyReLU of the collected features, LR conv + global residual, upsampler (``acc`` is overwritten)."""
        return self._finish(fea, acc)

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
        f_buf = torch.empty((n, cat_channels, hh, ww), memory_format=_CL, dtype=self.dtype("distill"))
        scratch = torch.empty_like(f_buf, dtype=torch.float32)  # CCA statistics: fp32
        gated = scratch
        if n > 1 and self.dtype("fusion") != torch.float32:
            gated = torch.empty_like(f_buf, dtype=self.dtype("fusion"))
        h = fea
        acc: Tensor | None = None
        for i in range(len(self._blocks)):
            f = self.distill(i, h, out=f_buf)
            s = self.gate(i, _channel_std_plus_mean(f, scratch))
            # Block 1 must keep ``fea`` (global residual); later inputs are dead after the block.
            h = self.fuse_gated(i, h, f, s, gated, in_place=i > 0)
            acc = self._accumulate(acc, i, h)
        del f_buf, scratch, gated, h
        assert acc is not None
        return self._finish(fea, acc)


class FusedIMDNPlanBF16(FusedIMDNPlan):
    """The fused plan with bf16 convolutions: :class:`FusedIMDNPlan`'s kernels and buffers, other dtypes.

    The weights of the bf16 groups are cast to bfloat16 once, here (later
    changes to the module's weights are not seen; fp32 groups still read the
    module).  Activations between bf16 convolutions are bf16 channels-last;
    oneDNN accumulates in fp32 and applies bias, LeakyReLU and residual
    additions in fp32 before rounding the output to bf16.  The CCA statistics
    (Eq. 5) and channel weights are computed in fp32 (and, for one image, folded
    into the fp32 1×1 weights before they are cast), and the output is float32.

    Args:
        network: An unmodified IMDN / IMDN_AS (see :func:`fusable`), channels-last weights.
        fp32_groups: Groups of :data:`LAYER_GROUPS` kept in fp32 (default
            :data:`BF16_FP32_GROUPS`); ``distill`` cannot be one of them.
        emulate: Run bf16 convolutions as fp32 kernels on bf16-rounded values
            (same numbers as native bf16 kernels, no speed gain).  ``None``
            (default): only where oneDNN has no native bf16 convolutions.
    """

    name = "fused-cpu-bf16"

    def __init__(
        self, network: nn.Module, fp32_groups: frozenset[str] | None = None, emulate: bool | None = None
    ) -> None:
        super().__init__(network)
        fp32 = BF16_FP32_GROUPS if fp32_groups is None else frozenset(fp32_groups)
        unknown = sorted(fp32 - set(LAYER_GROUPS))
        if unknown or "distill" in fp32:
            raise ValueError(
                f"FusedIMDNPlanBF16: fp32_groups must be a subset of {', '.join(g for g in LAYER_GROUPS if g != 'distill')}, "
                f"got {sorted(fp32)}"
            )
        self.fp32_groups = fp32
        self.emulated = (not mkldnn_bf16_native()) if emulate is None else bool(emulate)
        self._k = _OneDNN(emulate_bf16=self.emulated)
        self._dtypes = {g: torch.float32 if g in fp32 else torch.bfloat16 for g in LAYER_GROUPS}
        self._cast: dict[int, tuple[Tensor, Tensor | None]] = {}
        for group, conv in self._convs():
            if self._dtypes[group] == torch.bfloat16:  # (global_residual has no conv)
                w, b = conv.weight.detach(), conv.bias
                self._cast[id(conv)] = (w.to(torch.bfloat16), None if b is None else b.detach().to(torch.bfloat16))

    def _convs(self) -> Iterator[tuple[str, nn.Conv2d]]:
        net = self.net
        for conv in (net.fea_conv[0], net.fea_conv[2]) if self.is_as else (net.fea_conv,):
            yield "fea_conv", conv
        for block in self._blocks:
            for conv in (block.c1, block.c2, block.c3, block.c4):
                yield "distill", conv
            yield "fusion", block.c5
        yield "collect", net.c[0]
        yield "LR_conv", net.LR_conv
        yield "upsampler", net.upsampler[0]

    def dtype(self, group: str) -> torch.dtype:
        return self._dtypes[group]

    def _weights(self, conv: nn.Conv2d, group: str) -> tuple[Tensor, Tensor | None]:
        if self._dtypes[group] == torch.float32:
            return conv.weight, conv.bias
        return self._cast[id(conv)]

    def __repr__(self) -> str:
        kernels = "fp32 kernels on bf16 values (no native bf16 here)" if self.emulated else "native bf16"
        return f"FusedIMDNPlanBF16(fp32 groups: {', '.join(sorted(self.fp32_groups)) or 'none'}; {kernels})"


#: Tolerance of :func:`self_check` for the bf16 plan, relative to the output's largest
#: magnitude, on smooth random inputs: bf16 keeps 8 significant bits (observed: <= 0.004
#: with the authors' four checkpoints); a broken kernel is off by the signal itself.
SELF_CHECK_BF16_RTOL = 0.03


def self_check(plan: FusedIMDNPlan, network: nn.Module) -> str | None:
    """Run the plan and the module's fp32 forward on small random inputs; ``None`` if they agree.

    fp32 plan: uniform noise, max abs diff <= :data:`SELF_CHECK_ATOL` (× the output's largest
    magnitude if > 1); bf16 plan: smooth noise (bilinearly enlarged: image-like; on pure noise
    trained weights build feature magnitudes that real images never reach), max abs diff
    <= :data:`SELF_CHECK_BF16_RTOL` × the output's largest magnitude.
    """
    in_ch = network.fea_conv[0].in_channels if isinstance(network, IMDN_AS) else network.fea_conv.in_channels
    sizes = [(1, 16, 12), (2, 8, 8)] if isinstance(network, IMDN_AS) else [(1, 11, 9), (2, 6, 7)]
    gen = torch.Generator().manual_seed(0)
    bf16 = isinstance(plan, FusedIMDNPlanBF16)
    try:
        # One thread: tiny inputs gain nothing from more, and on a busy machine each
        # OpenMP barrier of a multi-threaded op can cost milliseconds.
        with torch.inference_mode(), _one_thread():
            for n, h, w in sizes:
                if bf16:
                    coarse = torch.rand(n, in_ch, h // 4 + 2, w // 4 + 2, generator=gen)
                    x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)
                else:
                    x = torch.rand(n, in_ch, h, w, generator=gen)
                ref, out = network(x), plan(x)
                if out.shape != ref.shape:
                    return f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
                diff, scale = (out - ref).abs().max().item(), ref.abs().max().item()
                limit = SELF_CHECK_BF16_RTOL * scale if bf16 else SELF_CHECK_ATOL * max(1.0, scale)
                if not diff <= limit:
                    return f"max abs diff {diff:.3g} > {limit:.3g} on a {n}x{in_ch}x{h}x{w} input"
    except Exception as exc:  # noqa: BLE001 (an op missing or changed in this PyTorch build)
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None
