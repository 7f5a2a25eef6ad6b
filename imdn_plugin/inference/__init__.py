"""Inference: feeding images through the networks (pure PyTorch, no BasicSR).

* :func:`build_predictor` — the one call: network + :class:`InferenceOptions`
  → ``tensor -> tensor`` (fast forward, ACS or tiles).
* :mod:`.cropping` — the paper's adaptive cropping strategy (§3.3) and
  memory-bounded tiling as plain functions.
* :mod:`.fast` — the fast forward itself.
"""
from .cropping import acs_forward, pad_forward, tiled_forward
from .fast import make_fast_forward
from .predictor import InferenceOptions, build_predictor, network_geometry

__all__ = [
    "InferenceOptions",
    "acs_forward",
    "build_predictor",
    "make_fast_forward",
    "network_geometry",
    "pad_forward",
    "tiled_forward",
]
