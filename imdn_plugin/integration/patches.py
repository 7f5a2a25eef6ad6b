"""Every in-memory replacement of a BasicSR 1.4.2 function, in one place.

:func:`patch_pipelines` (called by :func:`imdn_plugin.integration.register`)
replaces function attributes of BasicSR's modules; no file of BasicSR is
edited.  Each fix, and how it differs from BasicSR for any model trained or
tested through the pipelines (the plugin's or another package's):

* ``parse_options`` is :func:`.parse.parse_options`: the same flags and keys,
  but option files and ``--force_yml`` values are read as data (a safe YAML
  loader; BasicSR's runs ``!!python/object/apply`` tags and evaluates
  ``--force_yml`` values), and :func:`imdn_plugin.options.validate_options`
  checks the result, so a typo in ``network_g`` or a missing dataset folder
  stops the run before any work, with one line naming the file and the key.
* ``init_dist`` works without CUDA (gloo), so ``--launcher pytorch`` runs on CPU.
* ``load_resume_state`` loads onto the CPU (BasicSR calls
  ``torch.cuda.current_device()`` unconditionally), with ``weights_only=True``,
  and ``--auto_resume`` skips a training state or network file that cannot be
  read instead of crashing on it.
* One run per folder (:mod:`.experiment_lock`): ``make_exp_dirs`` and
  ``load_resume_state`` lock ``experiments/<name>/`` (``results/<name>/`` for
  ``basicsr test``) on rank 0 for the whole run; a second run with the same
  name is refused with one line naming the folder and the holder's PID.  A
  fresh run archives the previous contents into ``<name>_archived_<time>/``
  as BasicSR does, but by moving them out of the locked folder: a folder in
  use is never renamed.  ``--auto_resume``/``resume_state`` reuse it.
* ``load_resume_state``: a training state without ``optimizers``/``schedulers``
  is skipped by ``--auto_resume`` (the previous complete one is used).
* ``PairedImageDataset`` reads images through :mod:`imdn_plugin.data.imageio`:
  grayscale, RGBA, palette and 16-bit files (16-bit keeps its precision), and
  an unreadable file is an error that names it (BasicSR fails with
  ``'NoneType' object has no attribute 'astype'``).
* Exact resume (:mod:`.exact_resume`): the training set, its sampler and the
  loader set-up are wrapped so that each sample's augmentation is seeded by
  ``(manual_seed, epoch, position)`` and a resumed run skips the batches of the
  interrupted epoch already used.  The sample order is BasicSR's; the random
  augmentation draws differ from BasicSR's (they no longer depend on the loader
  worker), with the same distribution.
* ``SRModel.nondist_validation`` (``basicsr test``, validation with
  ``save_img``) writes its images through
  :func:`imdn_plugin.data.imageio.write_image_atomic` instead of BasicSR's
  ``imwrite``: a kill during the write never leaves a cut-off PNG under its
  final name, and a full disk is one line (exit status 1) naming the file.
* ``init_dist`` refuses ``--launcher pytorch`` without ``torchrun`` (no
  ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` in the environment) in one line,
  instead of torch's ``ValueError`` traceback.
* Training output (:mod:`.progress`): ``train_pipeline`` ends with one summary
  (last/best validation metrics, bicubic baseline, final model path);
  ``MessageLogger`` prints an ETA that never goes negative (BasicSR's ends at
  ``-1 day, 23:59:58``) and drives a progress bar on a terminal; ``build_model``'s
  model reports each iteration and validation to them.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
import re
from typing import Any, Optional

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError, ConfigError, ImageReadError, WorkFailedError
from .exact_resume import ExactResume, resumable_sampler_class
from .experiment_lock import LOCK_NAME, ExperimentLock
from .progress import (
    ProgressMessageLogger,
    observing_build_model,
    reporting_train_pipeline,
)

logger = logging.getLogger(__name__)

_PATCH_FLAG = "_imdn_plugin_patch"


# ---------------------------------------------------------------------------- pipeline fixes
def patch_pipelines() -> None:
    """Apply the run-time fixes to ``basicsr.train``, ``basicsr.test`` and ``basicsr.utils.options``."""
    import basicsr.test
    import basicsr.train
    import basicsr.utils.options

    from .parse import parse_options

    for module in (basicsr.train, basicsr.test, basicsr.utils.options):
        if not getattr(module.parse_options, _PATCH_FLAG, False):
            module.parse_options = _flag(_checking_lmdb_pairs(parse_options))
    if not getattr(basicsr.utils.options.init_dist, _PATCH_FLAG, False):
        basicsr.utils.options.init_dist = init_dist
    import basicsr.data.paired_image_dataset as paired

    if not getattr(paired.imfrombytes, _PATCH_FLAG, False):
        paired.imfrombytes = imfrombytes
        paired.FileClient = _naming_file_client(paired.FileClient)
    if not getattr(basicsr.train.create_train_val_dataloader, _PATCH_FLAG, False):
        resume = ExactResume()
        basicsr.train.load_resume_state = _flag(_reporting_resume(load_resume_state, resume))
        basicsr.train.create_train_val_dataloader = _resumable_loaders(
            basicsr.train.create_train_val_dataloader, resume
        )
        basicsr.train.build_dataset = _seeded_train_datasets(basicsr.train.build_dataset, resume)
        basicsr.train.EnlargedSampler = _flag(resumable_sampler_class())
    import basicsr.models.sr_model as sr_model

    if not getattr(sr_model.imwrite, _PATCH_FLAG, False):
        sr_model.imwrite = imwrite
    if not getattr(basicsr.train.train_pipeline, _PATCH_FLAG, False):
        basicsr.train.train_pipeline = _flag(reporting_train_pipeline(basicsr.train.train_pipeline))
        basicsr.train.build_model = _flag(observing_build_model(basicsr.train.build_model))
        basicsr.train.MessageLogger = _flag(ProgressMessageLogger)
    _patch_run_folders()


def _flag(func: Any) -> Any:
    setattr(func, _PATCH_FLAG, True)
    return func


def _checking_lmdb_pairs(parse: Any) -> Any:
    def parse_options(root_path: str, is_train: bool = True) -> tuple[dict, Any]:
        opt, args = parse(root_path, is_train)
        check_lmdb_pairs(opt)
        return opt, args

    parse_options.__wrapped__ = parse  # type: ignore[attr-defined]
    return parse_options


def check_lmdb_pairs(opt: dict) -> None:
    """Before any work: the ``dataroot_gt`` and ``dataroot_lq`` LMDBs of each dataset list the same
    keys in their ``meta_info.txt`` (BasicSR finds out while building the dataset, with a
    traceback).  One :class:`ConfigError` line naming the dataset and the first odd key."""
    from ..data.lmdb import read_meta_info

    for phase, dataset in (opt.get("datasets") or {}).items():
        if not isinstance(dataset, dict) or (dataset.get("io_backend") or {}).get("type") != "lmdb":
            continue
        gt, lq = dataset.get("dataroot_gt"), dataset.get("dataroot_lq")
        if not (isinstance(gt, str) and isinstance(lq, str)):
            continue
        try:
            gt_keys, lq_keys = set(read_meta_info(gt)), set(read_meta_info(lq))
        except (ValueError, OSError, UnicodeDecodeError):
            continue  # a meta_info.txt in another format: BasicSR's own check applies
        for only, here, there in ((sorted(lq_keys - gt_keys), lq, gt), (sorted(gt_keys - lq_keys), gt, lq)):
            if only:
                more = f" (and {len(only) - 1} more)" if len(only) > 1 else ""
                raise ConfigError(
                    f"datasets:{phase}: key {only[0]!r} of {here} is not in {there}{more}; "
                    "dataroot_gt and dataroot_lq must hold the same keys"
                )


@_flag
def init_dist(launcher: str, backend: Optional[str] = None, **kwargs: Any) -> None:
    """BasicSR's ``init_dist`` that also works without CUDA (gloo on CPU)."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method("spawn")
    cuda = torch.cuda.is_available() and torch.cuda.device_count() > 0
    if launcher == "pytorch":
        missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing and "init_method" not in kwargs:
            raise ConfigError(
                f"--launcher pytorch: {', '.join(missing)} not set; start the run with torchrun, e.g. "
                "torchrun --nproc_per_node=2 -m imdn_plugin train -opt FILE --launcher pytorch "
                "(or drop --launcher for one process)"
            )
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

    lock_run_folder(opt["path"]["experiments_root"], "training")  # before reading any state in it
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
        problem = _state_problem(resume_state)
        if problem:
            raise CheckpointError(f"{path}: not a complete BasicSR training state ({problem})")
    check_resume(opt, resume_state["iter"])
    _TAKEN.append(opt["path"]["experiments_root"])
    return resume_state


