"""The fast inference forward of the IMDN networks (pure PyTorch, no BasicSR).

:func:`make_fast_forward` turns a network into a ``tensor -> tensor`` callable
that runs a private frozen copy of it for inference as fast as this PyTorch
build allows while keeping fp32 results within 1e-4 (max abs diff) of a plain
eager fp32 forward on images in ``[0, 1]``.  On CPU in fp32 that is the fused
oneDNN plan of :mod:`.fused_cpu`, in bf16 its bf16 variant (each checked against
the module's own fp32 forward when built; a plan that fails the check is logged
as a warning and not used); else the network's own forward, optionally under
autocast and/or ``torch.compile``.  ``precision="auto"`` picks fp16 on a CUDA
GPU with tensor cores, bf16 on a CPU with AMX and fp32 everywhere else
(:func:`imdn_plugin.machine.resolve_precision`).
The callable also owns the run context (eval copy, inference mode, autocast or
strict fp32) that every caller, the global-statistics tiles included, runs in.
Measured speed-ups and the paths measured and not chosen: README, "Measurement history".
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ..machine import autocast_dtype, resolve_precision, strict_fp32_cuda
from .fused_cpu import (
    FusedIMDNPlan,
    FusedIMDNPlanBF16,
    fusable,
    mkldnn_fusion_available,
    self_check,
)

__all__ = ["FastForward", "make_fast_forward"]

logger = logging.getLogger(__name__)

_CL = torch.channels_last


# --------------------------------------------------------------------------- small context helpers


def _network_device_dtype(network: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in network.parameters():
        return t.device, t.dtype
    for t in network.buffers():
        return t.device, t.dtype
    return torch.device("cpu"), torch.float32


# --------------------------------------------------------------------------- the callable


class FastForward:
    """The callable returned by :func:`make_fast_forward` (see there)."""

    def __init__(
        self,
        module: nn.Module,
        *,
        device: torch.device,
        dtype: torch.dtype,
        channels_last: bool,
        plan: FusedIMDNPlan | None,
        compile: bool,
        precision: str,
    ) -> None:
        self.module = module  #: the private frozen copy (eval mode, no gradients)
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last
        self.plan = plan
        self.precision = precision
        self._compiled: Callable[[Tensor], Tensor] | None = None
        if compile:
            self._compiled = self._compile(module)

    # -- descriptions -----------------------------------------------------------------

    @property
    def path(self) -> str:
        """Short name of the code path the next call takes (``compiled``, ``fused-cpu``,
        ``fused-cpu-bf16`` or ``eager``)."""
        if self._compiled is not None:
            return "compiled"
        plan = self.fused_plan
        return plan.name if plan is not None else "eager"

    def __repr__(self) -> str:
        return (
            f"FastForward({type(self.module).__name__}, path={self.path}, device={self.device}, "
            f"channels_last={self.channels_last}, precision={self.precision})"
        )

    # -- compilation ------------------------------------------------------------------

    @staticmethod
    def _compile(module: nn.Module) -> Callable[[Tensor], Tensor] | None:
        try:
            # dynamic=None: the first shape is compiled static (weights pre-packed), the
            # first new shape triggers one dynamic-shape recompile that serves all later
            # sizes (a few graphs in total, not one per size).
            return torch.compile(module, dynamic=None, options={"freezing": True})
        except Exception as exc:  # noqa: BLE001 (compile set-up fails in many ways; eager is the fallback, logged)
            logger.warning("make_fast_forward: torch.compile is unavailable (%s: %s); using eager", type(exc).__name__, exc)
            return None

    # -- running ----------------------------------------------------------------------

    @property
    def fused_plan(self) -> FusedIMDNPlan | None:
        """The fused CPU plan when the next call runs it (not compiled, oneDNN enabled), else None."""
        return self._usable_plan() if self._compiled is None else None

    def _usable_plan(self) -> FusedIMDNPlan | None:
        """The fused plan if this PyTorch may run it now (oneDNN enabled), else None."""
        return self.plan if self.plan is not None and torch.backends.mkldnn.enabled else None

    def stages(self) -> Any:
        """The stages (``fea_conv``, ``distill``, ``fuse``, ``collect``, ``finish``) of the frozen copy that
        :func:`.global_tiling.global_tiled_forward` drives: the fused plan's when it runs, else
        the module's own."""
        from .global_tiling import ModuleStages

        plan = self.fused_plan
        return plan if plan is not None else ModuleStages(self.module)

    @contextmanager
    def context(self) -> Iterator[None]:
        """The run context of every call: inference mode, and autocast (``fp16``/``bf16``, unless
        the fused plan runs: it sets its own dtypes) or strict fp32 on CUDA (TF32 off)."""
        with ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            dtype = autocast_dtype(self.precision)
            if dtype is not None and self.fused_plan is None:
                stack.enter_context(torch.autocast(self.device.type, dtype=dtype))
            elif self.device.type == "cuda":
                stack.enter_context(strict_fp32_cuda())
            yield

    def prepare(self, x: Tensor) -> Tensor:
        """``x`` on the network's device and dtype, in the chosen memory format."""
        if not isinstance(x, Tensor):
            raise TypeError(f"fast forward: expected a torch.Tensor, got {type(x).__name__}")
        x = x.to(device=self.device, dtype=self.dtype)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=_CL)
        return x

    def _eager(self, x: Tensor) -> Tensor:
        plan = self._usable_plan()
        return plan(x) if plan is not None else self.module(x)

    def _run(self, x: Tensor) -> Tensor:
        if self._compiled is None:
            return self._eager(x)
        try:
            return self._compiled(x)
        except Exception as exc:  # noqa: BLE001 (a compile failure or a bad input: eager tells them apart)
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
        x = self.prepare(x)
        with self.context():
            out = self._run(x)
        return out.to(torch.float32).contiguous()


