"""The ``inference:`` block: how test images go through the network (:class:`InferenceOptions`).

Its rules live here, beside the rest of the option schema;
:func:`imdn_plugin.inference.build_predictor` takes the record and does not
check it again.  The precision words and backend names are read from
:mod:`imdn_plugin.inference` when a record is built (not at import: that
package imports this one).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..machine import BACKENDS, PRECISIONS, precision_problem
from .fields import Bool, Check, Choice, Int, Maybe, OptionError, Rule, is_int, mapping, unknown_key

MODES = ("auto", "whole", "acs", "tile")
TILE_STATS = ("global", "local")
#: Default context pixels around a local-statistics tile (``tiling.DEFAULT_OVERLAP``).
DEFAULT_TILE_OVERLAP = 32


def _acs_padding(value: Any, key: str) -> Any:
    if not is_int(value) or value < 4 or value % 4 or value > 4096:
        raise OptionError(key, value, "must be a positive multiple of 4 (paper Eq. 8: 4k, k >= 1), at most 4096")
    return value


#: The rule of each key of the block (docs/options.md lists them).
RULES: dict[str, Rule] = {
    "mode": Choice(*MODES),
    "acs_padding": Check("a positive multiple of 4 (paper Eq. 8)", _acs_padding),
    "tile": Maybe(Int(4), "no tiling"),
    "tile_overlap": Int(0, 4096),
    "tile_batch": Maybe(Int(1, 4096), "1 on CPU, 4 on GPU"),
    "tile_stats": Choice(*TILE_STATS),
    "channels_last": Maybe(Bool(), "the fast path's default"),
    "compile": Bool(),
    "precision": Choice(*PRECISIONS),
    "progress": Bool(),
    "backend": Choice(*BACKENDS),
}


@dataclass(frozen=True)
class InferenceOptions:
    """How test images go through the network (the ``inference:`` block of an option file).

    Every value is checked when the record is made (:data:`RULES`), with one
    line naming ``inference:<key>``; the consumers do not check again.

    Attributes:
        mode: ``auto`` (tiles if ``tile`` is set or the whole image would not fit in
            the available memory, else ACS for IMDN_AS and a whole-image forward for IMDN), ``whole`` (one forward, padded to
            the network's size multiple), ``acs`` or ``tile``.
        acs_padding: ACS padding, ``4k`` with ``k >= 1`` (paper Eq. 8; 32).
        tile: Largest tile side in input pixels (``None``: no tiling).
        tile_batch: Tiles per network call with ``tile_stats: local`` (``None``: 1 on CPU,
            where more are not faster and cost memory; 4 elsewhere); global tiles go one per call.
        tile_stats: ``global`` (default): every CCA of IMDN/IMDN_AS with whole-image
            statistics, the network streamed stage by stage through the tiles;
            ``local``: each tile's own statistics.
        tile_overlap: Context pixels around each tile for ``tile_stats: local``.
        channels_last: Memory format of the fast path (``None``: its default).
        compile: Use ``torch.compile`` in the fast path.
        precision: ``fp32`` (default: exact), ``bf16``, ``fp16`` (CUDA) or ``auto``.
        progress: Show a progress bar over tiles.
        backend: ``torch`` (default), ``onnxruntime`` or ``openvino``.
    """

    mode: str = "auto"
    acs_padding: int = 32
    tile: int | None = None
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    tile_batch: int | None = None
    tile_stats: str = "global"
    channels_last: bool | None = None
    compile: bool = False
    precision: str = "fp32"
    progress: bool = False
    backend: str = "torch"

    def __post_init__(self) -> None:
        for name, rule in RULES.items():
            rule(getattr(self, name), f"inference:{name}")
        if self.mode == "tile" and self.tile is None:
            raise OptionError("inference:tile", None, "must be set when mode is 'tile'")
        # Global tiles read the exact context of each stage: the overlap only matters for local ones.
        if self.tile is not None and self.tile_stats == "local" and 2 * self.tile_overlap >= self.tile:
            raise OptionError("inference:tile_overlap", self.tile_overlap, f"must be less than half the tile ({self.tile})")
        if self.backend != "torch" and (self.compile is True or self.channels_last is True):
            key = "compile" if self.compile is True else "channels_last"
            raise OptionError(
                f"inference:{key}", getattr(self, key),
                f"is a torch option; the {self.backend} backend does not take it (leave it out)",
            )  # fmt: skip
        problem = precision_problem(self.backend, self.precision)
        if problem:
            raise OptionError("inference:precision", self.precision, problem)

    @classmethod
    def from_dict(cls, opt: Mapping[str, Any] | None, where: str = "inference") -> InferenceOptions:
        """Build from an option-file block, rejecting unknown keys by name."""
        if opt is None:
            return cls()
        mapping(opt, where)
        names = [f.name for f in dataclasses.fields(cls)]
        for key in opt:
            if key not in names:
                raise unknown_key(where, key, names)
        return cls(**dict(opt))

    def check_device(self, device_type: str) -> None:
        """Refuse a precision the device cannot run (``fp16`` needs CUDA)."""
        if self.precision == "fp16" and device_type != "cuda":
            raise OptionError(
                "inference:precision", self.precision,
                f"must be fp32, bf16 or auto on {device_type} (fp16 runs on a CUDA device only)",
            )  # fmt: skip