#: What ``train_pipeline`` and ``BaseModel.resume_training`` read from a training state.
_STATE_KEYS = {"epoch": int, "iter": int, "optimizers": list, "schedulers": list}


def _state_problem(state: Any, expected_iter: Optional[int] = None) -> str:
    """Why ``state`` cannot be resumed from ('' if it can)."""
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a dict"
    for key, kind in _STATE_KEYS.items():
        if key not in state:
            return f"no '{key}' key"
        if not isinstance(state[key], kind):
            return f"'{key}' is a {type(state[key]).__name__}, not a {kind.__name__}"
    if expected_iter is not None and state["iter"] != expected_iter:
        return f"its 'iter' is {state['iter']}"
    return ""


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
            problem = _state_problem(state, it)
            if problem:
                raise CheckpointError(f"{path}: not a complete BasicSR training state ({problem})")
            load_checkpoint(osp.join(models_dir, f"net_g_{it}.pth"))
        except CheckpointError as exc:
            logger.warning("auto_resume: skipping iteration %d: %s", it, exc)
            continue
        return path, state
    return None


# ---------------------------------------------------------------------------- one run per folder
#: The folders this process holds for the pipeline run in progress (by real path).
_RUN_LOCKS: dict[str, ExperimentLock] = {}
#: Every folder a pipeline run of this process started its work in (kept after the release):
#: an error after that is a failure during the work (exit status 1), not a refusal.
_TAKEN: list[str] = []


