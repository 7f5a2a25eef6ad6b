"""Exit codes that mean one thing for ``basicsr train`` / ``test`` (issue 20): 2 = refused before any
work (nothing under experiments/ or results/), 1 = failed during the work (the kept folder is
named), with the failures of round 3: a bit-flipped LMDB value mid-training, a full disk while
saving test images, gt/lq LMDBs whose keys differ, --launcher pytorch without torchrun."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import lmdb
import yaml

import imdn_plugin
from tests.cli.test_main import write_opt as write_test_opt
from tests.integration.test_training import write_opt as write_train_opt


def _lmdb_train_opt(tmp_path: Path, gt: Path, lq: Path, name: str = "lm") -> Path:
    opt = write_train_opt(tmp_path, tmp_path, name, total_iter=4, gt_size=32)
    o = yaml.safe_load(opt.read_text())
    o["datasets"]["train"].update(dataroot_gt=str(gt), dataroot_lq=str(lq), io_backend={"type": "lmdb"})
    opt.write_text(yaml.safe_dump(o))
    return opt


def _copy_lmdbs(src: Path, dst: Path) -> tuple[Path, Path]:
    gt, lq = dst / "gt.lmdb", dst / "lq.lmdb"
    shutil.copytree(src / "DIV2K_train_HR_sub.lmdb", gt)
    shutil.copytree(src / "DIV2K_train_LR_bicubic_X4_sub.lmdb", lq)
    return gt, lq


def _flip_one_bit_in_every_value(path: Path) -> None:
    """A bit flipped inside each PNG's pixel data (its header intact): found only when the value is decoded."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        values = [bytes(v) for _, v in txn.cursor()]
    env.close()
    data = bytearray((path / "data.mdb").read_bytes())
    for value in values:
        idat = value.index(b"IDAT") + 8
        at = data.find(value[:idat + 16])
        while at >= 0:  # every copy: LMDB may keep stale copies of a page
            data[at + idat + 4] ^= 0x10
            at = data.find(value[:idat + 16], at + 1)
    (path / "data.mdb").write_bytes(bytes(data))


def test_bit_flipped_lmdb_value_mid_training_exits_1(tiny_sr_data: Path, tmp_path: Path, basicsr_in_process, capsys) -> None:
    gt, lq = _copy_lmdbs(tiny_sr_data, tmp_path)
    _flip_one_bit_in_every_value(lq)
    rc = basicsr_in_process("train", "-opt", str(_lmdb_train_opt(tmp_path, gt, lq)))
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("basicsr: error: ")]
    assert rc == 1, err[-3000:]
    assert len(errors) == 1 and "lq LMDB key '0001_s00" in errors[0] and "cannot decode image" in errors[0], err[-3000:]
    assert "basicsr: the train run stopped; what it wrote is kept in " in err and "experiments/lm" in err
    assert (tmp_path / "experiments" / "lm").is_dir()


def test_lmdbs_with_different_keys_refused_before_work(tiny_sr_data: Path, tmp_path: Path, basicsr_in_process, capsys) -> None:
    gt, lq = _copy_lmdbs(tiny_sr_data, tmp_path)
    meta = lq / "meta_info.txt"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join(lines[:-1]) + "\n")  # lq lists one key fewer
    rc = basicsr_in_process("train", "-opt", str(_lmdb_train_opt(tmp_path, gt, lq)))
    err = capsys.readouterr().err
    assert rc == 2, err[-3000:]
    assert f"datasets:train: key '0001_s004' of {gt} is not in {lq}; dataroot_gt and dataroot_lq must hold the same keys" in err
    assert "Traceback" not in err and not (tmp_path / "experiments").exists()


def test_launcher_pytorch_without_torchrun_is_one_line(
    tiny_pairs: Path, tmp_path: Path, basicsr_in_process, capsys, monkeypatch
) -> None:
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    opt = write_train_opt(tmp_path, tiny_pairs, "dist")
    rc = basicsr_in_process("train", "-opt", str(opt), "--launcher", "pytorch")
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err[-3000:]
    assert "basicsr: error: --launcher pytorch: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set; start the run with torchrun" in err
    assert not (tmp_path / "experiments").exists()


def test_full_disk_while_saving_test_images_exits_1(tiny_sr_data: Path, tmp_path: Path, basicsr_in_process, capsys, monkeypatch) -> None:
    import imdn_plugin.data.imageio as imageio

    def full(path, data, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imageio, "atomic_write", full)
    opt = write_test_opt(tmp_path, tiny_sr_data, lambda o: o["val"].update(save_img=True))
    rc = basicsr_in_process("test", "-opt", str(opt))
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err[-3000:]
    line = [ln for ln in err.splitlines() if ln.startswith("basicsr: error: ")]
    assert len(line) == 1 and line[0].endswith(
        ": cannot write image (No space left on device); nothing was written under that name, "
        "the images written before it are kept"
    ), err[-2000:]
    kept = [ln for ln in err.splitlines() if ln.startswith("basicsr: the test run stopped; what it wrote is kept in ")]
    assert len(kept) == 1 and kept[0].endswith("results/IMDN_x4_test"), err[-2000:]
    assert not list((tmp_path / "results").rglob("*.png"))


