"""Paired data for IMDN_AS: the LR image brought to the HR size (paper §3.3).

IMDN_AS keeps the input size, so one model serves any scale: the LR image is
first upscaled (bicubic) to the target size.  :class:`AnyScalePairedDataset`
serves

* same-size pairs (real-image SR, RealSR layout ``ValidationLR/`` +
  ``ValidationGT/``): ``scale: 1``;
* bicubic LR at any scale ``s`` — integer or fractional (×2.5, ×3.7) — read
  from ``dataroot_lq`` or, without it, made from the GT by MATLAB bicubic
  downscaling; then upscaled to the GT size.

Folders or LMDBs (``io_backend``), like BasicSR's ``PairedImageDataset``;
training patches (``gt_size``) must be multiples of 4.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from basicsr.data.data_util import (
    paired_paths_from_folder,
    paired_paths_from_lmdb,
    paths_from_folder,
    paths_from_lmdb,
)
from basicsr.data.transforms import augment
from basicsr.utils import FileClient, img2tensor
from torch.utils import data

from ..data.imageio import decode
from ..data.resize import imresize_to
from ..errors import ConfigError
from ..options import check_keys

# BasicSR's dataset and dataloader keys, plus this dataset's own.
VALID_KEYS = (
    "name", "type", "phase", "scale", "dataroot_gt", "dataroot_lq", "filename_tmpl", "io_backend", "gt_size",
    "use_hflip", "use_rot", "batch_size_per_gpu", "num_worker_per_gpu", "dataset_enlarge_ratio", "prefetch_mode",
    "pin_memory", "persistent_workers",
)  # fmt: skip


def _scale_range(scale: Any, name: Any) -> tuple[float, float]:
    """``scale`` is a factor >= 1, or ``[min, max]`` for a random factor per training sample."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1

    if number(scale):
        return float(scale), float(scale)
    if isinstance(scale, (list, tuple)) and len(scale) == 2 and all(map(number, scale)) and scale[0] <= scale[1]:
        return float(scale[0]), float(scale[1])
    raise ConfigError(f"datasets:{name}:scale: must be a number >= 1 or [min, max], got {scale!r}")


class AnyScalePairedDataset(data.Dataset):
    """LR/GT pairs of equal size for IMDN_AS; see the module docstring.

    Option keys: ``dataroot_gt``; ``dataroot_lq`` (optional: made from GT when
    absent); ``scale`` (SR factor >= 1, default 1; ``[min, max]`` draws one
    per training sample); ``filename_tmpl``
    (``'{}'``); ``io_backend`` (``disk`` | ``lmdb``); for training ``gt_size``
    (multiple of 4), ``use_hflip``, ``use_rot``.
    """

    def __init__(self, opt: dict[str, Any]) -> None:
        super().__init__()

        check_keys(f"datasets:{opt.get('name', '?')}", opt, list(VALID_KEYS))
        self.opt = opt
        self.scale = opt.get("scale", 1)
        self.scale_range = _scale_range(self.scale, opt.get("name"))
        self.train = opt.get("phase") == "train"
        self.gt_size = opt.get("gt_size")
        if self.train and (not isinstance(self.gt_size, int) or self.gt_size < 4 or self.gt_size % 4):
            raise ConfigError(f"datasets:{opt.get('name')}:gt_size: must be a multiple of 4 for IMDN_AS, got {self.gt_size!r}")
        self.io_opt = dict(opt.get("io_backend") or {"type": "disk"})
        self.file_client = None
        gt, lq = opt["dataroot_gt"], opt.get("dataroot_lq")
        tmpl = opt.get("filename_tmpl", "{}")
        lmdb = self.io_opt.get("type") == "lmdb"
        if lq is not None:
            if lmdb:
                self.io_opt.update(db_paths=[lq, gt], client_keys=["lq", "gt"])
                self.paths = paired_paths_from_lmdb([lq, gt], ["lq", "gt"])
            else:
                self.paths = paired_paths_from_folder([lq, gt], ["lq", "gt"], tmpl)
        else:
            if lmdb:
                self.io_opt.update(db_paths=[gt], client_keys=["gt"])
                self.paths = [{"gt_path": p} for p in paths_from_lmdb(gt)]
            else:
                self.paths = [{"gt_path": p} for p in sorted(paths_from_folder(gt))]

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, path: str, key: str) -> np.ndarray:
        if self.file_client is None:
            opt = dict(self.io_opt)
            self.file_client = FileClient(opt.pop("type"), **opt)
        return decode(self.file_client.get(path, key), path).bgr

    def __getitem__(self, index: int) -> dict[str, Any]:
        paths = self.paths[index]
        gt = self._read(paths["gt_path"], "gt")
        lo, hi = self.scale_range
        scale = lo if lo == hi else lo + (hi - lo) * float(torch.rand(()))
        if "lq_path" in paths:
            lq = self._read(paths["lq_path"], "lq")
            if scale == 1 and lq.shape[:2] != gt.shape[:2]:
                raise ConfigError(f"{paths['lq_path']}: size {lq.shape[:2]} differs from GT {gt.shape[:2]} with scale 1")
            # The GT region the LR covers (BasicSR crops GT to scale x LR the same way).
            gt = gt[: round(lq.shape[0] * scale), : round(lq.shape[1] * scale)]
            lq = imresize_to(lq, gt.shape[:2]) if lq.shape[:2] != gt.shape[:2] else lq
            if self.train:
                gt, lq = self._random_crop(gt, lq, paths["gt_path"])
        else:
            if self.train:  # degrade the patch only: cheap, and any scale per sample
                gt, _ = self._random_crop(gt, gt, paths["gt_path"])
            lq = gt
            if scale != 1:
                h, w = gt.shape[:2]
                lq = imresize_to(imresize_to(gt, (max(1, round(h / scale)), max(1, round(w / scale)))), (h, w))
        if self.train:
            gt, lq = augment([gt, lq], self.opt.get("use_hflip", False), self.opt.get("use_rot", False))
        gt_t, lq_t = img2tensor([gt, np.clip(lq, 0.0, 1.0)], bgr2rgb=True, float32=True)
        return {"lq": lq_t, "gt": gt_t, "lq_path": paths.get("lq_path", paths["gt_path"]), "gt_path": paths["gt_path"]}

    def _random_crop(self, gt: np.ndarray, lq: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray]:
        p = self.gt_size
        h, w = gt.shape[:2]
        if h < p or w < p:
            raise ConfigError(f"{path}: image {h}x{w} is smaller than gt_size {p}")
        top = int(torch.randint(0, h - p + 1, ()).item())
        left = int(torch.randint(0, w - p + 1, ()).item())
        return gt[top : top + p, left : left + p], lq[top : top + p, left : left + p]
