"""The fast inference forward of the IMDN networks (pure PyTorch, no BasicSR).

:func:`make_fast_forward` turns a network into a ``tensor -> tensor`` callable
that runs it for inference as fast as this PyTorch build allows while keeping
fp32 results within 1e-4 (max abs diff) of a plain eager fp32 forward on images
in ``[0, 1]``.

What pays on a CPU (IMDN ×4, 256×256 input, 2-core AVX-512 Xeon, compared
with a plain NCHW fp32 eager forward; ``scripts/benchmark.py`` re-measures it):

* **The fused CPU plan** — the default for :class:`~imdn_plugin.archs.IMDN`
  and :class:`~imdn_plugin.archs.IMDN_AS` on CPU in fp32: ~1.6× on two
  threads with glibc's default malloc (~1.2× when both forwards run with an
  allocator that keeps freed memory, which removes most of the plain
  forward's page faults), outputs within ~5e-6, 3-4× less peak memory.  It
  runs the network's own weights through oneDNN convolutions in channels-last
  layout with the LeakyReLU and the residual additions fused into the
  convolutions (``torch.ops.mkldnn._convolution_pointwise``, the kernels
  inductor's freezing pass emits) and removes the copies around them: each
  progressive-refinement conv runs as two convs (distilled / remaining output
  channels), so no channel slice is copied before the next conv and the
  concatenation gathers contiguous maps; the CCA statistics are a two-pass
  mean / variance over an ``(N, H·W, C)`` view (``torch.var_mean`` over the
  spatial dims is a slow Welford loop on CPU); the CCA channel weights are
  folded into the 1×1 fusion conv (no full-size multiply); and the 1×1 conv
  over the six block outputs is accumulated block by block instead of
  concatenating them (no 6×64-channel copy); the concatenation and the
  squared deviations reuse two buffers per call and each block's residual
  conv adds into its (dead) input in place, so there are few large
  allocations (each fresh 16 MB map costs ~4000 page faults).  No compile
  time, any input size.  The convolutions then take ~88% of the time at
  ~90% of a large fp32 matmul's FLOP rate; compiling the plan itself with
  inductor gains nothing more (measured 384 vs 384 ms).
* Measured and not chosen: ``channels_last`` alone (~1.0–1.25×);
  ``torch.jit.trace`` + ``freeze`` (~1.0–1.25×; deprecated);
  ``optimize_for_inference`` (slower, 0.75–0.85×); ``torch.compile``
  (inductor; with or without freezing, static or dynamic shapes: ~1.1–1.45×,
  below the fused plan, plus 10–40 s of compilation per graph) — available as
  ``compile=True``; bf16 autocast (slower on a CPU without AMX, 0.7×).

Elsewhere (CUDA, other dtypes, other networks, or when the fused plan is not
available in the installed PyTorch) the callable runs the network's own
``forward`` in eval mode under :func:`torch.inference_mode` in the chosen memory
format, optionally under autocast and/or ``torch.compile``.
"""
from __future__ import annotations

import copy
import logging
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..archs.imdn_arch import IMDB, IMDN, IMDN_AS, CCALayer

__all__ = ["PRECISIONS", "make_fast_forward"]

logger = logging.getLogger(__name__)

#: Accepted values of ``precision``.
PRECISIONS = ("fp32", "fp16", "bf16")

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: Tolerance of the fused plan's self-check against the network's own forward.
_SELF_CHECK_ATOL = 1e-4


# --------------------------------------------------------------------------- small context helpers


@contextmanager
def _num_threads(threads: Optional[int]) -> Iterator[None]:
    """Set PyTorch's intra-op thread count for the block, then restore it."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    if previous == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode for the block, then restore each flag."""
    flags = [(m, m.training) for m in module.modules()]
    if not any(training for _, training in flags):
        yield
        return
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


