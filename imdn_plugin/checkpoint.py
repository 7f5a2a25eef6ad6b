"""Loading, recognising and saving IMDN checkpoints (torch only, no BasicSR).

Every checkpoint passes through :func:`load_state_dict`: it loads with
``weights_only=True`` (a file that would run code is refused, never executed),
accepts BasicSR files (``{'params': ..., 'params_ema': ...}``), bare state dicts
such as the authors' releases, and ``module.`` prefixes from ``DataParallel``.
Files named ``*.safetensors`` are read with the ``safetensors`` package (never
through ``torch.load``); :func:`save_network_file` writes either format by suffix.
File formats only: which network a state dict holds is read off its tensor
shapes by :func:`imdn_plugin.archs.describe` (each architecture's detection
lives beside it in :mod:`imdn_plugin.archs`), so that a mismatch can be
reported as "this file is IMDN ×2, the option file asks for IMDN ×4" instead of
a list of size errors.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Union

import torch
from torch import nn

from .archs.detect import NETWORKS, ArchSpec, build, describe, summarize
from .atomic import atomic_write
from .errors import CheckpointError

PathLike = Union[str, "os.PathLike[str]"]
logger = logging.getLogger(__name__)

#: Keys under which BasicSR-style files keep a state dict, in order of preference
#: after the requested one.
_PARAM_KEYS = ("params", "params_ema", "state_dict", "model")

#: Suffix that selects the safetensors format, for reading and writing.
SAFETENSORS_SUFFIX = ".safetensors"
#: safetensors metadata entry listing the parameter groups of a
#: :func:`save_network_file` file (JSON list; the first is stored unprefixed).
PARAM_KEYS_METADATA = "imdn_plugin.param_keys"


def _strip_prefix(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def extract_state_dict(
    obj: Any, param_key: str | None = "params", source: str = "checkpoint", *, exact: bool = False
) -> dict:
    """Return the network state dict held by a loaded checkpoint object.

    Looks under ``param_key`` first, then BasicSR's ``params``/``params_ema``
    (and ``state_dict``/``model``), and accepts a bare ``{name: tensor}`` dict.
    ``module.`` prefixes are removed.  With ``exact`` (a key the user named, e.g.
    ``--param-key params_ema``) only ``param_key`` is used: a file without it is
    refused, naming the keys it has, instead of falling back to another group.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
    if exact and param_key:
        if not isinstance(obj.get(param_key), Mapping):
            groups = [str(k) for k, v in obj.items() if isinstance(v, Mapping)]
            has = (f"its groups are: {', '.join(groups)}" if groups
                   else "it is a bare state dict (drop --param-key)")  # fmt: skip
            raise CheckpointError(f"{source}: --param-key {param_key!r}: no such group in the file; {has}")
        obj = {param_key: obj[param_key]}
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
    """Load a checkpoint file onto the CPU, with one-line errors.

    ``*.safetensors`` files are read by :func:`load_safetensors`; anything else
    by ``torch.load`` with ``weights_only=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return load_safetensors(path)
    kind = _sniff(path)
    if kind == "safetensors":
        raise CheckpointError(f"{path}: is a safetensors file, not a PyTorch pickle: name it *{SAFETENSORS_SUFFIX}")
    if kind is None:  # neither a zip (torch.save) nor a pickle (legacy torch.save): never unpickled
        what = _file_kind(path)
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({what}); expected a .pth/.pt or .safetensors file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        culprit = f"; it names {found.group(1)}" if found else ""
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors and plain containers, "
            f"which could run code (loaded with weights_only=True{culprit})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {first}") from None


def _safetensors_torch(path: Path) -> Any:
    """``safetensors.torch``, or a one-line error naming ``path`` when it is not installed."""
    try:
        import safetensors.torch
    except ModuleNotFoundError as exc:
        if exc.name not in ("safetensors", "safetensors.torch"):
            raise
        raise CheckpointError(f"{path}: reading/writing .safetensors needs the safetensors package: pip install safetensors") from None
    return safetensors.torch


def _sniff(path: Path) -> str | None:
    """What the first bytes of ``path`` look like: ``'safetensors'``, ``'torch-zip'``, ``'pickle'`` or ``None``."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return None
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100 * 2**20:
        return "safetensors"
    return None


#: Signatures of files people mistake for checkpoints.
_SIGNATURES = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8", "a JPEG image"), (b"GIF8", "a GIF image"), (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"RIFF", "a RIFF file (WebP image?)"),
    (b"\x08", "an ONNX model?"), (b"{", "a JSON/text file"),
)  # fmt: skip


