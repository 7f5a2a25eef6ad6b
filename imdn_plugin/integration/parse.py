"""BasicSR 1.4.2's ``parse_options``, reading option files as data.

BasicSR's own reads the ``-opt`` file with an ``ordered_yaml`` loader that
builds Python objects from tags (``!!python/object/apply:os.system [...]`` runs
a command) and passes ``--force_yml`` entries to ``eval``/``exec``.  This one takes the
same flags and fills in the same keys, in the same way, except:

* the file is read by :func:`imdn_plugin.options.load_option_file` (a bounded
  read and a safe loader: standard tags only, ordered mappings, no duplicate
  keys) and ``--force_yml`` values are YAML data
  (:func:`imdn_plugin.options.apply_overrides`);
* the ``--debug`` changes are made first, then
  :func:`imdn_plugin.options.validate_options` parses the result into one
  record before any work (before the process group, the seed, any folder),
  and its one-line errors name the option file.  The returned dict is an
  :class:`~imdn_plugin.options.OptionDict` carrying that record (``parsed``)
  for the plugin's model;
* a missing ``num_gpu`` means ``auto`` (BasicSR: ``KeyError``); bad flags are
  one-line errors instead of argparse's usage text.
"""
from __future__ import annotations

import argparse
import logging
import os.path as osp
import random
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import ConfigError
from ..options.flags import add_pipeline_arguments
from .registries import BASICSR

if TYPE_CHECKING:
    from ..options import OptionDict

logger = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see basicsr --help)")


def _arguments() -> argparse.Namespace:
    """BasicSR's flags, parsed from ``sys.argv`` as BasicSR does."""
    return add_pipeline_arguments(_Parser()).parse_args()




def read_options(
    opt_path: str, force_yml: Any, is_train: bool, launcher: str, auto_resume: bool, debug: bool = False
) -> OptionDict:
    """The option file with ``--force_yml`` applied and the command's keys set, parsed and checked.

    No side effect: nothing is created, no process group, no seed.
    """
    from ..options import apply_overrides, attach, load_option_file, validate_options

    opt = load_option_file(opt_path)
    if force_yml:
        apply_overrides(opt, force_yml)
    opt["dist"] = launcher != "none"
    opt["auto_resume"] = auto_resume
    opt["is_train"] = is_train
    opt.setdefault("num_gpu", "auto")
    _debug_options(opt, is_train, debug)
    try:
        options = validate_options(opt, BASICSR)
    except ConfigError as exc:
        raise ConfigError(f"{opt_path}: {exc}") from None
    result: OptionDict = attach(opt, options)
    return result


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


def check_folder_pairs(opt: dict) -> None:
    """Before any work: each ``PairedImageDataset`` read from folders (``io_backend: disk``, no
    ``meta_info_file``) has an LQ file for every GT file, named by ``filename_tmpl``, and as many
    of them -- what BasicSR's ``paired_paths_from_folder`` asserts when the dataset is built, with a
    traceback.  One :class:`ConfigError` line naming the dataset, the counts or the first missing file."""
    import os

    for phase, dataset in (opt.get("datasets") or {}).items():
        if not isinstance(dataset, dict) or dataset.get("type") != "PairedImageDataset":
            continue
        if (dataset.get("io_backend") or {}).get("type") != "disk" or dataset.get("meta_info_file"):
            continue
        gt, lq, tmpl = dataset.get("dataroot_gt"), dataset.get("dataroot_lq"), dataset.get("filename_tmpl", "{}")
        if not (isinstance(gt, str) and isinstance(lq, str) and isinstance(tmpl, str)):
            continue
        try:  # the files directly in each folder, as BasicSR's scandir lists them
            gt_files = sorted(e.name for e in os.scandir(gt) if e.is_file())
            lq_files = {e.name for e in os.scandir(lq) if e.is_file()}
        except OSError:
            continue  # a missing folder is the path check's to report
        if len(gt_files) != len(lq_files):
            raise ConfigError(
                f"datasets:{phase}: {len(gt_files)} files in dataroot_gt {gt} but {len(lq_files)} in "
                f"dataroot_lq {lq}; each GT image needs its LQ image (and no other files)"
            )
        for name in gt_files:
            stem, ext = osp.splitext(name)
            try:
                expected = f"{tmpl.format(stem)}{ext}"
            except (IndexError, KeyError, ValueError):
                raise ConfigError(f"datasets:{phase}:filename_tmpl: {tmpl!r} must hold one '{{}}'") from None
            if expected not in lq_files:
                raise ConfigError(
                    f"datasets:{phase}: {osp.join(gt, name)} has no LQ image {osp.join(lq, expected)} "
                    f"(filename_tmpl {tmpl!r})"
                )


