"""Every contact with BasicSR's machinery: registration and pipeline fixes.

:func:`register` (the ``basicsr.plugins`` entry point of this package) puts the
networks, the model and the datasets into BasicSR's registries — idempotently —
and applies three run-time fixes to BasicSR 1.4.2's train/test pipelines
(function attributes replaced in memory; no file of BasicSR is edited):

* ``parse_options`` is followed by :func:`imdn_plugin.options.validate_options`,
  so a typo in ``network_g`` or a missing dataset folder stops the run before
  any work, with one line naming the key.
* ``init_dist`` works without CUDA (gloo), so ``--launcher pytorch`` runs on CPU.
* ``load_resume_state`` loads onto the CPU (BasicSR calls
  ``torch.cuda.current_device()`` unconditionally), with ``weights_only=True``,
  and ``--auto_resume`` skips a training state or network file that cannot be
  read instead of crashing on it.
* ``PairedImageDataset`` reads images through :mod:`imdn_plugin.imageio`:
  grayscale, RGBA, palette and 16-bit files (16-bit keeps its precision), and
  an unreadable file is an error that names it (BasicSR fails with
  ``'NoneType' object has no attribute 'astype'``).
* Exact resume: each training sample's augmentation is drawn from RNGs seeded
  by ``(manual_seed, epoch, position)`` rather than from whichever process
  happens to load it, and a resumed run skips the batches of the interrupted
  epoch that were already used.  A run stopped and resumed therefore sees the
  same batches as an uninterrupted one, with any number of loader workers.
"""
from __future__ import annotations

import contextlib
import logging
import os
import os.path as osp
import random
import re
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .errors import CheckpointError, ConfigError, ImageReadError

logger = logging.getLogger(__name__)

_PATCH_FLAG = "_imdn_plugin_patch"


def register() -> None:
    """Register IMDN, IMDN_AS, CCALayer, IMDNModel and the datasets; patch the pipelines.

    Safe to call any number of times, from the command and from user code.
    """
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY

    from .archs import IMDN, IMDN_AS, CCALayer
    from .data import AnyScalePairedDataset
    from .model import IMDNModel

    for registry, obj in (
        (ARCH_REGISTRY, IMDN),
        (ARCH_REGISTRY, IMDN_AS),
        (ARCH_REGISTRY, CCALayer),
        (MODEL_REGISTRY, IMDNModel),
        (DATASET_REGISTRY, AnyScalePairedDataset),
    ):
        _register_once(registry, obj)
    patch_pipelines()


def _register_once(registry: Any, obj: type) -> None:
    name = obj.__name__
    if name not in registry:
        registry.register(obj)
        return
    existing = registry._obj_map[name]  # BasicSR's Registry has no public getter that does not print
    if existing is obj:
        return
    if (existing.__module__, existing.__qualname__) == (obj.__module__, obj.__qualname__):
        registry._obj_map[name] = obj  # the same class from a reloaded module
        return
    raise RuntimeError(
        f"BasicSR's {registry._name} registry already holds a different '{name}' "
        f"(from {existing.__module__}); remove one of the two plugins"
    )


def _lookup_arch(name: str) -> type:
    from basicsr.utils.registry import ARCH_REGISTRY

    if name not in ARCH_REGISTRY:
        raise KeyError(name)
    return ARCH_REGISTRY._obj_map[name]


# ---------------------------------------------------------------------------- pipeline fixes
def patch_pipelines() -> None:
    """Apply the run-time fixes to ``basicsr.train``, ``basicsr.test`` and ``basicsr.utils.options``."""
    import basicsr.test
    import basicsr.train
    import basicsr.utils.options

    for module in (basicsr.train, basicsr.test):
        if not getattr(module.parse_options, _PATCH_FLAG, False):
            module.parse_options = _validated(module.parse_options)
    if not getattr(basicsr.utils.options.init_dist, _PATCH_FLAG, False):
        basicsr.utils.options.init_dist = init_dist
    if not getattr(basicsr.train.load_resume_state, _PATCH_FLAG, False):
        basicsr.train.load_resume_state = load_resume_state
    import basicsr.data.paired_image_dataset as paired

    if not getattr(paired.imfrombytes, _PATCH_FLAG, False):
        paired.imfrombytes = imfrombytes
        paired.FileClient = _naming_file_client(paired.FileClient)
    if not getattr(basicsr.train.create_train_val_dataloader, _PATCH_FLAG, False):
        basicsr.train.create_train_val_dataloader = _resumable_loaders(basicsr.train.create_train_val_dataloader)
        basicsr.train.build_dataset = _seeded_train_datasets(basicsr.train.build_dataset)
        basicsr.train.EnlargedSampler = _resumable_sampler_class()


