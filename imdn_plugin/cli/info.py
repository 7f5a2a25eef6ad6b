"""``basicsr info``: architecture, scale, parameters (paper Eq. 9), Mult-Adds per output pixel
(Eq. 10) and the NTIRE efficient-SR counts (Mult-Adds, activations, convolutions for one
input of ``--size``, default 256x256) of a checkpoint or a registered network.

Counting is :func:`imdn_plugin.archs.complexity.count_complexity` (hooks on the network's
own convolutions during one forward pass).
"""
from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .common import OneLineParser

if TYPE_CHECKING:  # torch is imported after the arguments are parsed
    from torch import nn

    from ..archs.complexity import Complexity

#: The package's own networks (``imdn_plugin.archs.NETWORKS``; a test checks they agree).
OWN_NETWORKS = ("IMDN", "IMDN_AS", "IMDN_RTC", "IMDN_RTE")


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="basicsr info", description=__doc__.split("\n\n")[0].replace("``", ""))
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--weights", help="a checkpoint file (network and sizes read off its tensors)")
    what.add_argument("--network", help=f"a registered architecture by name ({', '.join(OWN_NETWORKS)} or any in BasicSR's ARCH_REGISTRY)")
    p.add_argument("--scale", type=int, default=None, help="with --network: its upscale argument")
    p.add_argument("--size", default="256x256", help="input size HxW (or one number) for the NTIRE counts (default 256x256)")
    p.add_argument("--param-key", default="params", help="key inside BasicSR files (params or params_ema)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def parse_size(text: str) -> tuple[int, int]:
    """``'HxW'`` or ``'N'`` -> ``(H, W)``; :class:`ConfigError` otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", text)
    if not m or int(m.group(1)) < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
        raise ConfigError(f"--size: expected HxW with positive integers (e.g. 256x256), got {text!r}")
    h = int(m.group(1))
    return h, int(m.group(2)) if m.group(2) is not None else h


def network_by_name(name: str, scale: int | None) -> nn.Module:
    """A freshly initialised network: this package's by type name, else BasicSR's ``ARCH_REGISTRY``."""
    from ..archs import NETWORKS

    cls = NETWORKS.get(name)
    if cls is None:
        from .common import load_plugins

        load_plugins()
        from basicsr.utils.registry import ARCH_REGISTRY

        if name not in ARCH_REGISTRY:
            raise ConfigError(f"--network: unknown architecture {name!r} (ours: {', '.join(NETWORKS)}; or any in BasicSR's ARCH_REGISTRY)")
        cls = ARCH_REGISTRY.get(name)
    params = inspect.signature(cls).parameters
    key = next((k for k in ("upscale", "scale", "upscaling_factor") if k in params), None)  # BasicSR archs vary
    if scale is not None and key is None:
        raise ConfigError(f"--scale {scale}: {name} takes no upscale/scale argument")
    kwargs = {k: 3 for k in ("num_in_ch", "num_out_ch") if k in params and params[k].default is inspect.Parameter.empty}
    if scale is not None and key:
        kwargs[key] = scale
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, RuntimeError) as exc:  # the constructor's own checks, with default arguments
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--network {name}: cannot be built with its default arguments: {first}") from None


def describe_network(network: nn.Module) -> str:
    from ..archs import describe

    spec = describe(network.state_dict())
    return str(spec) if spec is not None else type(network).__name__


def format_text(c: Complexity, what: str) -> str:
    from ..archs.complexity import round_k

    h, w = c.input_size
    return "\n".join([
        f"architecture: {what}",
        f"scale: x{c.scale}",
        f"params: {c.params:,} ({round_k(c.params)}; paper Eq. 9)",
        f"Mult-Adds per output pixel: {c.macs_per_output_pixel:,.0f} ({round_k(c.macs_per_output_pixel)}; paper Eq. 10)",
        f"NTIRE counts for a 1x3x{h}x{w} input: Mult-Adds {c.macs / 1e9:.2f} G, activations {c.activations / 1e6:.2f} M, "
        f"convs {c.convs}",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``basicsr info (--weights FILE | --network NAME [--scale S]) [--size HxW] [--json]``."""
    args = build_parser().parse_args(argv)
    size = parse_size(args.size)
    from ..archs.complexity import count_complexity
    if args.weights is not None:
        if args.scale is not None:
            raise ConfigError("--scale: goes with --network (a checkpoint's scale is read off its tensors)")
        from ..checkpoint import load_network

        network, spec = load_network(args.weights, args.param_key)
        name, what = spec.type, str(spec)
    else:
        network = network_by_name(args.network, args.scale)
        name, what = args.network, describe_network(network)
    try:
        c = count_complexity(network, size, name=name)
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--size {size[0]}x{size[1]}: {name} cannot run it: {first}") from None
    print(json.dumps(c.as_dict()) if args.json else format_text(c, what))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
