"""Training through ``basicsr train``: loss falls, exact resume after SIGKILL, 2-process gloo.

Every run is a subprocess on a tiny synthetic dataset with a tiny IMDN, one thread each.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import imdn_plugin  # noqa: F401
from imdn_plugin.checkpoint import load_state_dict

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# Runs `basicsr` in-process with torch.save made to die (SIGKILL) half-way through writing
# the file whose name contains KILL_TAG: a kill during a checkpoint write.
KILL_DRIVER = """
import io, os, signal, sys, torch
tag = os.environ["KILL_TAG"]
real_save = torch.save
def dying_save(obj, f, *args, **kwargs):
    if tag in str(getattr(f, "name", f)):
        buf = io.BytesIO(); real_save(obj, buf, *args, **kwargs); data = buf.getvalue()
        f.write(data[: len(data) // 2]); f.flush(); os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = dying_save
from imdn_plugin.cli import main
sys.exit(main(sys.argv[1:]))
"""


def basicsr_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("basicsr")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "imdn_plugin"]



pytestmark = pytest.mark.slow  # every test here trains in a subprocess

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 64x64 smooth colour images (HR) and their MATLAB-bicubic x4 LR versions."""
    from basicsr.utils.matlab_functions import imresize

    root = tmp_path_factory.mktemp("tiny_data")
    (root / "HR").mkdir()
    (root / "LR").mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64] / 64.0
    for i in range(6):
        chans = [np.sin(2 * np.pi * (x * rng.uniform(1, 3) + y * rng.uniform(0, 2)) + rng.uniform(0, 6)) for _ in range(3)]
        hr = ((np.stack(chans, 2) * 0.4 + 0.5) * 255).round().astype(np.uint8)
        lr = np.clip(imresize(hr / 255.0, 0.25) * 255, 0, 255).round().astype(np.uint8)
        cv2.imwrite(str(root / "HR" / f"{i:04d}.png"), hr)
        cv2.imwrite(str(root / "LR" / f"{i:04d}.png"), lr)
    return root


def write_opt(dir_: Path, data: Path, name: str, *, total_iter: int = 16, workers: int = 0, **train_ds) -> Path:
    opt = {
        "name": name,
        "model_type": "IMDNModel",
        "scale": 4,
        "num_gpu": 0,
        "manual_seed": 3,
        "datasets": {
            "train": {
                "name": "tiny", "type": "PairedImageDataset", "dataroot_gt": str(data / "HR"),
                "dataroot_lq": str(data / "LR"), "io_backend": {"type": "disk"}, "gt_size": 32, "use_hflip": True,
                "use_rot": True, "num_worker_per_gpu": workers, "batch_size_per_gpu": 2, "dataset_enlarge_ratio": 2,
                "prefetch_mode": None, **train_ds,
            }
        },  # fmt: skip
        "network_g": {"type": "IMDN", "num_feat": 16, "num_block": 1, "upscale": 4},
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {
            "ema_decay": 0,
            "optim_g": {"type": "Adam", "lr": 1e-3, "betas": [0.9, 0.999]},
            "scheduler": {"type": "MultiStepLR", "milestones": [10], "gamma": 0.5},
            "total_iter": total_iter,
            "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
        },
        "logger": {"print_freq": 1, "save_checkpoint_freq": 4, "use_tb_logger": False},
    }
    path = dir_ / f"{name}.yml"
    path.write_text(yaml.safe_dump(opt))
    return path


def train(cwd: Path, opt: Path, *extra: str, kill_tag: str | None = None) -> subprocess.CompletedProcess:
    if kill_tag:
        driver = cwd / "kill_driver.py"
        driver.write_text(KILL_DRIVER)
        cmd = [sys.executable, str(driver)]
    else:
        cmd = basicsr_cmd()
    env = {**ENV, "KILL_TAG": kill_tag or ""}
    return subprocess.run([*cmd, "train", "-opt", str(opt), *extra], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600)


def final_weights(cwd: Path, name: str) -> dict[str, torch.Tensor]:
    return load_state_dict(cwd / "experiments" / name / "models" / "net_g_latest.pth")


def losses(cwd: Path, name: str) -> list[float]:
    logs = sorted((cwd / "experiments" / name).glob(f"train_{name}_*.log"))
    text = "".join(p.read_text() for p in logs)
    return [float(v) for v in re.findall(r"l_pix: ([\d.e+-]+)", text)]


@pytest.fixture(scope="module")
def reference_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    res = train(cwd, write_opt(cwd, data_dir, "ref", total_iter=40))
    assert res.returncode == 0, res.stderr[-3000:]
    return cwd, "ref"


def test_loss_falls(reference_run: tuple[Path, str]) -> None:
    values = losses(*reference_run)
    assert len(values) == 40
    first, last = np.mean(values[:5]), np.mean(values[-5:])
    assert last < 0.7 * first, (first, last)


def test_kill_mid_checkpoint_write_then_auto_resume_is_exact(data_dir: Path, reference_run: tuple[Path, str], tmp_path: Path) -> None:
    ref_cwd, _ = reference_run
    # The same 40 iterations, killed while writing the training state of iteration 12
    # (net_g_12.pth is complete, 12.state is half written), then resumed twice more.
    opt = write_opt(tmp_path, data_dir, "ref", total_iter=40)
    states = tmp_path / "experiments" / "ref" / "training_states"
    killed = train(tmp_path, opt, kill_tag=".12.state.")
    assert killed.returncode == -signal.SIGKILL
    assert not (states / "12.state").exists() and (states / "8.state").exists()
    # The first resume is killed again while writing a network file (iteration 24).
    killed = train(tmp_path, opt, "--auto_resume", kill_tag=".net_g_24.pth.")
    assert killed.returncode == -signal.SIGKILL
    assert "Resuming training from epoch: 1, iter: 8" in killed.stderr + killed.stdout + "".join(
        p.read_text() for p in (tmp_path / "experiments").glob("ref*/train_*.log")
    )
    done = train(tmp_path, opt, "--auto_resume")
    assert done.returncode == 0, done.stderr[-3000:]
    ref, resumed = final_weights(*reference_run), final_weights(tmp_path, "ref")
    assert ref.keys() == resumed.keys()
    for key in ref:
        assert torch.equal(ref[key], resumed[key]), key
    # The logged losses of the resumed iterations equal the uninterrupted ones.
    assert losses(tmp_path, "ref")[-16:] == losses(ref_cwd, "ref")[-16:]


def test_external_sigkill_with_loader_workers_resumes_exactly(data_dir: Path, reference_run: tuple[Path, str], tmp_path: Path) -> None:
    # Two loader workers instead of none, killed from outside once a checkpoint exists:
    # per-sample seeding makes the batches (and so the weights) the same as the reference's.
    opt = write_opt(tmp_path, data_dir, "ref", total_iter=40, workers=2)
    models = tmp_path / "experiments" / "ref" / "models"
    proc = subprocess.Popen([*basicsr_cmd(), "train", "-opt", str(opt)], cwd=tmp_path, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 300
    while not (models / "net_g_16.pth").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before the kill"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = train(tmp_path, opt, "--auto_resume")
    assert done.returncode == 0, done.stderr[-3000:]
    ref, resumed = final_weights(*reference_run), final_weights(tmp_path, "ref")
    for key in ref:
        assert torch.equal(ref[key], resumed[key]), key


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="torchrun not installed")
def test_two_process_gloo_training_on_cpu(data_dir: Path, tmp_path: Path) -> None:
    opt = write_opt(tmp_path, data_dir, "ddp", total_iter=6)
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    res = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "imdn_plugin", "train", "-opt", str(opt), "--launcher", "pytorch"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    log = "".join(p.read_text() for p in (tmp_path / "experiments" / "ddp").glob("train_ddp_*.log"))
    assert "World size (gpu number): 2" in log and "End of training" in log
    assert (tmp_path / "experiments" / "ddp" / "models" / "net_g_latest.pth").exists()
