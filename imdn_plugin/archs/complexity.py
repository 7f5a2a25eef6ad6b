"""Parameters, Mult-Adds, activations and convolutions of a network, counted from the network itself.

* Parameters: paper Eq. 9, ``Σ (k²·C_in·C_out + C_out)`` over the convolutions, i.e.
  every learnable tensor (``sum(p.numel())``).
* Mult-Adds: paper Eq. 10, ``Σ k²·(C_in/groups)·C_out·H_out·W_out`` over the
  convolutions actually run (biases and element-wise operations are not counted,
  as in the paper and fvcore); the paper reports them per output (HR) pixel.
* NTIRE efficient-SR protocol: Mult-Adds ("FLOPs" in the challenge reports, counted
  as multiply-accumulates) for one 3×256×256 input, activations (elements of every
  convolution output) and the number of convolutions run.

Counting uses forward hooks on ``nn.Conv2d`` / ``nn.ConvTranspose2d`` / ``nn.Linear``
during one forward pass, on the ``meta`` device where the network allows it (no
arithmetic, no memory) and on the CPU otherwise.  Torch only.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Complexity", "count_complexity"]

#: Default NTIRE input size (height, width).
NTIRE_SIZE = (256, 256)


@dataclass(frozen=True)
class Complexity:
    """What :func:`count_complexity` counted for one ``1×C×H×W`` input."""

    architecture: str
    scale: int
    params: int
    macs_per_output_pixel: float
    macs: int
    activations: int
    convs: int
    input_size: tuple[int, int]
    output_size: tuple[int, int]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"], d["output_size"] = list(self.input_size), list(self.output_size)
        return d


class _Counter:
    """Forward hooks that add up Mult-Adds, convolution outputs and convolution calls."""

    def __init__(self) -> None:
        self.macs = 0
        self.activations = 0
        self.convs = 0

    def conv(self, module: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        kh, kw = module.kernel_size
        self.macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        self.activations += output.numel()
        self.convs += 1

    def conv_transpose(self, module: nn.ConvTranspose2d, inputs: tuple, output: torch.Tensor) -> None:
        kh, kw = module.kernel_size
        self.macs += inputs[0].numel() * (module.out_channels // module.groups) * kh * kw
        self.activations += output.numel()
        self.convs += 1

    def linear(self, module: nn.Linear, inputs: tuple, output: torch.Tensor) -> None:
        self.macs += output.numel() * module.in_features


def _input_channels(network: nn.Module) -> int:
    """This package's networks: from their detected spec; others: the first convolution registered."""
    from .detect import describe

    spec = describe(network.state_dict())
    if spec is not None:
        return spec.num_in_ch
    for m in network.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return int(m.in_channels)
    raise ValueError(f"{type(network).__name__}: has no convolution to read the input channels from")


def _run(network: nn.Module, x: torch.Tensor, counter: _Counter) -> torch.Tensor:
    handles = []
    for m in network.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(counter.conv))
        elif isinstance(m, nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(counter.conv_transpose))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(counter.linear))
    try:
        with torch.no_grad():
            return network(x)
    finally:
        for h in handles:
            h.remove()


def count_complexity(
    network: nn.Module, size: tuple[int, int] = NTIRE_SIZE, in_channels: int | None = None, name: str | None = None
) -> Complexity:
    """Count parameters (Eq. 9) and, for one ``1×C×H×W`` input of ``size``, Mult-Adds (Eq. 10),
    conv activations and conv calls; ``macs_per_output_pixel`` = Mult-Adds / (output H·W).

    The network is not changed (a copy runs). Raises ``ValueError`` when the network refuses
    the size (e.g. IMDN_RTE needs even sides, IMDN_AS multiples of 4).
    """
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {h}x{w}")
    params = sum(p.numel() for p in network.parameters())
    c = in_channels or _input_channels(network)
    out: torch.Tensor | None = None
    counter = _Counter()
    try:  # shapes only: no arithmetic, no memory
        net = copy.deepcopy(network).to("meta").eval()
        out = _run(net, torch.empty(1, c, h, w, device="meta"), counter)
    except (NotImplementedError, RuntimeError):
        counter = _Counter()
        net = copy.deepcopy(network).to("cpu").float().eval()
        out = _run(net, torch.zeros(1, c, h, w), counter)
    oh, ow = int(out.shape[-2]), int(out.shape[-1])
    scale = oh // h if oh % h == 0 and ow == w * (oh // h) else int(getattr(network, "scale", 0))
    return Complexity(
        architecture=name or type(network).__name__,
        scale=scale,
        params=int(params),
        macs_per_output_pixel=counter.macs / (oh * ow),
        macs=int(counter.macs),
        activations=int(counter.activations),
        convs=int(counter.convs),
        input_size=(h, w),
        output_size=(oh, ow),
    )


def round_k(n: float) -> str:
    """``n`` in thousands rounded half up, as the paper's tables print (``694404 -> '694K'``)."""
    return f"{math.floor(n / 1000 + 0.5)}K"