def _debug_options(opt: dict, is_train: bool, debug: bool) -> None:
    """BasicSR's debug changes (``--debug``: the name; a training named ``*debug*``: short intervals), made
    before the checks."""
    name = opt.get("name")
    if debug and isinstance(name, str) and not name.startswith("debug"):
        opt["name"] = "debug_" + name
    if is_train and isinstance(opt.get("name"), str) and "debug" in opt["name"]:
        if isinstance(opt.get("val"), dict):
            opt["val"]["val_freq"] = 8
        if isinstance(opt.get("logger"), dict):
            opt["logger"]["print_freq"] = 1
            opt["logger"]["save_checkpoint_freq"] = 8


def parse_options(root_path: str, is_train: bool = True) -> tuple[dict, argparse.Namespace]:
    """Drop-in for ``basicsr.utils.options.parse_options`` (same flags, same keys filled in)."""
    import torch
    from basicsr.utils import set_random_seed
    from basicsr.utils.dist_util import get_dist_info

    from .distributed import init_dist

    args = _arguments()
    opt = read_options(args.opt, args.force_yml, is_train, args.launcher, args.auto_resume, args.debug)

    # distributed settings
    if args.launcher == "none":
        logger.info("Disable distributed.")
    elif args.launcher == "slurm" and "dist_params" in opt:
        init_dist(args.launcher, **opt["dist_params"])
    else:
        init_dist(args.launcher)
    opt["rank"], opt["world_size"] = get_dist_info()

    # random seed
    seed = opt.get("manual_seed")
    if seed is None:
        seed = random.randint(1, 10000)
        opt["manual_seed"] = seed
    set_random_seed(seed + opt["rank"])

    if opt["num_gpu"] == "auto":
        opt["num_gpu"] = torch.cuda.device_count()

    # datasets
    for phase, dataset in opt["datasets"].items():
        # for multiple datasets, e.g., val_1, val_2; test_1, test_2
        dataset["phase"] = phase.split("_")[0]
        if "scale" in opt:
            dataset["scale"] = opt["scale"]
        for key in ("dataroot_gt", "dataroot_lq"):
            if dataset.get(key) is not None:
                dataset[key] = osp.expanduser(dataset[key])

    # paths
    if opt.get("path") is None:
        opt["path"] = {}
    for key, val in opt["path"].items():
        if (val is not None) and ("resume_state" in key or "pretrain_network" in key):
            opt["path"][key] = osp.expanduser(val)

    if is_train:
        experiments_root = osp.join(root_path, "experiments", opt["name"])
        opt["path"]["experiments_root"] = experiments_root
        opt["path"]["models"] = osp.join(experiments_root, "models")
        opt["path"]["training_states"] = osp.join(experiments_root, "training_states")
        opt["path"]["log"] = experiments_root
        opt["path"]["visualization"] = osp.join(experiments_root, "visualization")
    else:  # test
        results_root = osp.join(root_path, "results", opt["name"])
        opt["path"]["results_root"] = results_root
        opt["path"]["log"] = results_root
        opt["path"]["visualization"] = osp.join(results_root, "visualization")

    check_lmdb_pairs(opt)
    check_folder_pairs(opt)
    return opt, args