def _file_kind(path: Path) -> str:
    """A short description of what ``path`` seems to be, from its first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if not head:
        return "empty file"
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return f"it looks like {name}"
    return f"unknown format, first bytes {head[:4].hex(' ')}"


def _safetensors_error(path: Path, exc: Exception) -> CheckpointError:
    """A one-line explanation of why ``path`` could not be read as safetensors."""
    size = path.stat().st_size
    kind = _sniff(path)
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    if kind in ("torch-zip", "pickle"):
        return CheckpointError(f"{path}: not a safetensors file (it looks like a PyTorch checkpoint: name it *.pth)")
    if kind is None and size < 9:
        return CheckpointError(f"{path}: too short for a safetensors file ({size} bytes): empty or truncated")
    if kind is None:
        return CheckpointError(f"{path}: not a safetensors file (no safetensors header: {first})")
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
    if 8 + header_len > size or "incomplete metadata" in first:
        return CheckpointError(f"{path}: truncated safetensors file ({size} bytes; its header describes more)")
    return CheckpointError(f"{path}: corrupt safetensors file: {first}")


def load_safetensors(path: PathLike) -> dict[str, Any]:
    """Read a ``.safetensors`` file onto the CPU with the safetensors package.

    Returns the tensors as a flat ``{name: tensor}`` dict; a file written by
    :func:`save_network_file` with several parameter groups (its metadata lists
    them) comes back as ``{'params': {...}, 'params_ema': {...}}`` instead.
    """
    path = Path(path)
    _safetensors_torch(path)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            flat = {name: f.get_tensor(name) for name in f.keys()}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise _safetensors_error(path, exc) from None
    if PARAM_KEYS_METADATA not in metadata:
        return flat
    try:
        keys = json.loads(metadata[PARAM_KEYS_METADATA])
        if not (isinstance(keys, list) and keys and all(isinstance(k, str) and k for k in keys)):
            raise ValueError(keys)
    except ValueError:
        raise CheckpointError(
            f"{path}: metadata {PARAM_KEYS_METADATA!r} is not a JSON list of names: {metadata[PARAM_KEYS_METADATA][:80]!r}"
        ) from None
    return split_param_groups(flat, keys)


def split_param_groups(flat: Mapping[str, Any], param_keys: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Undo :func:`save_network_file`'s flattening for safetensors.

    Tensors named ``<key>.<name>`` for ``key`` in ``param_keys[1:]`` go to group
    ``key``; all others to ``param_keys[0]``. Empty groups are left out.
    """
    first, *others = param_keys
    groups: dict[str, dict[str, Any]] = {key: {} for key in param_keys}
    for name, value in flat.items():
        for key in others:
            if name.startswith(key + "."):
                groups[key][name[len(key) + 1:]] = value
                break
        else:
            groups[first][name] = value
    return {key: group for key, group in groups.items() if group}


def load_state_dict(
    path: PathLike, param_key: str | None = "params", *, exact_key: bool = False
) -> dict[str, torch.Tensor]:
    """Load the network weights of ``path`` (any of the accepted forms).

    Refused with :class:`CheckpointError`: tensors that are not floating point,
    tensors whose strides overlap (:func:`check_tensors`), NaN/Inf weights, and
    with ``exact_key`` a file without the ``param_key`` group
    (:func:`extract_state_dict`).
    """
    state = extract_state_dict(load_checkpoint(path), param_key, source=str(path), exact=exact_key)
    check_tensors(state, source=str(path))
    check_finite(state, source=str(path))
    return state


#: Element types of network weights.  Integer tensors would be cast to float by
#: ``load_state_dict`` without a word (an ``I32`` header over a weight gives a garbage image).
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _layout_problem(t: torch.Tensor) -> str:
    """Why the values of ``t`` are not each stored once in its storage ('' if they are).

    A crafted file can declare a tensor of shape 65536×3×3×3 with stride 0 over a
    few bytes of storage; anything that copies it (``.contiguous()``, a network
    built from its shape) would allocate the declared size.  Dense tensors in any
    dimension order (``channels_last``) pass.
    """
    if t.numel() == 0:
        return ""
    dims = sorted((abs(st), sz) for st, sz in zip(t.stride(), t.shape, strict=False) if sz > 1)
    expected = 1
    for stride, size in dims:
        if stride < expected:
            return f"has overlapping strides {tuple(t.stride())}: its {t.numel():,} values are not stored each once"
        expected = stride * size
    span = t.storage_offset() + sum((sz - 1) * abs(st) for st, sz in zip(t.stride(), t.shape, strict=False)) + 1
    if span * t.element_size() > t.untyped_storage().nbytes():
        return "reaches past the end of its storage"
    return ""


