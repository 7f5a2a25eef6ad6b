"""One run per experiment / results folder, and resuming from it (BasicSR's ``make_exp_dirs`` and
``load_resume_state`` replaced).

A run locks ``experiments/<name>/`` (``results/<name>/`` for ``basicsr test``) on
rank 0 for its whole life (:mod:`.experiment_lock`); a fresh run moves the
previous files aside instead of renaming a folder that may be in use;
``--auto_resume`` loads states onto the CPU with ``weights_only=True`` and skips
incomplete or unreadable ones.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
import re
from typing import Any

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError
from .experiment_lock import LOCK_NAME, ExperimentLock

logger = logging.getLogger(__name__)


def load_resume_state(opt: dict) -> dict | None:
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


def _state_problem(state: Any, expected_iter: int | None = None) -> str:
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


def _newest_complete_state(state_dir: str, models_dir: str) -> tuple[str, dict] | None:
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


def archive_contents(folder: str) -> str | None:
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
