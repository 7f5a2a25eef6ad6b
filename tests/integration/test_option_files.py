"""Every shipped option file (options/*.yml) passes the start-up check and runs.

Each file is used as shipped except for what points at data or sets the run's length:
dataset paths (tiny stand-ins from the ``tiny_sr_data`` fixture), training patch size,
batch size, loader workers, ``total_iter: 2``, logging, ``num_gpu: 0`` and, for test
files, the checkpoint (random weights of the file's network).  Every replaced key must
already be in the file, so a file whose structure drifts fails here.  The runs are
the ``basicsr`` command in this process (one thread).
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml

import imdn_plugin
from imdn_plugin.checkpoint import describe, load_state_dict
from imdn_plugin.errors import ConfigError
from imdn_plugin.integration.parse import read_options

REPO = Path(__file__).resolve().parents[2]
OPTION_FILES = sorted((REPO / "options").glob("*.yml"))


def test_the_shipped_files_are_the_expected_ones() -> None:
    names = {p.stem for p in OPTION_FILES}
    assert {"test_IMDN_x2", "test_IMDN_x3", "test_IMDN_x4", "test_IMDN_AS", "train_IMDN_x2", "train_IMDN_x3",
            "train_IMDN_x4", "train_IMDN_AS", "train_IMDN_x4_demo", "test_IMDN_RTC_x2", "test_IMDN_RTE_x2",
            "train_IMDN_RTC_x2", "train_IMDN_RTE_x2"} <= names  # fmt: skip


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # data, never code (plain dicts, for editing)


def replace(section: dict[str, Any], key: str, value: Any, where: str) -> None:
    assert key in section, f"{where}: the shipped file has no '{key}'"
    section[key] = value


def adapt(opt: dict[str, Any], data: Path) -> dict[str, Any]:
    """The file's options with the data paths and the run's size replaced (see the module docstring)."""
    opt = copy.deepcopy(opt)
    replace(opt, "num_gpu", 0, "top level")
    net = opt["network_g"]
    for phase, ds in opt["datasets"].items():
        where = f"datasets:{phase}"
        scale = ds.get("scale", opt.get("scale"))
        lmdb = ds["io_backend"]["type"] == "lmdb"
        if ds["type"] == "AnyScalePairedDataset" and "dataroot_lq" in ds:  # same-size real pairs
            gt, lq = data / "RealSR/ValidationGT", data / "RealSR/ValidationLR"
        elif lmdb:
            gt, lq = data / "DIV2K_train_HR_sub.lmdb", data / f"DIV2K_train_LR_bicubic_X{scale}_sub.lmdb"
        else:
            gt, lq = data / "Set5/HR", data / f"Set5/LR_bicubic/X{scale}"
        replace(ds, "dataroot_gt", str(gt), where)
        if "dataroot_lq" in ds:
            replace(ds, "dataroot_lq", str(lq), where)
        if phase == "train":
            replace(ds, "gt_size", 24, where)  # a multiple of 2, 3 and 4
            replace(ds, "batch_size_per_gpu", 2, where)
            replace(ds, "num_worker_per_gpu", 0, where)
            for key in ("persistent_workers", "pin_memory"):
                if key in ds:
                    ds[key] = False
    if opt["path"].get("pretrain_network_g") is not None:
        named = {"IMDN_AS": "IMDN_AS", "IMDN_RTC": "model_RTC", "IMDN_RTE": "model_RTE"}
        name = named.get(net["type"], f"IMDN_x{net.get('upscale')}")
        replace(opt["path"], "pretrain_network_g", str(data / "checkpoints" / f"{name}.pth"), "path")
    if "train" in opt:
        replace(opt["train"], "total_iter", 2, "train")
        replace(opt["logger"], "print_freq", 1, "logger")
        replace(opt["logger"], "use_tb_logger", False, "logger")
    return opt


def check(path: Path, is_train: bool) -> None:
    """What the command runs on the file before any work: the safe YAML loader and every check."""
    imdn_plugin.register()
    read_options(str(path), None, is_train, "none", False)


@pytest.mark.parametrize("path", OPTION_FILES, ids=[p.stem for p in OPTION_FILES])
def test_as_shipped_only_the_data_is_missing(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Network, inference and train blocks pass; the first problem is the data folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: datasets:\w+:dataroot_gt: path does not exist: datasets/"):
        check(path, path.stem.startswith("train"))


@pytest.mark.slow
@pytest.mark.parametrize("path", OPTION_FILES, ids=[p.stem for p in OPTION_FILES])
def test_runs_on_tiny_data(path: Path, tiny_sr_data: Path, basicsr_in_process, tmp_path: Path) -> None:
    opt = adapt(load(path), tiny_sr_data)
    run_file = tmp_path / path.name
    run_file.write_text(yaml.safe_dump(opt))
    command = "train" if "train" in opt else "test"
    check(run_file, command == "train")
    assert basicsr_in_process(command, "-opt", str(run_file)) == 0
    name, net = opt["name"], opt["network_g"]
    if command == "train":
        folder = tmp_path / "experiments" / name
        spec = describe(load_state_dict(folder / "models" / "net_g_latest.pth"))
        assert spec is not None and spec.type == net["type"]
        assert (spec.num_feat, spec.num_block) == (net["num_feat"], net["num_block"])
        assert spec.upscale == net.get("upscale", 4)  # IMDN_AS: x4 pixel shuffle after two stride-2 convs
        log = next(folder.glob(f"train_{name}_*.log")).read_text()
        lr = opt["train"]["optim_g"]["lr"]
        for it in (1, 2):
            m = re.search(rf"iter:\s+{it}, lr:\(([\d.e+-]+),\)\].* l_pix: ([\d.e+-]+)", log)
            assert m and float(m.group(1)) == pytest.approx(lr) and float(m.group(2)) < 1, log[-2000:]
        assert "iter:       3," not in log
    else:
        folder = tmp_path / "results" / name
        log = next(folder.glob(f"test_{name}_*.log")).read_text()
        ds = opt["datasets"]["test_1"]
        pngs = sorted((folder / "visualization" / ds["name"]).glob("*.png"))
        size = (30, 26) if "RealSR" in ds["dataroot_gt"] else (36, 36)  # the GT size
        assert len(pngs) == 2 and all(cv2.imread(str(p)).shape == (*size, 3) for p in pngs), pngs
        # what ran is in the log, once: the shipped files are exact fp32 on the fused CPU plan here,
        # except the real-time networks, which it does not cover: the generic (eager) forward
        path = "fused-cpu" if net["type"] in ("IMDN", "IMDN_AS") else "eager"
        assert log.count(f"inference path: {path} (fp32)") == 1, log[-2000:]
    # The file's own metrics, on the (final) validation
    for metric in opt["val"]["metrics"]:
        assert re.search(rf"# {metric}: [\d.]+", log), log[-2000:]
