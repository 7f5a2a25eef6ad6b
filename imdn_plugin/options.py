"""Checks of BasicSR option dicts, run before any work starts.

BasicSR passes ``network_g`` straight to the class (a typo becomes a
``TypeError`` deep in a traceback) and finds a missing dataset folder only when
the dataset is built.  :func:`validate_options` rejects such files up front with
one line that names the key, the value and the valid choices.  No BasicSR import.
"""
from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Mapping
from typing import Any, Callable, Optional

from .errors import ConfigError


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(section: str, given: Mapping[str, Any], valid: list[str]) -> None:
    """Raise :class:`ConfigError` for the first key of ``given`` not in ``valid``."""
    for key in given:
        if key not in valid:
            raise ConfigError(
                f"{section}: unknown key '{key}'{_suggest(str(key), valid)}; valid keys: {', '.join(valid)}"
            )


def check_network_opt(net_opt: Mapping[str, Any], lookup: Callable[[str], type], section: str = "network_g") -> None:
    """Check ``network_g`` keys against the constructor of the class it names.

    Only classes whose constructor has no ``**kwargs`` can be checked; others
    (some of BasicSR's own) are left to BasicSR.
    """
    if not isinstance(net_opt, Mapping) or "type" not in net_opt:
        raise ConfigError(f"{section}: needs a 'type' key naming the network (e.g. IMDN or IMDN_AS)")
    try:
        cls = lookup(net_opt["type"])
    except KeyError:
        raise ConfigError(f"{section}: unknown network type '{net_opt['type']}'") from None
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n in params if n != "self"]
    check_keys(f"{section} ({net_opt['type']})", {k: v for k, v in net_opt.items() if k != "type"}, valid)
    for name, value in net_opt.items():
        if name in ("num_in_ch", "num_out_ch", "num_feat", "num_block") and not _positive_int(value):
            raise ConfigError(f"{section}: {name} must be a positive integer, got {value!r}")
        if name == "upscale" and not (_positive_int(value) and value >= 2):
            raise ConfigError(f"{section}: upscale must be an integer >= 2, got {value!r}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_dataset_paths(opt: Mapping[str, Any]) -> None:
    """Every ``dataroot_*`` / ``meta_info_file`` of every dataset must exist now."""
    for phase, dataset in (opt.get("datasets") or {}).items():
        if not isinstance(dataset, Mapping):
            raise ConfigError(f"datasets:{phase}: expected a mapping of dataset options, got {dataset!r}")
        backend = (dataset.get("io_backend") or {}).get("type", "disk")
        for key in ("dataroot_gt", "dataroot_lq", "meta_info_file"):
            path = dataset.get(key)
            if path is None:
                continue
            if not os.path.exists(path):
                raise ConfigError(f"datasets:{phase}:{key}: path does not exist: {path} (cwd: {os.getcwd()})")
            if backend == "lmdb" and key.startswith("dataroot"):
                if not os.path.isfile(os.path.join(path, "data.mdb")):
                    raise ConfigError(f"datasets:{phase}:{key}: not an LMDB (no data.mdb): {path}")
                if not os.path.isfile(os.path.join(path, "meta_info.txt")):
                    raise ConfigError(f"datasets:{phase}:{key}: LMDB has no meta_info.txt: {path}")
                check_lmdb_readable(f"datasets:{phase}:{key}", path)


def check_lmdb_readable(where: str, path: str) -> None:
    """``data.mdb`` is whole and holds every ``meta_info.txt`` key (:func:`imdn_plugin.data.lmdb.check_lmdb_keys`).

    A truncated ``data.mdb`` would otherwise kill training with SIGBUS and no
    message, and a missing key stop it only when a batch needs that key.
    """
    import lmdb

    from .data.lmdb import check_lmdb_keys

    try:
        check_lmdb_keys(path)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except lmdb.Error as exc:  # py-lmdb opens a path once per process: an earlier run here holds it open
        if "already open" not in str(exc):
            raise ConfigError(f"{where}: {path}: not a readable LMDB ({exc})") from None


def check_loader_workers(opt: Mapping[str, Any]) -> None:
    """``persistent_workers: true`` needs loader workers (torch refuses it with none, once the loader is built).

    BasicSR's loaders use ``num_worker_per_gpu`` workers for the training set
    and none for validation and test sets.
    """
    for phase, dataset in (opt.get("datasets") or {}).items():
        if not isinstance(dataset, Mapping):
            continue  # reported by check_dataset_paths
        persistent = dataset.get("persistent_workers", False)
        if persistent not in (True, False):
            raise ConfigError(f"datasets:{phase}:persistent_workers: must be true or false, got {persistent!r}")
        kind = dataset.get("phase", str(phase).split("_")[0])
        workers = dataset.get("num_worker_per_gpu", 0) if kind == "train" else 0
        if kind == "train" and not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0):
            raise ConfigError(f"datasets:{phase}:num_worker_per_gpu: must be an integer >= 0, got {workers!r}")
        if persistent and workers == 0:
            why = "num_worker_per_gpu is 0" if kind == "train" else f"BasicSR loads {kind} sets without workers"
            raise ConfigError(
                f"datasets:{phase}:persistent_workers: true needs loader workers, but {why}; "
                "set persistent_workers: false" + (" or num_worker_per_gpu > 0" if kind == "train" else "")
            )


def check_scale(opt: Mapping[str, Any]) -> None:
    scale = opt.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0):
        raise ConfigError(f"scale: must be a positive number, got {scale!r}")


#: The ``train:`` keys of the plugin's own (beside BasicSR's) and their values.
TRAIN_AMP = (None, "bf16", "fp16")


def train_options(opt: Mapping[str, Any]) -> tuple[bool, Optional[str]]:
    """``(channels_last, amp)`` of the ``train:`` block (``IMDNModel``'s own keys), checked.

    ``amp: fp16`` needs CUDA: ``num_gpu: 0`` (or no CUDA device) is refused.
    """
    train = opt.get("train") or {}
    if not isinstance(train, Mapping):
        raise ConfigError(f"train: expected a mapping of options, got {train!r}")
    channels_last = train.get("channels_last", False)
    if channels_last not in (True, False):
        raise ConfigError(f"train:channels_last: must be true or false, got {channels_last!r}")
    amp = train.get("amp")
    if amp not in TRAIN_AMP:
        raise ConfigError(f"train:amp: must be ~, bf16 or fp16, got {amp!r}")
    if amp == "fp16" and opt.get("is_train", True) and not _cuda_in_use(opt):
        raise ConfigError("train:amp: fp16 needs a CUDA device (use bf16 or ~ on the CPU)")
    return channels_last, amp


def _cuda_in_use(opt: Mapping[str, Any]) -> bool:
    import torch

    return bool(opt.get("num_gpu", 0)) and torch.cuda.is_available()


def validate_options(
    opt: Mapping[str, Any],
    lookup_arch: Callable[[str], type],
    check_inference: Optional[Callable[[Any], Any]] = None,
) -> None:
    """Run every start-up check on a parsed BasicSR option dict."""
    check_scale(opt)
    for key in ("network_g",):
        if key in opt:
            check_network_opt(opt[key], lookup_arch, key)
    if check_inference is not None:
        check_inference(opt.get("inference"))
    if "train" in opt:
        train_options(opt)
    check_dataset_paths(opt)
    check_loader_workers(opt)
    pretrain = (opt.get("path") or {}).get("pretrain_network_g")
    if pretrain is not None and not os.path.isfile(pretrain):
        raise ConfigError(f"path:pretrain_network_g: file does not exist: {pretrain} (cwd: {os.getcwd()})")
