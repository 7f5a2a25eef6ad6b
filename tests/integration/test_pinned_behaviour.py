"""Behaviour no other flow pins: the training crop of a given LR file stays aligned with its GT,
the summary's "best @ iter" when best != last, the RNG streams restored by ``seeded_rngs``
and ``set_rng_state``, the experiment lock on a file replaced between open and flock,
the ``module.`` prefix stripped only at the front of checkpoint keys, and ``gt_size`` bounds."""
from __future__ import annotations

import os
import random
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from imdn_plugin.errors import ConfigError
from imdn_plugin.integration.datasets import AnyScalePairedDataset

# --------------------------------------------------------------------------- training crops


@pytest.fixture(scope="module")
def pair_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GT and a same-size LR that is a pixel-wise function of it (LR = 255 - GT), non-square."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for sub in ("GT", "LR"):
        (root / sub).mkdir()
    for name in ("a", "b"):
        gt = rng.integers(0, 256, (23, 41, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "GT" / f"{name}.png"), gt)
        cv2.imwrite(str(root / "LR" / f"{name}.png"), 255 - gt)
    return root


def _dataset(root: Path, **opt) -> AnyScalePairedDataset:
    return AnyScalePairedDataset({"name": "t", "type": "AnyScalePairedDataset", "io_backend": {"type": "disk"},
                                  "dataroot_gt": str(root / "GT"), "dataroot_lq": str(root / "LR"), "scale": 1,
                                  "phase": "train", "gt_size": 8, **opt})  # fmt: skip


def test_training_crop_of_a_given_lr_file_is_aligned_with_the_gt(pair_folders: Path) -> None:
    ds = _dataset(pair_folders)
    torch.manual_seed(0)
    tops_lefts = set()
    for _ in range(12):
        for i in range(len(ds)):
            item = ds[i]
            assert item["gt"].shape == item["lq"].shape == (3, 8, 8)
            torch.testing.assert_close(item["lq"], 1 - item["gt"], atol=1e-6, rtol=0)
            full = cv2.imread(item["gt_path"])[:, :, ::-1].astype(np.float32) / 255
            patch = item["gt"].permute(1, 2, 0).numpy()
            where = [(t, l) for t in range(23 - 7) for l in range(41 - 7) if np.array_equal(full[t : t + 8, l : l + 8], patch)]
            assert len(where) == 1
            tops_lefts.add(where[0])
    assert any(t != l for t, l in tops_lefts)  # crops where top != left were drawn


@pytest.mark.parametrize("gt_size, ok", [(0, False), (3, False), (4, True), (6, False), (8, True), (23, False), (20, True)])
def test_gt_size_bounds(pair_folders: Path, gt_size: int, ok: bool) -> None:
    """Multiples of 4 (IMDN_AS) up to the image side (23 x 41 here)."""
    if gt_size % 4 or gt_size < 4:
        with pytest.raises(ConfigError, match=rf"gt_size: must be a multiple of 4 for IMDN_AS, got {gt_size}"):
            _dataset(pair_folders, gt_size=gt_size)
        return
    item = _dataset(pair_folders, gt_size=gt_size)[0]
    assert item["gt"].shape == (3, gt_size, gt_size)


@pytest.mark.parametrize("gt_size, ok", [(20, True), (24, False)])
def test_gt_size_at_the_image_side(tmp_path: Path, gt_size: int, ok: bool) -> None:
    """An image side equal to gt_size gives the whole image; one multiple of 4 more is refused by name."""
    for sub in ("GT", "LR"):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "a.png"), np.full((20, 21, 3), 7, np.uint8))
    ds = _dataset(tmp_path, gt_size=gt_size)
    if ok:
        assert ds[0]["gt"].shape == (3, 20, 20)
    else:
        with pytest.raises(ConfigError, match=r"a\.png: image 20x21 is smaller than gt_size 24"):
            ds[0]


# --------------------------------------------------------------------------- training summary


