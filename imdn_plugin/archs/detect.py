"""Architecture detection for every network of the package (torch only).

Each architecture module carries its own ``detect(state) -> ArchSpec | None``
(spandrel's pattern); this module tries them in turn, builds the network a spec
describes, and summarises a state dict that matches none of them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .imdn_arch import IMDN, IMDN_AS
from .imdn_arch import detect as _detect_imdn
from .imdn_rt_arch import IMDN_RTC, IMDN_RTE, detect_rtc, detect_rte
from .spec import ArchSpec

__all__ = ["DETECTORS", "NETWORKS", "ArchSpec", "build", "describe", "summarize"]

#: Network classes by ``ArchSpec.type`` / option-file ``type``.
NETWORKS: dict[str, type[nn.Module]] = {"IMDN": IMDN, "IMDN_AS": IMDN_AS, "IMDN_RTC": IMDN_RTC, "IMDN_RTE": IMDN_RTE}

#: Detection functions, tried in order; their key sets are disjoint.
DETECTORS: tuple[Callable[[Mapping[str, Any]], ArchSpec | None], ...] = (_detect_imdn, detect_rtc, detect_rte)


def describe(state: Mapping[str, Any]) -> ArchSpec | None:
    """The network type and hyper-parameters of a state dict (no ``module.`` prefix), or None."""
    for detect in DETECTORS:
        spec = detect(state)
        if spec is not None:
            return spec
    return None


def build(spec: ArchSpec) -> nn.Module:
    """A freshly initialised network of the type and sizes of ``spec``."""
    opt = spec.network_opt()
    return NETWORKS[opt.pop("type")](**opt)


def summarize(state: Mapping[str, Any], max_keys: int = 4) -> str:
    """One line on what a state dict holds: tensor count, parameters, first keys."""
    numel = sum(int(getattr(v, "numel", lambda: 0)()) for v in state.values())
    keys = ", ".join(list(state)[:max_keys]) + (", ..." if len(state) > max_keys else "")
    return f"{len(state)} tensors, {numel:,} values, keys {keys}"