def check_tensors(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Refuse integer/bool/complex tensors and tensors with overlapping strides, before any copy.

    Called on every loaded state dict (:func:`load_state_dict`), before anything
    of the declared sizes is allocated.
    """
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked") and tensor.dtype == torch.int64 and tensor.numel() == 1:
            continue  # BatchNorm's step counter (BasicSR's other networks): an integer by design
        if tensor.dtype not in WEIGHT_DTYPES:
            raise CheckpointError(
                f"{source}: tensor '{name}' is {str(tensor.dtype).removeprefix('torch.')}, not floating point; "
                "network weights are float32/float16/bfloat16 (the file is not a network checkpoint, or corrupt)"
            )
        problem = _layout_problem(tensor)
        if problem:
            raise CheckpointError(f"{source}: tensor '{name}' of shape {tuple(tensor.shape)} {problem}; refused")


def check_finite(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Refuse a state dict holding NaN or Inf (a diverged run or a corrupt file).

    Such weights turn every output into NaN, which an image writer would
    silently store as black; the first bad tensor is named instead.
    """
    for name, tensor in state.items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise CheckpointError(
                f"{source}: tensor '{name}' holds {bad} non-finite value(s) (NaN/Inf) of {tensor.numel()}; "
                "the weights are from a diverged training run or the file is corrupt"
            )


def load_into(network: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True, source: str = "checkpoint") -> None:
    """``load_state_dict`` with a readable error when the file is for another network.

    With ``strict`` (the default), a shape mismatch or missing/unexpected keys
    raise :class:`CheckpointError` saying what the file is and what the network
    is.  Without it (warm starts, e.g. ×4 from ×2), tensors whose shape differs
    are skipped with a warning, as BasicSR does.
    """
    if strict:
        check_shapes(network, state, source)
    own = network.state_dict()
    wrong_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong_shape:
        logger.warning("%s: skipping %d tensors of another shape: %s", source, len(wrong_shape), ", ".join(wrong_shape))
        state = {k: v for k, v in state.items() if k not in wrong_shape}
    network.load_state_dict(state, strict=strict)


def check_shapes(network: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """:class:`CheckpointError` unless ``state`` has exactly ``network``'s names and shapes (works on a
    ``meta`` network: nothing is copied)."""
    own = network.state_dict()
    wrong_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if wrong_shape or missing or unexpected:
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


def _atomic_write(path: PathLike, write: Callable[[BinaryIO], None], overwrite: bool) -> None:
    """:func:`imdn_plugin.atomic.atomic_write`; an existing file without ``overwrite`` is a CheckpointError."""
    try:
        atomic_write(path, write, overwrite=overwrite)
    except FileExistsError:
        raise CheckpointError(
            f"{path}: exists; not overwritten (ask for it: overwrite=True, or --force in the scripts)"
        ) from None


class _WriteErrorRecorder:
    """The file ``torch.save`` writes into, remembering an ``OSError`` of a write.

    torch reports a failed write of its zip writer as ``RuntimeError: ...
    unexpected pos ...``; the recorded error (e.g. ENOSPC) says what happened.
    Everything else (``name``, ``fileno``, ...) is the file's.
    """

    def __init__(self, f: Any) -> None:
        self._f = f
        self.error: OSError | None = None

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


def atomic_torch_save(obj: Any, path: PathLike, *, overwrite: bool = True) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename.

    A kill or a full disk during the write leaves any previous file at ``path``
    untouched; readers never see a partial file under the final name. The file
    mode follows the umask. ``overwrite=False`` refuses an existing ``path``.
    A failed write (full disk, no permission) is a :class:`CheckpointError`
    naming the file and the reason.
    """
    try:
        _atomic_write(path, lambda f: _torch_save_into(obj, f), overwrite)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot be written ({reason}); nothing was written under that name, "
            "the checkpoints already there are intact"
        ) from None


def _tensors_for_safetensors(state: Mapping[str, Any], source: str, seen: set[int]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared copies where needed (safetensors refuses views and shared storage)."""
    out = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {name!r} is a {type(value).__name__}, not a tensor (safetensors holds tensors only)")
        t = value.detach().to("cpu").contiguous()
        if t.numel() and t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def save_safetensors(
    state: Mapping[str, torch.Tensor],
    path: PathLike,
    *,
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a ``{name: tensor}`` state dict as ``.safetensors``, atomically (see :func:`atomic_torch_save`).

    Tensors are stored on the CPU under their own names. ``metadata`` adds
    string entries to the header next to ``format: pt``; an IMDN-family state
    dict also records its ``network_g`` options (``imdn_plugin.network_g``).
    An existing ``path`` is refused unless ``overwrite`` is true.
    """
    path = Path(path)
    st = _safetensors_torch(path)
    tensors = _tensors_for_safetensors(state, str(path), set())
    meta = {"format": "pt"}
    spec = describe(tensors)
    if spec is not None:
        meta["imdn_plugin.network_g"] = json.dumps(spec.network_opt())
    meta.update(metadata or {})
    data = st.save(tensors, metadata=meta)
    _atomic_write(path, lambda f: f.write(data), overwrite)
    logger.debug("%s: wrote %d tensors (safetensors)", path, len(tensors))


def save_network_file(
    state_by_key: Mapping[str, Mapping[str, torch.Tensor]], path: PathLike, *, overwrite: bool = False
) -> None:
    """Save network weights by parameter group (``{'params': sd, 'params_ema': sd_ema}``), format by suffix.

    - ``*.safetensors``: ``params`` (or, without it, the first group) under its
      own tensor names, so spandrel and other tools read it as a bare state
      dict; every other group ``k`` as ``k.<name>``; the header's
      ``imdn_plugin.param_keys`` lists the groups, unprefixed one first.
      :func:`load_state_dict` reads any group back by ``param_key``.
    - anything else: BasicSR's ``torch.save({'params': ..., ...})``.

    Atomic; an existing ``path`` is refused unless ``overwrite`` is true.
    """
    path = Path(path)
    if not state_by_key:
        raise ValueError("save_network_file: no parameter groups given")
    if path.suffix.lower() != SAFETENSORS_SUFFIX:
        atomic_torch_save({k: dict(v) for k, v in state_by_key.items()}, path, overwrite=overwrite)
        return
    first = "params" if "params" in state_by_key else next(iter(state_by_key))
    keys = [first] + [k for k in state_by_key if k != first]
    flat: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key in keys:
        if not key or "." in key:
            raise ValueError(f"save_network_file: parameter group name {key!r} must be non-empty and have no '.'")
        for name, t in _tensors_for_safetensors(state_by_key[key], str(path), seen).items():
            flat[name if key == first else f"{key}.{name}"] = t
    clash = [n for n in state_by_key[first] if any(n.startswith(k + ".") for k in keys[1:])]
    if clash or len(flat) != sum(len(v) for v in state_by_key.values()):
        raise ValueError(f"save_network_file: tensor names clash with group prefixes: {clash[:3]}")
    save_safetensors(flat, path, overwrite=overwrite, metadata={PARAM_KEYS_METADATA: json.dumps(keys)})


def load_network(
    path: PathLike, param_key: str | None = "params", *, exact_key: bool = False
) -> tuple[nn.Module, ArchSpec]:
    """Build the network of a checkpoint, type and sizes read off its shapes (:func:`imdn_plugin.archs.describe`).

    The sizes are checked against the file before the network is allocated
    (:func:`build_checked`); ``exact_key``: see :func:`extract_state_dict`.
    Returns the network (CPU, train mode as constructed) with the weights loaded, and its spec.
    A file that matches none of :data:`imdn_plugin.archs.NETWORKS` is a one-line
    :class:`CheckpointError` saying what it holds.
    """
    state = load_state_dict(path, param_key, exact_key=exact_key)
    spec = describe(state)
    if spec is None:
        raise CheckpointError(
            f"{path}: not a checkpoint of a network this plugin knows ({', '.join(NETWORKS)}): "
            f"found {summarize(state)}"
        )
    net = build_checked(spec, state, source=str(path))
    load_into(net, state, source=str(path))
    return net, spec


def build_checked(spec: ArchSpec, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """The network ``spec`` describes, built only once its shapes are known to match ``state``.

    The network is first built on the ``meta`` device (no memory): a
    hyper-parameter its constructor refuses (``num_feat`` not a multiple of
    16, ``num_block`` 0, ``upscale`` 0) or a shape that differs from the
    file's is a one-line :class:`CheckpointError` before anything of the
    declared sizes is allocated; the real network then holds exactly as many
    values as the file.
    """
    try:
        with torch.device("meta"):
            probe = build(spec)
    except (ValueError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source}: its shapes describe {spec}, which {spec.type} cannot build: {first}") from None
    check_shapes(probe, state, source)  # names and shapes only: raises before the real build
    return build(spec)