def _summary(tmp_path: Path, best_iter: int, last_iter: int) -> str:
    from imdn_plugin.integration.progress import TrainingRun

    run = TrainingRun(stream=open(os.devnull, "w"))
    run.model = SimpleNamespace(best_metric_results={"v": {"psnr": {"val": 31.5, "iter": best_iter}}})
    run.last_iter = last_iter
    run.record_validation("v", {"psnr": 30.25})
    (tmp_path / "models").mkdir(exist_ok=True)
    opt = {"name": "n", "train": {"total_iter": last_iter},
           "datasets": {"train": {"name": "tr"}, "val": {"name": "v", "dataroot_gt": str(tmp_path / "nothing")}},
           "val": {"metrics": {"psnr": {}}}, "path": {"models": str(tmp_path / "models")}}  # fmt: skip
    try:
        return run.summary(opt)
    finally:
        run.stream.close()


def test_summary_best_iteration_differs_from_the_last(tmp_path: Path) -> None:
    text = _summary(tmp_path, best_iter=2, last_iter=6)
    assert "# psnr: last 30.2500 @ 6 iter  best 31.5000 @ 2 iter" in text, text
    assert "6/6 iterations" in text


@pytest.mark.parametrize("reported, shown", [(5, 5), (6, 6), (7, 6)])
def test_summary_best_at_the_final_validation_is_the_last_trained_iteration(tmp_path: Path, reported: int, shown: int) -> None:
    """BasicSR validates once more at total_iter + 1: that is the weights of the last iteration."""
    text = _summary(tmp_path, best_iter=reported, last_iter=6)
    assert f"best 31.5000 @ {shown} iter" in text, text


# --------------------------------------------------------------------------- RNG streams


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.random()), float(torch.rand(()))


def test_seeded_rngs_restores_every_global_stream() -> None:
    from imdn_plugin.integration.exact_resume import seeded_rngs

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = _draws()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with seeded_rngs(123):
        inside = _draws()
    assert _draws() == expected  # the streams go on as if nothing had drawn
    with seeded_rngs(123):
        assert _draws() == inside  # and the seeded draws are reproducible


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    from imdn_plugin.integration.exact_resume import rng_state, set_rng_state

    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    torch.save({"rng": rng_state()}, tmp_path / "s.pth")
    expected = _draws()
    _draws()  # move every stream on
    set_rng_state(torch.load(tmp_path / "s.pth", weights_only=True)["rng"])
    assert _draws() == expected


# --------------------------------------------------------------------------- experiment lock


def test_lock_file_replaced_between_open_and_flock_locks_the_new_file(tmp_path: Path, monkeypatch) -> None:
    """Another process may replace ``.imdn_lock`` (same folder, same device) after our open:
    the lock must be taken on the file now at the path (compared by inode)."""
    from imdn_plugin.integration import experiment_lock as el

    lock = el.ExperimentLock(tmp_path / "exp")
    real_flock = el.ExperimentLock._flock
    calls: list[int] = []

    def flock_after_replacement(self, fd: int) -> bool:
        calls.append(fd)
        if len(calls) == 1:  # the first open: someone replaces the file before we flock it
            new = self.path.with_name("replacement")
            new.write_text("")
            os.replace(new, self.path)
        return real_flock(self, fd)

    monkeypatch.setattr(el.ExperimentLock, "_flock", flock_after_replacement)
    lock.acquire()
    try:
        assert len(calls) == 2  # the replaced file was noticed and the new one locked
        assert os.fstat(lock._fd).st_ino == os.stat(lock.path).st_ino
        assert el.read_lock_record(tmp_path / "exp")["pid"] == os.getpid()
    finally:
        lock.release()


# --------------------------------------------------------------------------- checkpoint keys


def test_module_prefix_is_stripped_only_at_the_front() -> None:
    from imdn_plugin.checkpoint import extract_state_dict

    t = torch.zeros(1)
    sd = extract_state_dict({"params": {"module.module.a.module.b": t, "c.module.d": t, "e": t}})
    assert set(sd) == {"a.module.b", "c.module.d", "e"}
