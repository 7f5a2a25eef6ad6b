"""Checks of the files an option file names, made before any work.

Dataset folders and LMDBs exist and are whole, ``crop_border`` leaves pixels
of every ground-truth image (read from the image headers), and
``path:pretrain_network_g`` exists and fits ``network_g`` for a strict load.
They run on the parsed :class:`~.schema.Options` after the schema accepted it.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from .fields import OptionError
from .schema import Options, Registry, network_args

#: Header bytes read per ground-truth image for its size (crop_border check).
_HEADER_BYTES = 1 << 16


def check_dataset_paths(options: Options) -> None:
    """Every ``dataroot_*`` / ``meta_info_file`` of every dataset exists now (``~`` expanded); LMDBs are whole."""
    for ds in options.datasets:
        backend = ds.io_backend.type if ds.io_backend is not None else "disk"
        for key in ("dataroot_gt", "dataroot_lq", "meta_info_file"):
            given: str | None = getattr(ds, key)
            if given is None:
                continue
            where = f"datasets:{ds.key}:{key}"
            path = os.path.expanduser(given)
            if not os.path.exists(path):
                raise ConfigError(f"{where}: path does not exist: {given} (cwd: {os.getcwd()})")
            if backend == "lmdb" and key.startswith("dataroot"):
                if not os.path.isfile(os.path.join(path, "data.mdb")):
                    raise ConfigError(f"{where}: not an LMDB (no data.mdb): {given}")
                if not os.path.isfile(os.path.join(path, "meta_info.txt")):
                    raise ConfigError(f"{where}: LMDB has no meta_info.txt: {given}")
                check_lmdb_readable(where, path)
            elif key.startswith("dataroot") and not os.path.isdir(path):
                raise ConfigError(f"{where}: not a folder: {given}")


def check_lmdb_readable(where: str, path: str) -> None:
    """``data.mdb`` is whole and holds every ``meta_info.txt`` key (:func:`imdn_plugin.data.lmdb.check_lmdb_keys`).

    A truncated ``data.mdb`` would otherwise kill training with SIGBUS and no
    message, and a missing key stop it only when a batch needs that key.
    """
    import lmdb

    from ..data.lmdb import check_lmdb_keys

    try:
        check_lmdb_keys(path)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except lmdb.Error as exc:  # py-lmdb opens a path once per process: an earlier run here holds it open
        if "already open" not in str(exc):
            raise ConfigError(f"{where}: {path}: not a readable LMDB ({exc})") from None


def smallest_image_side(folder: str) -> tuple[int, str] | None:
    """The smallest side among the images of ``folder`` (from their headers) and that image's name."""
    from ..data.headers import image_size
    from ..data.imageio import list_images

    best: tuple[int, str] | None = None
    for path in list_images(folder):
        try:
            with open(path, "rb") as f:
                size = image_size(f.read(_HEADER_BYTES))
        except OSError:
            continue  # the dataset names an unreadable file when it reads it
        if size is not None and (best is None or min(size) < best[0]):
            best = (min(size), Path(path).name)
    return best


def check_crop_border(options: Options) -> None:
    """``crop_border`` of each metric leaves pixels of every val/test ground-truth image (disk folders)."""
    if options.val is None or not options.val.metrics:
        return
    crops = {name: m.args.get("crop_border", 0) for name, m in options.val.metrics.items()}
    name, crop = max(crops.items(), key=lambda kv: kv[1])
    for ds in options.datasets:
        if ds.key == "train" or ds.dataroot_gt is None or (ds.io_backend and ds.io_backend.type != "disk"):
            continue
        smallest = smallest_image_side(os.path.expanduser(ds.dataroot_gt))
        if smallest is not None and 2 * crop >= smallest[0]:
            raise OptionError(
                f"val:metrics:{name}:crop_border", crop,
                f"must be less than half the smallest image side of datasets:{ds.key} "
                f"({smallest[1]}: {smallest[0]} pixels)",
            )  # fmt: skip


def check_pretrained(options: Options, registry: Registry) -> None:
    """``path:pretrain_network_g`` exists and, for a strict load into IMDN/IMDN_AS, fits ``network_g``.

    The file's network is read off its tensor shapes
    (:func:`imdn_plugin.checkpoint.describe`); files it does not recognise are
    left to the load.  ``strict_load_g: false`` (a warm start, e.g. ×4 from ×2)
    skips the comparison.
    """
    path_opt = options.path
    pretrain = path_opt.pretrain_network_g
    if pretrain is None:
        return
    file = os.path.expanduser(pretrain)
    if not os.path.isfile(file):
        raise ConfigError(f"path:pretrain_network_g: file does not exist: {pretrain} (cwd: {os.getcwd()})")
    net = options.network_g
    if net is None or net.type not in ("IMDN", "IMDN_AS") or not path_opt.strict_load_g:
        return
    from ..checkpoint import ArchSpec, describe, load_state_dict

    found = describe(load_state_dict(file, path_opt.param_key_g))
    if found is None:
        return
    args = network_args(net, registry)
    wanted = ArchSpec(
        net.type, args["num_in_ch"], args["num_out_ch"], args["num_feat"], args["num_block"],
        args.get("upscale", 4) if net.type == "IMDN" else 4,
    )  # fmt: skip
    if found != wanted:
        raise ConfigError(
            f"path:pretrain_network_g: {pretrain}: checkpoint is {found} but network_g is {wanted}; "
            "make network_g match, or set path:strict_load_g: false to load only the tensors that fit (a warm start)"
        )


def check_resume_state(options: Options) -> None:
    """``path:resume_state`` (used unless ``--auto_resume`` finds one) is a file (what it holds is checked when loaded)."""
    given = options.path.resume_state
    if given is None or options.auto_resume or options.is_train is False:
        return
    if not os.path.isfile(os.path.expanduser(given)):
        raise ConfigError(f"path:resume_state: file does not exist: {given} (cwd: {os.getcwd()})")


def check_files(options: Options, registry: Registry) -> None:
    """Every check of files on disk, in the order a user fixes them."""
    check_dataset_paths(options)
    check_crop_border(options)
    check_pretrained(options, registry)
    check_resume_state(options)


__all__ = ["check_crop_border", "check_dataset_paths", "check_files", "check_lmdb_readable",
           "check_pretrained", "check_resume_state", "smallest_image_side"]  # fmt: skip
