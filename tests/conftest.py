"""Shared test fixtures: device from IMDN_TEST_DEVICE, the read-only reference data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import imdn_plugin  # noqa: F401  (installs the torchvision alias before basicsr is imported)

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device(os.environ.get("IMDN_TEST_DEVICE", "cpu"))


@pytest.fixture(scope="session")
def reference() -> Path:
    """``../shared/reference`` (authors' weights + Set5); skips when absent."""
    if not (REFERENCE / "checkpoints").is_dir():
        pytest.skip(f"reference data not found at {REFERENCE} (authors' weights and Set5 are not redistributed)")
    return REFERENCE


@pytest.fixture(scope="session")
def tiny_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``HR/`` (four 32x32 noise images) and ``LR/`` (their 8x8 area-downscaled versions), x4 pairs."""
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("tiny_pairs")
    for sub in ("HR", "LR"):
        (root / sub).mkdir()
    for i in range(4):
        img = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "HR" / f"{i}.png"), img)
        cv2.imwrite(str(root / "LR" / f"{i}.png"), cv2.resize(img, (8, 8), interpolation=cv2.INTER_AREA))
    return root


@pytest.fixture(scope="session")
def tiny_sr_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny stand-ins, in the reference data's layout, for what the shipped option files name.

    * ``checkpoints/IMDN_x{2,3,4}.pth``, ``IMDN_AS.pth``: paper-size networks (64 features,
      6 blocks) with random weights, saved as bare state dicts like the authors' files;
      ``model_RTC.pth``, ``model_RTE.pth``: the released real-time networks' sizes, random weights;
    * ``Set5/HR/{a,b}.png`` (36x36) and ``Set5/LR_bicubic/X{s}/{a,b}x{s}.png`` (MATLAB bicubic);
    * ``RealSR/ValidationGT`` and ``ValidationLR``: same-size pairs (30x26);
    * ``DIV2K_train_HR_sub.lmdb`` (four 48x48 sub-images) and ``DIV2K_train_LR_bicubic_X{s}_sub.lmdb``.
    """
    import cv2
    import numpy as np
    from basicsr.utils.matlab_functions import imresize

    from imdn_plugin.archs import IMDN, IMDN_AS, IMDN_RTC, IMDN_RTE
    from imdn_plugin.data.lmdb import LmdbWriter

    root = tmp_path_factory.mktemp("tiny_sr_data")
    rng = np.random.default_rng(0)

    def photo(h: int, w: int) -> np.ndarray:
        return (cv2.GaussianBlur(rng.random((h, w, 3)), (5, 5), 0) * 255).round().astype(np.uint8)

    def down(img: np.ndarray, s: int) -> np.ndarray:
        return np.clip(imresize(img / 255.0, 1 / s) * 255, 0, 255).round().astype(np.uint8)

    (root / "checkpoints").mkdir()
    torch.manual_seed(0)
    for s in (2, 3, 4):
        torch.save(IMDN(upscale=s).state_dict(), root / "checkpoints" / f"IMDN_x{s}.pth")
    torch.save(IMDN_AS().state_dict(), root / "checkpoints" / "IMDN_AS.pth")
    torch.save(IMDN_RTC().state_dict(), root / "checkpoints" / "model_RTC.pth")
    torch.save({f"module.{k}": v for k, v in IMDN_RTE().state_dict().items()}, root / "checkpoints" / "model_RTE.pth")
    for name in ("a", "b"):
        hr = photo(36, 36)
        (root / "Set5" / "HR").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "Set5" / "HR" / f"{name}.png"), hr)
        for s in (2, 3, 4):
            lr_dir = root / "Set5" / "LR_bicubic" / f"X{s}"
            lr_dir.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(lr_dir / f"{name}x{s}.png"), down(hr, s))
        for sub in ("ValidationGT", "ValidationLR"):
            (root / "RealSR" / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "RealSR" / sub / f"{name}.png"), photo(30, 26))
    subs = {f"0001_s{i:03d}": photo(48, 48) for i in range(1, 5)}
    for s in (1, 2, 3, 4):
        target = root / ("DIV2K_train_HR_sub.lmdb" if s == 1 else f"DIV2K_train_LR_bicubic_X{s}_sub.lmdb")
        with LmdbWriter(target) as writer:
            for key, hr in subs.items():
                writer.put(key, hr if s == 1 else down(hr, s))
            writer.commit()
    return root


@pytest.fixture()
def basicsr_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``run(*args) -> exit code``: the ``basicsr`` command in this process, in ``tmp_path``, on one thread.

    A subprocess costs 5-9 s of imports; in-process runs cost what the work costs.  BasicSR's
    pipeline parses ``sys.argv`` (restored) and sets up its 'basicsr' logger once per process
    (reset around every run, so each run writes its own log file, and its handlers are closed);
    the command's malloc setting is turned off (``IMDN_MALLOC=default``) for the test process.
    """
    import logging
    import sys

    from basicsr.utils import logger as basicsr_logger

    from imdn_plugin.cli import main

    log = logging.getLogger("basicsr")
    before = (list(log.handlers), log.level, log.propagate, "basicsr" in basicsr_logger.initialized_logger)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("IMDN_MALLOC", "default")  # `basicsr test` would change this process's malloc
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def run(*args: str) -> int:
        basicsr_logger.initialized_logger.pop("basicsr", None)
        try:
            return main(list(args))
        finally:
            for handler in list(log.handlers):
                if handler not in before[0]:
                    log.removeHandler(handler)
                    handler.close()

    yield run
    torch.set_num_threads(threads)
    log.setLevel(before[1])
    log.propagate = before[2]
    if before[3]:
        basicsr_logger.initialized_logger["basicsr"] = True
    else:
        basicsr_logger.initialized_logger.pop("basicsr", None)


@pytest.fixture()
def one_thread():
    """One intra-op thread for the test (restored after): tiny networks on tiny inputs gain
    nothing from more, and on a busy 2-core machine every multi-threaded op waits at an
    OpenMP barrier for a descheduled thread (Set5 x2-x4: 12 s on one thread, 31 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
