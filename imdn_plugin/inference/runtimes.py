"""IMDN run by ONNX Runtime or OpenVINO instead of PyTorch (``inference: backend``, ``infer --backend``).

:func:`runtime_forward` exports the network to ONNX in memory
(:func:`.onnx.module_to_onnx`, dynamic batch/height/width), compiles it with
:class:`.onnx.Graph` (the sessions of ``basicsr export`` and the benchmark too) and
returns a :class:`RuntimeForward`: the same interface as
:class:`.fast.FastForward`, so :func:`.predictor.build_predictor` drives it
through the very same whole-image / ACS / tiling code.  For tiles with
whole-image CCA statistics it offers :meth:`RuntimeForward.stages`: the
convolution-heavy stages (shallow features, each block's progressive refinement,
the tail) as ONNX graphs of their own in the runtime, CCA and the two 1×1
fusions (under 10% of the work) in torch.

Both runtimes run on the CPU.  ONNX Runtime computes in fp32 (its CPU
convolutions have no bf16).  OpenVINO takes ``INFERENCE_PRECISION_HINT``:
``fp32`` → f32, ``bf16`` → bf16, ``fp16`` → f16, and ``auto`` what it means for the
torch backend on the CPU (bf16 on a CPU with AMX, else fp32:
:func:`imdn_plugin.machine.resolve_precision`), never OpenVINO's own choice (which picked
bf16 on CPUs without AMX, slower there); what it really runs is logged (a CPU
without bf16 runs f32).  The packages are optional extras: ``pip install
".[onnx]"`` (onnxruntime) or ``".[openvino]"`` from the source tree.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ..archs import IMDNBase
from ..errors import ConfigError
from ..machine import BACKENDS, resolve_precision
from .global_tiling import ModuleStages
from .onnx import RUNTIME_PACKAGES, Graph, module_to_onnx, runtime_module

logger = logging.getLogger(__name__)


def require(backend: str) -> Any:
    """The runtime's Python module, or a one-line :class:`ConfigError` saying how to install it."""
    if backend not in RUNTIME_PACKAGES:
        raise ConfigError(f"inference:backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return runtime_module(backend)


class _Stage(nn.Module):
    """One stage of an IMDN as a module to export (``kind``: ``fea_conv``, ``distill`` or ``finish``)."""

    def __init__(self, network: IMDNBase, kind: str, block: int = 0) -> None:
        super().__init__()
        self.stages, self.kind, self.block = ModuleStages(network), kind, block

    def forward(self, x: Tensor, acc: Tensor | None = None) -> Tensor:
        if self.kind == "fea_conv":
            return self.stages.fea_conv(x)
        if self.kind == "distill":
            return self.stages.distill(self.block, x)
        assert acc is not None
        return self.stages.finish(x, acc.clone())  # the LeakyReLU works in place: not on a graph input


class RuntimeStages(ModuleStages):
    """:class:`.global_tiling.Stages` with the convolution-heavy stages in the runtime (graphs built on first use)."""

    def __init__(self, network: IMDNBase, make: Callable[[_Stage, int], Graph]) -> None:
        super().__init__(network)
        self._make = make
        self._graphs: dict[tuple[str, int], Graph] = {}

    def _graph(self, kind: str, block: int, inputs: int) -> Graph:
        if (kind, block) not in self._graphs:
            self._graphs[(kind, block)] = self._make(_Stage(self.network, kind, block), inputs)
        return self._graphs[(kind, block)]

    def fea_conv(self, x: Tensor) -> Tensor:
        return self._graph("fea_conv", 0, 1)(x)

    def distill(self, j: int, x: Tensor) -> Tensor:
        return self._graph("distill", j, 1)(x)

    def finish(self, fea: Tensor, acc: Tensor) -> Tensor:
        return self._graph("finish", 0, 2)(fea, acc)


class RuntimeForward:
    """A network run by ONNX Runtime or OpenVINO, with :class:`.fast.FastForward`'s interface."""

    fused_plan = None

    def __init__(self, network: nn.Module, backend: str, precision: str) -> None:
        """``backend`` and ``precision`` as checked by :class:`~imdn_plugin.options.InferenceOptions` (not again here)."""
        require(backend)
        self.backend = backend
        self.module = copy.deepcopy(network).float().cpu().eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.threads = torch.get_num_threads()
        self.requested = precision
        if precision == "auto":  # one meaning of auto for every backend: that of the torch backend on the CPU
            precision, why = resolve_precision("auto", torch.device("cpu")) if backend == "openvino" else ("fp32", "auto")
            logger.debug("backend %s: %s", backend, why)
        self._hint = precision
        if not isinstance(self.module, IMDNBase):
            raise ConfigError(f"backend {backend}: runs IMDN / IMDN_AS networks, got {type(network).__name__}")
        first = self.module.fea_conv
        self.in_ch = (first[0] if isinstance(first, nn.Sequential) else first).in_channels
        self.multiple = self.module.size_multiple
        self._whole = self._compile(self.module, [torch.rand(1, self.in_ch, 4 * self.multiple, 4 * self.multiple)])
        self.precision = self._whole.precision
        self._stages: RuntimeStages | None = None
        how = "" if precision in ("fp32", self.precision) else f" ({precision} requested)"
        logger.info("backend %s: %s runs in %s%s", backend, type(network).__name__, self.precision, how)

    def _compile(self, module: nn.Module, examples: list[Tensor]) -> Graph:
        names = ["input", "acc"][: len(examples)]
        with torch.no_grad():
            data = module_to_onnx(module, tuple(examples), names)
        return Graph(self.backend, data, self._hint, self.threads)

    def _stage_graph(self, stage: _Stage, inputs: int) -> Graph:
        nf = self.module.LR_conv.out_channels
        if stage.kind == "fea_conv":
            side = 8 * self.multiple
            examples = [torch.rand(1, self.in_ch, side, side)]
        else:  # distill(h) or finish(fea, acc): trunk maps
            examples = [torch.rand(1, nf, 8, 8) for _ in range(inputs)]
        return self._compile(stage, examples)

    @property
    def path(self) -> str:
        return f"{self.backend}-{self.precision}"

    def __repr__(self) -> str:
        return f"RuntimeForward({type(self.module).__name__}, path={self.path})"

    def stages(self) -> RuntimeStages:
        """Stages for :func:`.global_tiling.global_tiled_forward` (IMDN / IMDN_AS only)."""
        if self._stages is None:
            self._stages = RuntimeStages(self.module, self._stage_graph)
        return self._stages

    @contextmanager
    def context(self) -> Iterator[None]:
        with torch.inference_mode():
            yield

    def prepare(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.backend} forward: expected a torch.Tensor, got {type(x).__name__}")
        return x.detach().to("cpu", torch.float32).contiguous()

    def __call__(self, x: Tensor) -> Tensor:
        """Run the network on the NCHW batch ``x``; returns contiguous NCHW float32 on the CPU."""
        x = self.prepare(x)
        multiple = self.multiple
        if x.dim() != 4 or x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(
                f"{type(self.module).__name__}: input size {tuple(x.shape)} is not an NCHW batch with sides divisible "
                f"by {multiple}"
            )
        return self._whole(x)


def runtime_forward(network: nn.Module, backend: str, precision: str) -> RuntimeForward:
    """``network`` exported to ONNX and compiled by ``backend`` (``onnxruntime`` or ``openvino``).

    The two values are checked by the option schema's rules
    (:class:`~imdn_plugin.options.InferenceOptions`); :func:`.predictor.build_predictor`,
    whose record is checked already, makes :class:`RuntimeForward` directly.
    """
    from ..options.inference import InferenceOptions

    InferenceOptions(backend=backend, precision=precision)
    return RuntimeForward(network, backend, precision)