@contextmanager
def _strict_fp32_cuda() -> Iterator[None]:
    """Disable TF32 in cuDNN convolutions and cuBLAS matmuls for the block (CUDA ``fp32``)."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul


def _network_device_dtype(network: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in network.parameters():
        return t.device, t.dtype
    for t in network.buffers():
        return t.device, t.dtype
    return torch.device("cpu"), torch.float32


# --------------------------------------------------------------------------- the fused CPU plan

_CL = torch.channels_last


def _mkldnn_fusion_available() -> bool:
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


def _fusable(network: nn.Module) -> bool:
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


class _FusedIMDNPlan:
    """IMDN / IMDN_AS forward on CPU with oneDNN fused convolutions (fp32, channels-last).

    Reads the weights from ``network``'s modules at every call (so it follows
    the module it is given; :func:`make_fast_forward` gives it a private copy
    unless ``freeze=False``).  Numerically it differs from the module's forward
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


def _check_plan(plan: _FusedIMDNPlan, network: nn.Module) -> Optional[str]:
    """Run the plan and the module's forward on small random inputs; ``None`` if they agree."""
    in_ch = network.fea_conv[0].in_channels if isinstance(network, IMDN_AS) else network.fea_conv.in_channels
    sizes = [(1, 16, 12), (2, 8, 8)] if isinstance(network, IMDN_AS) else [(1, 11, 9), (2, 6, 7)]
    gen = torch.Generator().manual_seed(0)
    try:
        # One thread: tiny inputs gain nothing from more, and on a busy machine each
        # OpenMP barrier of a multi-threaded op can cost milliseconds.
        with torch.inference_mode(), _eval_mode(network), _num_threads(1):
            for n, h, w in sizes:
                x = torch.rand(n, in_ch, h, w, generator=gen)
                ref, out = network(x), plan(x)
                if out.shape != ref.shape:
                    return f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
                diff = (out - ref).abs().max().item()
                if not diff <= _SELF_CHECK_ATOL * max(1.0, ref.abs().max().item()):
                    return f"max abs diff {diff:.3g} on a {n}x{in_ch}x{h}x{w} input"
    except Exception as exc:  # an op missing or changed in this PyTorch build
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


# --------------------------------------------------------------------------- the callable


class _FastForward:
    """The callable returned by :func:`make_fast_forward` (see there)."""

    def __init__(
        self,
        module: nn.Module,
        *,
        device: torch.device,
        dtype: torch.dtype,
        channels_last: bool,
        plan: Optional[_FusedIMDNPlan],
        compile: bool,
        freeze: bool,
        precision: str,
        threads: Optional[int],
    ) -> None:
        self.module = module
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last
        self.plan = plan
        self.precision = precision
        self.threads = threads
        self.freeze = freeze
        self._compiled: Optional[Callable[[Tensor], Tensor]] = None
        if compile:
            self._compiled = self._compile(module, freeze)

    # -- descriptions -----------------------------------------------------------------

    @property
    def path(self) -> str:
        """Short name of the code path the next call takes (``compiled``, ``fused-cpu`` or ``eager``)."""
        if self._compiled is not None:
            return "compiled"
        return "fused-cpu" if self.plan is not None else "eager"

    def __repr__(self) -> str:
        return (
            f"FastForward({type(self.module).__name__}, path={self.path}, device={self.device}, "
            f"channels_last={self.channels_last}, precision={self.precision}, threads={self.threads}, "
            f"freeze={self.freeze})"
        )

    # -- compilation ------------------------------------------------------------------

    @staticmethod
    def _compile(module: nn.Module, freeze: bool) -> Optional[Callable[[Tensor], Tensor]]:
        try:
            # dynamic=None: the first shape is compiled static (weights pre-packed), the
            # first new shape triggers one dynamic-shape recompile that serves all later
            # sizes (a few graphs in total, not one per size).
            return torch.compile(module, dynamic=None, options={"freezing": freeze})
        except Exception as exc:
            logger.warning("make_fast_forward: torch.compile is unavailable (%s: %s); using eager", type(exc).__name__, exc)
            return None

    # -- running ----------------------------------------------------------------------

    def _usable_plan(self) -> Optional[_FusedIMDNPlan]:
        """The fused plan if this PyTorch may run it now (oneDNN enabled), else None."""
        return self.plan if self.plan is not None and torch.backends.mkldnn.enabled else None

    @property
    def fused_plan(self) -> Optional[_FusedIMDNPlan]:
        """The fused CPU plan when the next call runs it (not compiled, oneDNN enabled), else None.

        Its stages (``fea_conv``, ``distill``, ``fuse``, ``tail``) also serve
        :func:`.global_tiling.global_tiled_forward`.
        """
        return self._usable_plan() if self._compiled is None else None

    def _eager(self, x: Tensor) -> Tensor:
        plan = self._usable_plan()
        return plan(x) if plan is not None else self.module(x)

    def _run(self, x: Tensor) -> Tensor:
        if self._compiled is None:
            return self._eager(x)
        try:
            return self._compiled(x)
        except Exception as exc:
            # A compile failure, or a bad input: the eager path tells them apart.
            out = self._eager(x)
            logger.warning(
                "make_fast_forward: torch.compile failed (%s: %s); falling back to eager for %s",
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                type(self.module).__name__,
            )
            self._compiled = None
            return out

    def __call__(self, x: Tensor) -> Tensor:
        """Run the network on the NCHW batch ``x``; returns contiguous NCHW float32."""
        if not isinstance(x, Tensor):
            raise TypeError(f"fast forward: expected a torch.Tensor, got {type(x).__name__}")
        x = x.to(device=self.device, dtype=self.dtype)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=_CL)
        with ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            stack.enter_context(_num_threads(self.threads))
            if not self.freeze:
                stack.enter_context(_eval_mode(self.module))
            if self.precision in _AUTOCAST_DTYPES:
                stack.enter_context(torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision]))
            elif self.device.type == "cuda":
                stack.enter_context(_strict_fp32_cuda())
            out = self._run(x)
        return out.to(torch.float32).contiguous()