def test_test_images_are_written_by_the_atomic_writer(tiny_sr_data: Path, tmp_path: Path, basicsr_in_process, monkeypatch) -> None:
    import basicsr.models.sr_model as sr_model

    import imdn_plugin.data.imageio as imageio
    from imdn_plugin.integration import images

    imdn_plugin.integration.register()
    assert sr_model.imwrite is images.imwrite
    names = []
    real = imageio.write_png_atomic
    monkeypatch.setattr(imageio, "write_png_atomic", lambda path, img, **k: names.append(Path(path).name) or real(path, img, **k))
    opt = write_test_opt(tmp_path, tiny_sr_data, lambda o: o["val"].update(save_img=True))
    assert basicsr_in_process("test", "-opt", str(opt)) == 0
    pngs = sorted(p.name for p in (tmp_path / "results").rglob("*.png"))
    assert pngs == sorted(names) and len(pngs) == 2
    assert not [p for p in (tmp_path / "results").rglob("*") if ".tmp" in p.name]


def test_refusal_of_a_run_started_after_another_in_this_process_is_still_2(
    tiny_sr_data: Path, tmp_path: Path, basicsr_in_process, capsys
) -> None:
    ok = write_test_opt(tmp_path, tiny_sr_data, lambda o: None)
    assert basicsr_in_process("test", "-opt", str(ok)) == 0
    bad = write_test_opt(tmp_path, tiny_sr_data, lambda o: o["network_g"].update(num_feats=64))
    capsys.readouterr()
    assert basicsr_in_process("test", "-opt", str(bad)) == 2
    assert "stopped" not in capsys.readouterr().err


TERM_DRIVER = """
import os, signal, sys
import cv2
real, calls = cv2.imwrite, []
def imwrite(path, img, params=None):
    calls.append(path)
    if len(calls) == 2:  # SIGTERM halfway through the second image
        ok, buf = cv2.imencode(".png", img)
        with open(path, "wb") as f:
            f.write(buf.tobytes()[: len(buf) // 2])
        os.kill(os.getpid(), signal.SIGTERM)
    return real(path, img, params or [])
cv2.imwrite = imwrite
import imdn_plugin
from imdn_plugin.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_while_saving_test_images_leaves_whole_files_only(tiny_sr_data: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    opt = write_test_opt(tmp_path, tiny_sr_data, lambda o: o["val"].update(save_img=True))
    driver = tmp_path / "driver.py"
    driver.write_text(TERM_DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IMDN_MALLOC": "default"}
    res = subprocess.run([sys.executable, str(driver), "test", "-opt", str(opt)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
    assert res.returncode == 130, res.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "results").rglob("*png*"))
    assert files == ["ax4_IMDN_x4_test.png"], files  # the first image only: no cut-off PNG, no temporary


def _pairs_copy(tiny_pairs: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(tiny_pairs, data)
    return data


def test_folder_pairs_with_different_counts_refused_before_work(tiny_pairs: Path, tmp_path: Path, basicsr_in_process, capsys) -> None:
    """BasicSR asserts equal counts when it builds the dataset (a traceback); refused with the options."""
    data = _pairs_copy(tiny_pairs, tmp_path)
    (data / "LR" / "3.png").unlink()
    rc = basicsr_in_process("train", "-opt", str(write_train_opt(tmp_path, data, "pairs_count")))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err[-3000:]
    assert f"datasets:train: 4 files in dataroot_gt {data / 'HR'} but 3 in dataroot_lq {data / 'LR'}" in err
    assert not (tmp_path / "experiments").exists()


def test_folder_pairs_with_a_misnamed_lq_refused_before_work(tiny_pairs: Path, tmp_path: Path, basicsr_in_process, capsys) -> None:
    data = _pairs_copy(tiny_pairs, tmp_path)
    (data / "LR" / "2.png").rename(data / "LR" / "2x4.png")  # the same count, one name off
    rc = basicsr_in_process("train", "-opt", str(write_train_opt(tmp_path, data, "pairs_name")))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err[-3000:]
    assert f"datasets:train: {data / 'HR' / '2.png'} has no LQ image {data / 'LR' / '2.png'} (filename_tmpl '{{}}')" in err
    assert not (tmp_path / "experiments").exists()


def test_folder_pairs_follow_filename_tmpl(tiny_pairs: Path, tmp_path: Path) -> None:
    """The check uses BasicSR's naming rule: LQ = filename_tmpl.format(GT stem) + GT extension."""
    from imdn_plugin.errors import ConfigError
    from imdn_plugin.integration.parse import check_folder_pairs

    data = _pairs_copy(tiny_pairs, tmp_path)
    for f in sorted((data / "LR").iterdir()):
        f.rename(f.with_name(f"{f.stem}x4{f.suffix}"))
    ds = {"type": "PairedImageDataset", "io_backend": {"type": "disk"}, "dataroot_gt": str(data / "HR"),
          "dataroot_lq": str(data / "LR"), "filename_tmpl": "{}x4"}  # fmt: skip
    check_folder_pairs({"datasets": {"test_1": ds}})  # every pair found
    import pytest

    with pytest.raises(ConfigError, match=r"datasets:test_1: .*0\.png has no LQ image .*0\.png \(filename_tmpl '\{\}'\)"):
        check_folder_pairs({"datasets": {"test_1": {**ds, "filename_tmpl": "{}"}}})
    check_folder_pairs({"datasets": {"test_1": {**ds, "filename_tmpl": "{}", "meta_info_file": "m.txt"}}})  # not checked