def folders_taken() -> list[str]:
    """The experiment / results folders pipeline runs of this process have started work in: a
    training state was loaded to resume (:func:`load_resume_state`) or the folders were made
    (:func:`make_exp_dirs`, which also moves a previous run's files aside)."""
    return list(_TAKEN)
_RELEASE_FLAG = "_imdn_plugin_releases_locks"


def _patch_run_folders() -> None:
    """Lock the experiment / results folder; release it when the pipeline returns."""
    import basicsr.test
    import basicsr.train

    for module, pipeline in ((basicsr.train, "train_pipeline"), (basicsr.test, "test_pipeline")):
        if not getattr(module.make_exp_dirs, _PATCH_FLAG, False):
            module.make_exp_dirs = make_exp_dirs
        # Its own flag: the training pipeline is also wrapped for the progress output.
        if not getattr(getattr(module, pipeline), _RELEASE_FLAG, False):
            setattr(module, pipeline, _releasing_locks(getattr(module, pipeline)))


def _rank() -> int:
    from basicsr.utils.dist_util import get_dist_info

    return get_dist_info()[0]


def lock_run_folder(folder: str, command: str) -> None:
    """Hold ``folder`` until the pipeline run ends (rank 0 only: BasicSR writes folders on rank 0).

    Raises :class:`~imdn_plugin.errors.ExperimentInUseError` while another
    process holds it; a lock of a dead run is taken over with a warning.
    """
    if _rank() != 0:
        return
    key = osp.realpath(folder)
    if key not in _RUN_LOCKS:
        _RUN_LOCKS[key] = ExperimentLock(folder, command).acquire()


def release_run_locks() -> None:
    """Release every folder :func:`lock_run_folder` took (the process exit would, too)."""
    while _RUN_LOCKS:
        _RUN_LOCKS.popitem()[1].release()


def _releasing_locks(pipeline: Any) -> Any:
    @_flag
    def run_pipeline(root_path: str) -> Any:
        try:
            return pipeline(root_path)
        finally:
            release_run_locks()

    run_pipeline.__name__ = run_pipeline.__qualname__ = pipeline.__name__
    setattr(run_pipeline, _RELEASE_FLAG, True)
    run_pipeline.__wrapped__ = pipeline  # type: ignore[attr-defined]
    return run_pipeline


