"""Inference: feeding images through the networks (pure PyTorch, no BasicSR).

* :func:`build_predictor` (:mod:`.predictor`) — the one call: network +
  :class:`InferenceOptions` → ``tensor -> tensor`` (fast forward, ACS or tiles).
* :mod:`.cropping` — the paper's adaptive cropping strategy (§3.3) and padding.
* :mod:`.tiling` — tile geometry and memory-bounded tiled inference;
  :mod:`.global_tiling` — tiles with whole-image CCA statistics.
* :mod:`.fast` — the fast forward and its run context; :mod:`.fused_cpu` — the
  fused oneDNN CPU plan it runs on CPU.
"""
from .cropping import acs_forward, pad_forward
from .fast import make_fast_forward
from .global_tiling import global_tiled_forward
from .predictor import InferenceOptions, build_predictor, network_geometry
from .tiling import tiled_forward

__all__ = [
    "InferenceOptions",
    "acs_forward",
    "build_predictor",
    "global_tiled_forward",
    "make_fast_forward",
    "network_geometry",
    "pad_forward",
    "tiled_forward",
]