def _flag(func: Any) -> Any:
    setattr(func, _PATCH_FLAG, True)
    return func


def _validated(parse_options: Any) -> Any:
    from .inference.predictor import InferenceOptions
    from .options import validate_options

    @_flag
    def parse_and_validate(root_path: str, is_train: bool = True):
        opt, args = parse_options(root_path, is_train=is_train)
        validate_options(opt, _lookup_arch, InferenceOptions.from_dict)
        return opt, args

    return parse_and_validate


@_flag
def init_dist(launcher: str, backend: Optional[str] = None, **kwargs: Any) -> None:
    """BasicSR's ``init_dist`` that also works without CUDA (gloo on CPU)."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method("spawn")
    cuda = torch.cuda.is_available() and torch.cuda.device_count() > 0
    if launcher == "pytorch":
        if cuda:
            local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dist.init_process_group(backend=backend or ("nccl" if cuda else "gloo"), **kwargs)
    elif launcher == "slurm":
        if not cuda:
            raise ConfigError("--launcher slurm: needs CUDA devices; on CPU use torchrun with --launcher pytorch")
        from basicsr.utils.dist_util import _init_dist_slurm

        _init_dist_slurm(backend or "nccl", **kwargs)
    else:
        raise ConfigError(f"--launcher: unknown launcher '{launcher}' (none, pytorch, slurm)")


@_flag
def load_resume_state(opt: dict) -> Optional[dict]:
    """Find and load the training state to resume from (CPU-safe, skips unreadable files).

    With ``--auto_resume`` the newest ``<iter>.state`` whose state file *and*
    ``net_g_<iter>.pth`` both load is used; unreadable ones (a kill during a
    write with BasicSR's own non-atomic saver, a full disk) are skipped with a
    warning.  An explicit ``path: resume_state`` must load, or it is an error.
    """
    from basicsr.utils import check_resume

    if opt["auto_resume"]:
        state_dir = opt["path"]["training_states"]
        state = _newest_complete_state(state_dir, opt["path"]["models"])
        if state is None:
            return None
        path, resume_state = state
        opt["path"]["resume_state"] = path
    else:
        path = opt["path"].get("resume_state")
        if not path:
            return None
        resume_state = load_checkpoint(path)
    if not isinstance(resume_state, dict) or "iter" not in resume_state:
        raise CheckpointError(f"{path}: not a BasicSR training state (no 'iter' key)")
    check_resume(opt, resume_state["iter"])
    _RESUME_POSITION.update(epoch=resume_state["epoch"], iter=resume_state["iter"])
    return resume_state


def _newest_complete_state(state_dir: str, models_dir: str) -> Optional[tuple[str, dict]]:
    if not osp.isdir(state_dir):
        return None
    iters = sorted(
        (int(m.group(1)) for f in os.listdir(state_dir) if (m := re.fullmatch(r"(\d+)\.state", f))), reverse=True
    )
    for it in iters:
        path = osp.join(state_dir, f"{it}.state")
        try:
            state = load_checkpoint(path)
            load_checkpoint(osp.join(models_dir, f"net_g_{it}.pth"))
        except CheckpointError as exc:
            logger.warning("auto_resume: skipping iteration %d: %s", it, exc)
            continue
        return path, state
    return None


# ---------------------------------------------------------------------------- image reading
class _NamedBytes(bytes):
    """Encoded image bytes that remember where they came from."""

    source: str = "image"


def _naming_file_client(file_client: type) -> type:
    class NamingFileClient(file_client):  # type: ignore[misc, valid-type]
        """BasicSR's ``FileClient`` whose ``get`` result carries the file path / LMDB key."""

        def get(self, filepath: Any, client_key: str = "default") -> bytes:
            where = f"{filepath}" if self.backend != "lmdb" else f"{client_key} LMDB key '{filepath}'"
            try:
                data = super().get(filepath, client_key)
            except OSError as exc:
                raise ImageReadError(f"{where}: cannot read file ({exc.strerror or exc})") from None
            if data is None:
                raise ImageReadError(f"{where}: not found")
            named = _NamedBytes(data)
            named.source = where
            return named

    return _flag(NamingFileClient)


@_flag
def imfrombytes(content: bytes, flag: str = "color", float32: bool = False) -> np.ndarray:
    """BasicSR's ``imfrombytes`` on :func:`imdn_plugin.imageio.decode` (BGR, 3 channels)."""
    from .imageio import decode

    img = decode(content, getattr(content, "source", "image")).bgr
    if flag == "grayscale":
        img = img.mean(axis=2)
    return img if float32 else (img * 255.0).round().astype(np.uint8)


# ---------------------------------------------------------------------------- exact resume
#: Set by load_resume_state, read when the train loader is built (same process, same run).
_RESUME_POSITION: dict[str, int] = {}
#: The run's manual_seed, for the per-sample RNGs of the training set.
_TRAIN_SEED: dict[str, int] = {}


@contextlib.contextmanager
def _seeded_rngs(seed: int) -> Iterator[None]:
    """Seed Python, NumPy and torch RNGs for one sample; restore the global streams after."""
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


class SeededDataset(torch.utils.data.Dataset):
    """A training dataset whose item ``(index, draw)`` is augmented with RNGs seeded by ``draw``.

    Plain integer indices work too (``draw = index``).
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # opt, paths, ... of the wrapped dataset
        if name in ("dataset", "seed"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: Any) -> Any:
        index, draw = key if isinstance(key, tuple) else (key, key)
        with _seeded_rngs(self.seed * 1_000_003 + int(draw)):
            return self.dataset[index]


def _seeded_train_datasets(build_dataset: Any) -> Any:
    @_flag
    def build(dataset_opt: dict) -> Any:
        dataset = build_dataset(dataset_opt)
        if dataset_opt.get("phase") == "train":
            return SeededDataset(dataset, _TRAIN_SEED.get("seed", 0))
        return dataset

    return build


def _resumable_sampler_class() -> type:
    from basicsr.data.data_sampler import EnlargedSampler

    class ResumableSampler(EnlargedSampler):
        """BasicSR's ``EnlargedSampler`` (same order) that yields ``(index, draw)`` and can skip.

        ``draw`` is unique per epoch and position, so with :class:`SeededDataset`
        a sample's augmentation does not depend on the worker that loads it.
        While ``self.epoch == resume_epoch``, the first ``skip`` samples are left out.
        """

        resume_epoch: Optional[int] = None
        skip: int = 0

        def __iter__(self):  # type: ignore[override]
            g = torch.Generator()
            g.manual_seed(self.epoch)
            order = torch.randperm(self.total_size, generator=g).tolist()
            size = len(self.dataset)
            mine = order[self.rank : self.total_size : self.num_replicas]
            start = self.skip if self.epoch == self.resume_epoch else 0
            base = self.epoch * self.total_size
            return iter([(v % size, base + v) for v in mine[start:]])

    return _flag(ResumableSampler)


def _resumable_loaders(create: Any) -> Any:
    @_flag
    def create_train_val_dataloader(opt: dict, logger_: Any):
        _TRAIN_SEED["seed"] = int(opt.get("manual_seed") or 0)
        result = create(opt, logger_)
        train_loader, sampler = result[0], result[1]
        position = dict(_RESUME_POSITION)
        _RESUME_POSITION.clear()
        if train_loader is not None and position and hasattr(sampler, "skip"):
            per_epoch = len(train_loader)
            done = position["iter"] - position["epoch"] * per_epoch
            if 0 <= done <= per_epoch:
                sampler.resume_epoch, sampler.skip = position["epoch"], done * train_loader.batch_size
                logger_.info(f"Resume: skipping the {done} batches of epoch {position['epoch']} already used.")
            else:
                logger_.warning(
                    f"Resume: iteration {position['iter']} is not inside epoch {position['epoch']} of "
                    f"{per_epoch} iterations (dataset or batch size changed?); the epoch restarts."
                )
        return result

    return create_train_val_dataloader