@_flag
def make_exp_dirs(opt: dict) -> None:
    """BasicSR's ``make_exp_dirs`` (rank 0) on a locked folder that is never renamed.

    BasicSR renames an existing ``experiments/<name>`` (``results/<name>``) to
    ``<name>_archived_<time>``, even one a live run writes into.  Here the
    folder is locked first (:func:`lock_run_folder`), then its previous contents
    are moved into ``<name>_archived_<time>/``; the folder itself stays.
    """
    path_opt = dict(opt["path"])
    root = path_opt.pop("experiments_root" if opt["is_train"] else "results_root")
    if _rank() != 0:
        _TAKEN.append(root)  # rank 0 makes the folders; from here on every rank is working
        return
    lock_run_folder(root, "training" if opt["is_train"] else "test")
    _TAKEN.append(root)
    archive_contents(root)
    for key, path in path_opt.items():
        if "strict_load" in key or "pretrain_network" in key or "resume" in key or "param_key" in key:
            continue
        os.makedirs(path, exist_ok=True)


def archive_contents(folder: str) -> Optional[str]:
    """Move everything in ``folder`` but the lock file into a new ``<folder>_archived_<time>``.

    Returns the archive's path, or None when there was nothing to move.
    """
    from basicsr.utils.misc import get_time_str

    entries = sorted(e for e in os.listdir(folder) if e != LOCK_NAME)
    if not entries:
        return None
    base = archive = f"{folder.rstrip(os.sep)}_archived_{get_time_str()}"
    n = 1
    while True:
        try:
            os.mkdir(archive)
            break
        except FileExistsError:
            archive, n = f"{base}_{n}", n + 1
    for entry in entries:
        os.rename(osp.join(folder, entry), osp.join(archive, entry))
    logger.warning("%s: a new run (not a resume): the previous run's files were moved to %s", folder, archive)
    return archive


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
    """BasicSR's ``imfrombytes`` on :func:`imdn_plugin.data.imageio.decode` (BGR, 3 channels)."""
    from ..data.imageio import decode, notice

    source = getattr(content, "source", "image")
    decoded = decode(content, source)
    if decoded.alpha is not None:
        notice(source, "alpha", "alpha channel dropped (BasicSR's datasets and metrics use BGR)")
    img = decoded.bgr
    if flag == "grayscale":
        img = img.mean(axis=2)
    return img if float32 else (img * 255.0).round().astype(np.uint8)


@_flag
def imwrite(img: np.ndarray, file_path: str, params: Any = None, auto_mkdir: bool = True) -> None:
    """BasicSR's ``imwrite`` (used by ``SRModel.nondist_validation``), atomic; a failed write is
    :class:`~imdn_plugin.errors.WorkFailedError` naming the file (a full disk: one line)."""
    from ..data.imageio import write_image_atomic

    if not auto_mkdir and not osp.isdir(osp.dirname(osp.abspath(file_path))):
        raise WorkFailedError(f"{file_path}: cannot write image (its folder does not exist)")
    try:
        write_image_atomic(file_path, img, params)
    except OSError as exc:
        raise WorkFailedError(
            f"{file_path}: cannot write image ({exc.strerror or exc}); nothing was written under that name, "
            "the images written before it are kept"
        ) from None


# ---------------------------------------------------------------------------- exact resume
def _reporting_resume(load: Any, resume: ExactResume) -> Any:
    def load_and_report(opt: dict) -> Optional[dict]:
        state = load(opt)
        if state is not None:
            resume.resumed_at(state["epoch"], state["iter"])
        return state

    return load_and_report


def _seeded_train_datasets(build_dataset: Any, resume: ExactResume) -> Any:
    @_flag
    def build(dataset_opt: dict) -> Any:
        dataset = build_dataset(dataset_opt)
        return resume.wrap_train_dataset(dataset) if dataset_opt.get("phase") == "train" else dataset

    return build


def _resumable_loaders(create: Any, resume: ExactResume) -> Any:
    @_flag
    def create_train_val_dataloader(opt: dict, logger_: Any):
        resume.start_run(opt)
        result = create(opt, logger_)
        resume.skip_used_batches(result[0], result[1], logger_)
        return result

    return create_train_val_dataloader
