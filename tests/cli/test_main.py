"""The ``basicsr`` command end to end (the installed command in subprocesses, or its main() in-process; outputs under a temp cwd)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BASICSR = Path(sys.executable).with_name("basicsr")


def run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [str(BASICSR)] if BASICSR.exists() else [sys.executable, "-m", "imdn_plugin"]
    return subprocess.run(cmd + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def set5_overrides(reference: Path, scale: int) -> list[str]:
    return [
        "--force_yml",
        f"path:pretrain_network_g={reference}/checkpoints/IMDN_x{scale}.pth",
        f"datasets:test_1:dataroot_gt={reference}/Set5/HR",
        f"datasets:test_1:dataroot_lq={reference}/Set5/LR_bicubic/X{scale}",
        "val:save_img=false",
    ]


@pytest.mark.slow
def test_help_lists_this_plugin(tmp_path: Path) -> None:
    res = run(["--help"], tmp_path)
    assert res.returncode == 0
    assert "basicsr train" in res.stdout and "imdn" in res.stdout.split("Plugins found:")[1]


@pytest.mark.slow
def test_module_entry_point_is_the_same_command(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "imdn_plugin", "nonsense"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "unknown command 'nonsense'" in res.stderr


def _listing(folder: Path) -> list[tuple[str, int]]:
    """Every file under ``folder`` with its size (empty when the folder does not exist)."""
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.slow
def test_set5_x4_reproduces_paper_table5(reference: Path, tmp_path: Path) -> None:
    checkout_results = _listing(REPO / "results")  # a user's earlier `basicsr test` run may have made one
    res = run(["test", "-opt", str(REPO / "options/test_IMDN_x4.yml"), *set5_overrides(reference, 4)], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    logs = list((tmp_path / "results" / "IMDN_x4_test").glob("test_IMDN_x4_test_*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    psnr = float(re.search(r"# psnr: ([\d.]+)", text).group(1))
    ssim = float(re.search(r"# ssim: ([\d.]+)", text).group(1))
    assert abs(psnr - 32.2096) <= 0.001
    assert abs(ssim - 0.8948) <= 0.0001
    # The run wrote into its working folder, not into the checkout's results/ (if there is one).
    assert _listing(REPO / "results") == checkout_results


def write_opt(tmp_path: Path, data: Path, edit) -> Path:
    """options/test_IMDN_x4.yml on ``data`` (the reference layout: checkpoints/, Set5/), edited."""
    opt = yaml.safe_load((REPO / "options/test_IMDN_x4.yml").read_text())
    opt["path"]["pretrain_network_g"] = str(data / "checkpoints/IMDN_x4.pth")
    opt["datasets"]["test_1"]["dataroot_gt"] = str(data / "Set5/HR")
    opt["datasets"]["test_1"]["dataroot_lq"] = str(data / "Set5/LR_bicubic/X4")
    edit(opt)
    path = tmp_path / "opt.yml"
    path.write_text(yaml.safe_dump(opt))
    return path


def one_line_error(rc: int, stderr: str) -> str:
    assert rc == 2, stderr[-2000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith("basicsr: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def test_unknown_network_key_rejected_before_work(tiny_sr_data: Path, tmp_path: Path, basicsr_in_process, capsys) -> None:
    # In-process (the command's main(); a subprocess costs ~10 s of imports): test_set5_x4 above
    # runs the installed command itself.
    opt = write_opt(tmp_path, tiny_sr_data, lambda o: o["network_g"].update(num_feats=64))
    line = one_line_error(basicsr_in_process("test", "-opt", str(opt)), capsys.readouterr().err)
    assert "network_g (IMDN): unknown key 'num_feats'" in line and "did you mean 'num_feat'" in line
    assert "num_block" in line  # valid keys listed
    assert not (tmp_path / "results").exists()


def test_wrong_scale_checkpoint_names_the_file_scale(tiny_sr_data: Path, tmp_path: Path, basicsr_in_process, capsys) -> None:
    def edit(o: dict) -> None:
        o["path"]["pretrain_network_g"] = str(tiny_sr_data / "checkpoints/IMDN_x2.pth")

    rc = basicsr_in_process("test", "-opt", str(write_opt(tmp_path, tiny_sr_data, edit)))
    line = one_line_error(rc, capsys.readouterr().err)
    assert "IMDN_x2.pth: checkpoint is IMDN x2" in line and "network_g is IMDN x4" in line


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda o: o["datasets"]["test_1"].update(dataroot_lq="/no/such/dir"), "datasets:test_1:dataroot_lq: path does not exist: /no/such/dir"),
        (lambda o: o.update(inference={"acs_padding": 6}), "inference:acs_padding: must be a positive multiple of 4"),
        (lambda o: o.update(inference={"tiles": 64}), "inference: unknown key 'tiles' (did you mean 'tile'?)"),
        (lambda o: o.update(inference={"tile": 2}), "inference:tile: must be an integer >= 4"),
        (lambda o: o.update(scale=0), "scale: must be a number from 1 to 16, got 0"),
        (lambda o: o["network_g"].update(upscale=0), "network_g:upscale: must be an integer from 2 to 16, got 0"),
        (lambda o: o["path"].update(pretrain_network_g="/no/w.pth"), "path:pretrain_network_g: file does not exist: /no/w.pth"),
    ],
)
def test_bad_options_are_rejected_by_the_startup_check(tiny_sr_data: Path, tmp_path: Path, edit, expected: str) -> None:
    # The same check the command runs right after BasicSR parses the file (in-process here;
    # the subprocess tests above show it surfaces as one line before any work).  No
    # reference data needed: tiny stand-ins in its layout (random paper-size weights).
    import imdn_plugin
    from imdn_plugin.errors import ConfigError
    from imdn_plugin.integration.parse import BASICSR
    from imdn_plugin.options import validate_options

    imdn_plugin.register()
    opt = yaml.safe_load(write_opt(tmp_path, tiny_sr_data, edit).read_text())
    with pytest.raises(ConfigError) as err:
        validate_options(opt, BASICSR)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_imdn_as_on_a_realsr_layout_folder(reference: Path, tmp_path: Path, basicsr_in_process) -> None:
    """Same-size LR/GT pairs with sides not divisible by 4 (ACS path), RGB metrics."""
    import cv2
    import numpy as np

    from imdn_plugin.data.resize import imresize_to

    lr_dir, gt_dir = tmp_path / "RealSR/ValidationLR", tmp_path / "RealSR/ValidationGT"
    lr_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    for name, (h, w) in (("baby", (255, 253)), ("bird", (97, 131))):
        gt = cv2.imread(str(reference / f"Set5/HR/{name}.bmp"))[:h, :w]
        small = imresize_to(gt / 255.0, (h // 2, w // 2))
        lr = np.clip(imresize_to(small, (h, w)) * 255, 0, 255).round().astype(np.uint8)
        cv2.imwrite(str(gt_dir / f"{name}.png"), gt)
        cv2.imwrite(str(lr_dir / f"{name}.png"), lr)
    rc = basicsr_in_process(
        "test", "-opt", str(REPO / "options/test_IMDN_AS.yml"), "--force_yml",
        f"path:pretrain_network_g={reference}/checkpoints/IMDN_AS.pth", f"datasets:test_1:dataroot_gt={gt_dir}",
        f"datasets:test_1:dataroot_lq={lr_dir}",
    )  # fmt: skip
    assert rc == 0
    text = next((tmp_path / "results" / "IMDN_AS_test").glob("test_*.log")).read_text()
    psnr = float(re.search(r"# psnr: ([\d.]+)", text).group(1))
    ssim = float(re.search(r"# ssim: ([\d.]+)", text).group(1))
    assert 20 < psnr < 60 and 0.5 < ssim <= 1
    for name, (h, w) in (("baby", (255, 253)), ("bird", (97, 131))):
        out = cv2.imread(str(tmp_path / f"results/IMDN_AS_test/visualization/RealSR_val/{name}_IMDN_AS_test.png"))
        assert out.shape == (h, w, 3)