def _check_options(
    network: object, channels_last: object, compile: object, precision: object, threads: object, freeze: object
) -> None:
    if not isinstance(network, nn.Module):
        raise TypeError(f"make_fast_forward: network must be a torch.nn.Module, got {type(network).__name__}")
    if channels_last is not None and not isinstance(channels_last, bool):
        raise ValueError(f"make_fast_forward: channels_last must be None, True or False, got {channels_last!r}")
    if not isinstance(compile, bool):
        raise ValueError(f"make_fast_forward: compile must be True or False, got {compile!r}")
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"make_fast_forward: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"make_fast_forward: threads must be None or an integer >= 1, got {threads!r}")
    if not isinstance(freeze, bool):
        raise ValueError(f"make_fast_forward: freeze must be True or False, got {freeze!r}")


def make_fast_forward(
    network: nn.Module,
    *,
    channels_last: Optional[bool] = None,
    compile: bool = False,
    precision: str = "fp32",
    threads: Optional[int] = None,
    freeze: bool = True,
) -> Callable[[Tensor], Tensor]:
    """Return ``forward(x) -> y``: the network's inference forward on its fastest safe path.

    The callable takes an NCHW batch (any float/integer dtype, any device and
    memory format; it is moved to the network's device and dtype and to the
    chosen memory format, values unchanged) and returns the network output as a
    contiguous NCHW ``float32`` tensor on the network's device, computed in eval
    mode under :func:`torch.inference_mode`.  With the defaults, outputs are
    within 1e-4 (max abs diff; ~1e-5 in practice) of ``network.eval()(x)`` in
    fp32 for images in ``[0, 1]``, for any input size and batch size.

    Paths, in order of preference (``forward.path`` tells which one runs):

    * ``compiled`` — only with ``compile=True``: ``torch.compile`` (inductor)
      of the network; the first call compiles for its shape (10–40 s on a
      2-core CPU), a new input size triggers a dynamic-shape recompile, and
      later sizes reuse it (a few graphs in all, e.g. 3 for 7 different sizes,
      not one per size).  If compiling or
      running the compiled graph fails, a warning is logged and the eager
      path below is used from then on.
    * ``fused-cpu`` — IMDN / IMDN_AS on CPU in fp32 with ``channels_last``
      true: oneDNN convolutions with fused LeakyReLU and residual additions,
      cheaper CCA statistics, no full-size concatenations (module docstring).
      Checked once against the module's own forward on small random inputs
      when built; if that check fails (e.g. an op changed in a future PyTorch)
      a warning is logged and ``eager`` is used.
    * ``eager`` — the network's own ``forward``.

    Args:
        network: The network (any ``nn.Module`` mapping NCHW to NCHW; the fused
            plan applies to unmodified :class:`~imdn_plugin.archs.IMDN` and
            :class:`~imdn_plugin.archs.IMDN_AS` without hooks).
        channels_last: Compute in channels-last (NHWC) memory format.  ``None``
            (default): yes on CPU and CUDA (faster for these convolutions on
            oneDNN and cuDNN), no elsewhere.  ``False`` also disables the fused
            CPU plan, which is channels-last only.
        compile: Use ``torch.compile`` (default ``False``: on CPU it is no
            faster than the fused plan for IMDN and costs seconds to minutes of
            compilation; it may pay on CUDA).
        precision: ``"fp32"`` (default; on CUDA TF32 is disabled during the
            call so results match a strict fp32 forward), ``"bf16"`` (autocast
            to bfloat16, CPU or CUDA) or ``"fp16"`` (autocast to float16, CUDA
            only).  Reduced precisions do not meet the 1e-4 bound (bf16 on
            CPU: max diff ~2e-2, PSNR within ~0.04 dB, and no faster on a
            CPU without AMX); the output is still returned as float32.
        threads: Intra-op CPU threads for each call (``torch.set_num_threads``
            is set for the call and the previous count restored afterwards;
            it is a process-wide setting while the call runs).  ``None``
            (default): leave PyTorch's setting alone.  On a machine whose cores
            are busy with other processes, fewer threads than cores can be
            several times faster (every multi-threaded op waits at an OpenMP
            barrier for a descheduled thread); ``OMP_WAIT_POLICY=PASSIVE``
            in the environment also helps there.
        freeze: ``True`` (default): run on a private frozen copy of the network
            (eval mode, no gradients, channels-last weights): the callable never
            changes the user's module, and later changes to the module's weights
            are NOT seen — call :func:`make_fast_forward` again after training
            steps.  With ``compile=True`` it also enables inductor's freezing
            (constant folding, pre-packed weights).  ``False``: use the live
            module (its current weights at every call; its train/eval flags are
            switched to eval for each call and restored afterwards; nothing
            else is changed).

    Returns:
        The callable ``forward(x: Tensor) -> Tensor``.

    Raises:
        ValueError: An invalid option value (one line naming the option), or
            ``precision="fp16"`` for a network that is not on CUDA.
        TypeError: ``network`` is not an ``nn.Module``.

    Example::

        net = IMDN(upscale=4); net.load_state_dict(state)
        forward = make_fast_forward(net)
        sr = forward(lr)          # (N, 3, 4H, 4W) float32
    """
    _check_options(network, channels_last, compile, precision, threads, freeze)
    device, dtype = _network_device_dtype(network)
    if not dtype.is_floating_point:
        dtype = torch.float32
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"make_fast_forward: precision='fp16' needs a network on CUDA, got device {device.type!r}")
    if channels_last is None:
        channels_last = device.type in ("cpu", "cuda")

    module = network
    if freeze:
        try:
            module = copy.deepcopy(network)
        except Exception as exc:
            raise ValueError(
                f"make_fast_forward: freeze=True needs a deep-copyable network ({type(exc).__name__}: {exc}); "
                "pass freeze=False"
            ) from None
        module.eval().requires_grad_(False)
        if channels_last:
            module.to(memory_format=_CL)

    plan: Optional[_FusedIMDNPlan] = None
    if (
        device.type == "cpu"
        and dtype == torch.float32
        and precision == "fp32"
        and channels_last
        and _fusable(module)
        and _mkldnn_fusion_available()
    ):
        plan = _FusedIMDNPlan(module)
        problem = _check_plan(plan, module)
        if problem is not None:
            logger.warning(
                "make_fast_forward: the fused CPU plan does not reproduce %s here (%s); using the eager forward",
                type(network).__name__,
                problem,
            )
            plan = None

    forward = _FastForward(
        module,
        device=device,
        dtype=dtype,
        channels_last=channels_last,
        plan=plan,
        compile=compile,
        freeze=freeze,
        precision=precision,
        threads=threads,
    )
    logger.debug("make_fast_forward: %r", forward)
    return forward
