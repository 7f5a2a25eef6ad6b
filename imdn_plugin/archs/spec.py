"""What a state dict is: the network type and hyper-parameters read off its tensor shapes (torch only)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ArchSpec", "split_upsampler"]

#: Networks whose output size equals the input size (no ``upscale`` option).
_SIZE_PRESERVING = ("IMDN_AS",)


@dataclass(frozen=True)
class ArchSpec:
    """What a state dict is, as read from its tensor shapes."""

    type: str
    num_in_ch: int
    num_out_ch: int
    num_feat: int
    num_block: int
    upscale: int

    def network_opt(self) -> dict[str, Any]:
        """The ``network_g`` options that build this network."""
        opt: dict[str, Any] = {
            "type": self.type,
            "num_in_ch": self.num_in_ch,
            "num_out_ch": self.num_out_ch,
            "num_feat": self.num_feat,
            "num_block": self.num_block,
        }
        if self.type not in _SIZE_PRESERVING:
            opt["upscale"] = self.upscale
        return opt

    @property
    def scale(self) -> int:
        """Output size / input size (1 for the size-preserving IMDN_AS)."""
        return 1 if self.type in _SIZE_PRESERVING else self.upscale

    def __str__(self) -> str:
        what = self.type if self.type in _SIZE_PRESERVING else f"{self.type} x{self.upscale}"
        return (
            f"{what} (num_feat={self.num_feat}, num_block={self.num_block}, "
            f"{self.num_in_ch}->{self.num_out_ch} channels)"
        )


def split_upsampler(up_ch: int, num_in_ch: int) -> tuple[int, int]:
    """``(out_ch, factor)`` with ``out_ch · factor² = up_ch`` for a pixel-shuffle conv of ``up_ch`` outputs.

    Prefers ``out_ch == num_in_ch`` (RGB->RGB, Y->Y), then 3, then 1; ``(num_in_ch, 0)``
    when no factor >= 2 fits.
    """
    for ch in [num_in_ch] + [c for c in (3, 1) if c != num_in_ch]:
        s = math.isqrt(up_ch // ch) if up_ch % ch == 0 else 0
        if s >= 2 and s * s * ch == up_ch:
            return ch, s
    return num_in_ch, 0


def conv_weight(state: Mapping[str, Any], key: str) -> torch.Tensor | None:
    """``state[key]`` when it is a 4-D tensor (a conv weight), else None."""
    t = state.get(key)
    return t if isinstance(t, torch.Tensor) and t.ndim == 4 else None