def _check_options(network: object, channels_last: object, compile: object, precision: object) -> None:
    """The keyword arguments by the option schema's rules (:data:`imdn_plugin.options.inference.RULES`,
    the one place they are written); a :class:`ValueError` naming the argument."""
    if not isinstance(network, nn.Module):
        raise TypeError(f"make_fast_forward: network must be a torch.nn.Module, got {type(network).__name__}")
    from ..options.inference import RULES

    for name, value in (("channels_last", channels_last), ("compile", compile), ("precision", precision)):
        RULES[name](value, f"make_fast_forward: {name}")


def make_fast_forward(
    network: nn.Module,
    *,
    channels_last: bool | None = None,
    compile: bool = False,
    precision: str = "fp32",
) -> FastForward:
    """Return ``forward(x) -> y``: the network's inference forward on its fastest safe path.

    The callable takes an NCHW batch (any float/integer dtype, any device and
    memory format; it is moved to the network's device and dtype and to the
    chosen memory format, values unchanged) and returns the network output as a
    contiguous NCHW ``float32`` tensor on the network's device, computed in eval
    mode under :func:`torch.inference_mode`.  With the defaults, outputs are
    within 1e-4 (max abs diff; ~1e-5 in practice) of ``network.eval()(x)`` in
    fp32 for images in ``[0, 1]``, for any input size and batch size.

    It runs a private frozen copy of the network (eval mode, no gradients,
    channels-last weights): the user's module is never changed, and later
    changes to its weights are NOT seen — call :func:`make_fast_forward` again
    after training steps.

    Paths, in order of preference (``forward.path`` tells which one runs):

    * ``compiled`` — only with ``compile=True``: ``torch.compile`` (inductor,
      freezing on) of the copy; the first call compiles for its shape (10–40 s
      on a 2-core CPU), a new input size triggers a dynamic-shape recompile,
      and later sizes reuse it.  If compiling or running the compiled graph
      fails, a warning is logged and the eager path below is used from then on.
    * ``fused-cpu`` — IMDN / IMDN_AS on CPU in fp32 with ``channels_last``
      true: :class:`.fused_cpu.FusedIMDNPlan`.  Checked once against the
      module's own forward on small random inputs when built; if that check
      fails (e.g. an op changed in a future PyTorch) a warning is logged and
      ``eager`` is used.
    * ``fused-cpu-bf16`` — the same in bf16 (``precision="bf16"``, or ``auto``
      on a CPU with AMX): :class:`.fused_cpu.FusedIMDNPlanBF16` (bf16
      convolutions; in fp32 the CCA statistics, the first conv, the global
      residual and the upsampler; Set5 PSNR within ~0.003 dB of fp32).  Checked against the module's fp32 forward with a
      bf16 tolerance; on a failure, ``eager`` under bf16 autocast.  On a CPU
      without native bf16 convolutions it runs fp32 kernels on bf16 values
      (the same results, no faster than fp32).
    * ``eager`` — the network's own ``forward``.

    Args:
        network: The network (any ``nn.Module`` mapping NCHW to NCHW; the fused
            plan applies to unmodified :class:`~imdn_plugin.archs.IMDN` and
            :class:`~imdn_plugin.archs.IMDN_AS` without hooks).
        channels_last: Compute in channels-last (NHWC) memory format.  ``None``
            (default): yes on CPU and CUDA, no elsewhere.  ``False`` also
            disables the fused CPU plan, which is channels-last only.
        compile: Use ``torch.compile`` (default ``False``: on CPU it is no
            faster than the fused plan for IMDN and costs seconds to minutes of
            compilation; it may pay on CUDA).
        precision: ``"fp32"`` (default; on CUDA TF32 is disabled during the
            call so results match a strict fp32 forward), ``"bf16"`` (CPU: the
            bf16 plan where it applies, else autocast to bfloat16; CUDA:
            autocast), ``"fp16"`` (autocast to float16, CUDA only) or
            ``"auto"`` (``fp16`` on a CUDA GPU with tensor cores, ``bf16`` on a
            CPU with AMX, where it is several times faster, else ``fp32``, see
            :func:`imdn_plugin.machine.resolve_precision`; the choice is logged and kept in
            ``forward.precision``).  Reduced precisions do not meet the 1e-4
            bound; the output is still returned as float32.

    Raises:
        ValueError: An invalid option value (one line naming the option),
            ``precision="fp16"`` for a network that is not on CUDA, or a bad
            ``IMDN_ASSUME_AMX``.
        TypeError: ``network`` is not an ``nn.Module``.

    Example::

        net = IMDN(upscale=4); net.load_state_dict(state)
        forward = make_fast_forward(net)
        sr = forward(lr)          # (N, 3, 4H, 4W) float32
    """
    _check_options(network, channels_last, compile, precision)
    device, dtype = _network_device_dtype(network)
    if not dtype.is_floating_point:
        dtype = torch.float32
    requested = precision
    precision, why = resolve_precision(precision, device)
    if requested == "auto":
        logger.info("make_fast_forward: precision %s (%s)", precision, why)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"make_fast_forward: precision='fp16' needs a network on CUDA, got device {device.type!r}")
    if channels_last is None:
        channels_last = device.type in ("cpu", "cuda")

    try:
        module = copy.deepcopy(network)
    except Exception as exc:  # noqa: BLE001 (deepcopy can raise anything: re-raised as one ValueError)
        raise ValueError(
            f"make_fast_forward: needs a deep-copyable network ({type(exc).__name__}: {exc})"
        ) from None
    module.eval().requires_grad_(False)
    if channels_last:
        module.to(memory_format=_CL)

    plan: FusedIMDNPlan | None = None
    if (
        device.type == "cpu"
        and dtype == torch.float32
        and precision in ("fp32", "bf16")
        and channels_last
        and fusable(module)
        and mkldnn_fusion_available()
    ):
        plan = FusedIMDNPlan(module) if precision == "fp32" else FusedIMDNPlanBF16(module)
        problem = self_check(plan, module)
        if problem is not None:
            logger.warning(
                "make_fast_forward: the %s plan does not reproduce %s here (%s); using the eager forward%s",
                plan.name,
                type(network).__name__,
                problem,
                " under bf16 autocast" if precision == "bf16" else "",
            )
            plan = None
        elif isinstance(plan, FusedIMDNPlanBF16) and plan.emulated:
            logger.info(
                "make_fast_forward: this CPU has no native bf16 convolutions: the bf16 plan runs fp32 kernels "
                "on bf16 values (bf16 results, no faster than fp32)"
            )

    forward = FastForward(
        module,
        device=device,
        dtype=dtype,
        channels_last=channels_last,
        plan=plan,
        compile=compile,
        precision=precision,
    )
    logger.debug("make_fast_forward: %r", forward)
    return forward
