"""Loading, recognising and saving IMDN checkpoints (torch only, no BasicSR).

Every checkpoint passes through :func:`load_state_dict`: it loads with
``weights_only=True`` (a file that would run code is refused, never executed),
accepts BasicSR files (``{'params': ..., 'params_ema': ...}``), bare state dicts
such as the authors' releases, and ``module.`` prefixes from ``DataParallel``.
:func:`describe` reads the network type and hyper-parameters off the tensor
shapes, so that a mismatch can be reported as "this file is IMDN ×2, the option
file asks for IMDN ×4" instead of a list of size errors.
"""
from __future__ import annotations

import logging
import math
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from .atomic import atomic_write
from .errors import CheckpointError

PathLike = Union[str, "os.PathLike[str]"]
logger = logging.getLogger(__name__)

#: Keys under which BasicSR-style files keep a state dict, in order of preference
#: after the requested one.
_PARAM_KEYS = ("params", "params_ema", "state_dict", "model")


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
        if self.type == "IMDN":
            opt["upscale"] = self.upscale
        return opt

    @property
    def scale(self) -> int:
        """Output size / input size (1 for the size-preserving IMDN_AS)."""
        return 1 if self.type == "IMDN_AS" else self.upscale

    def __str__(self) -> str:
        what = f"{self.type} x{self.upscale}" if self.type == "IMDN" else self.type
        return (
            f"{what} (num_feat={self.num_feat}, num_block={self.num_block}, "
            f"{self.num_in_ch}->{self.num_out_ch} channels)"
        )


def _strip_prefix(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def extract_state_dict(obj: Any, param_key: Optional[str] = "params", source: str = "checkpoint") -> dict:
    """Return the network state dict held by a loaded checkpoint object.

    Looks under ``param_key`` first, then BasicSR's ``params``/``params_ema``
    (and ``state_dict``/``model``), and accepts a bare ``{name: tensor}`` dict.
    ``module.`` prefixes are removed.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
    keys = ([param_key] if param_key else []) + [k for k in _PARAM_KEYS if k != param_key]
    for key in keys:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = _strip_prefix(obj)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not state or bad:
        found = ", ".join(map(str, list(obj)[:5]))
        raise CheckpointError(
            f"{source}: no network weights found (looked for keys {', '.join(keys)} or a bare state dict; "
            f"top-level keys: {found})"
        )
    return state


def load_checkpoint(path: PathLike) -> Any:
    """``torch.load`` with ``weights_only=True`` onto the CPU, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors and plain containers, "
            f"which could run code (loaded with weights_only=True; {str(exc).splitlines()[0][:120]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {first}") from None


def load_state_dict(path: PathLike, param_key: Optional[str] = "params") -> dict[str, torch.Tensor]:
    """Load the network weights of ``path`` (any of the accepted forms)."""
    return extract_state_dict(load_checkpoint(path), param_key, source=str(path))


def describe(state: Mapping[str, torch.Tensor]) -> Optional[ArchSpec]:
    """Recognise IMDN / IMDN_AS and their hyper-parameters from tensor shapes.

    Returns ``None`` when the state dict is not an IMDN-family network.
    """
    if "fea_conv.weight" in state:
        arch, first = "IMDN", state["fea_conv.weight"]
    elif "fea_conv.0.weight" in state:
        arch, first = "IMDN_AS", state["fea_conv.0.weight"]
    else:
        return None
    up = state.get("upsampler.0.weight")
    if up is None or first.ndim != 4:
        return None
    num_feat, num_in_ch = int(first.shape[0]), int(first.shape[1])
    num_block = len({m.group(1) for k in state if (m := re.match(r"IMDB(\d+)\.c1\.weight$", k))})
    up_ch = int(up.shape[0])
    if arch == "IMDN_AS":
        num_out_ch, upscale = up_ch // 16, 4
    else:
        # out_ch * s^2 channels: assume out_ch == in_ch (RGB->RGB, Y->Y) when it divides.
        candidates = [num_in_ch] + [c for c in (3, 1) if c != num_in_ch]
        num_out_ch, upscale = num_in_ch, 0
        for ch in candidates:
            s = math.isqrt(up_ch // ch) if up_ch % ch == 0 else 0
            if s >= 2 and s * s * ch == up_ch:
                num_out_ch, upscale = ch, s
                break
    return ArchSpec(arch, num_in_ch, num_out_ch, num_feat, num_block, upscale)


def load_into(network: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True, source: str = "checkpoint") -> None:
    """``load_state_dict`` with a readable error when the file is for another network.

    With ``strict`` (the default), a shape mismatch or missing/unexpected keys
    raise :class:`CheckpointError` saying what the file is and what the network
    is.  Without it (warm starts, e.g. ×4 from ×2), tensors whose shape differs
    are skipped with a warning, as BasicSR does.
    """
    own = network.state_dict()
    wrong_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (wrong_shape or missing or unexpected):
        file_spec, net_spec = describe(state), describe(own)
        file_desc = str(file_spec) if file_spec else "not an IMDN-family network"
        detail = (
            f"first shape mismatch {wrong_shape[0]}: file {tuple(state[wrong_shape[0]].shape)} "
            f"vs network {tuple(own[wrong_shape[0]].shape)}"
            if wrong_shape
            else f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
        raise CheckpointError(
            f"{source}: checkpoint is {file_desc} but network_g is {net_spec or type(network).__name__}; {detail}"
        )
    if wrong_shape:
        logger.warning("%s: skipping %d tensors of another shape: %s", source, len(wrong_shape), ", ".join(wrong_shape))
        state = {k: v for k, v in state.items() if k not in wrong_shape}
    network.load_state_dict(state, strict=strict)


class _WriteErrorRecorder:
    """The file ``torch.save`` writes into, remembering an ``OSError`` of a write.

    torch reports a failed write of its zip writer as ``RuntimeError: ...
    unexpected pos ...``; the recorded error (e.g. ENOSPC) says what happened.
    Everything else (``name``, ``fileno``, ...) is the file's.
    """

    def __init__(self, f: Any) -> None:
        self._f = f
        self.error: Optional[OSError] = None

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._f, attr)

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._f.flush()


def _torch_save_into(obj: Any, f: Any) -> None:
    out = _WriteErrorRecorder(f)
    try:
        torch.save(obj, out)
    except RuntimeError:
        if out.error is not None:
            raise out.error from None
        raise


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` through :func:`imdn_plugin.atomic.atomic_write` (temporary file, fsync, rename).

    A kill or a full disk during the write leaves any previous file at ``path``
    untouched; readers never see a partial file under the final name.  A write
    that fails (full disk, no permission) is a :class:`CheckpointError` naming
    the file and the reason.
    """
    try:
        atomic_write(path, lambda f: _torch_save_into(obj, f))
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot be written ({reason}); nothing was written under that name, "
            "the checkpoints already there are intact"
        ) from None
