"""``basicsr infer``: detection from the checkpoint, image kinds, folders with bad files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.cli.infer import main as infer_main


@pytest.fixture()
def weights(tmp_path: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    out = {}
    for name, net in (("x3", IMDN(num_feat=16, num_block=1, upscale=3)), ("as", IMDN_AS(num_feat=16, num_block=1))):
        out[name] = tmp_path / f"{name}.pth"
        torch.save({"params": net.state_dict()}, out[name])  # BasicSR form
    return out


def images(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    imgs = {
        "rgb.png": rng.integers(0, 256, (13, 17, 3), dtype=np.uint8),
        "gray.png": rng.integers(0, 256, (9, 11), dtype=np.uint8),
        "rgba.png": rng.integers(0, 256, (10, 12, 4), dtype=np.uint8),
        "deep.png": rng.integers(0, 65536, (8, 9, 3), dtype=np.uint16),
        "photo.jpg": rng.integers(0, 256, (16, 15, 3), dtype=np.uint8),
    }
    for name, arr in imgs.items():
        assert cv2.imwrite(str(folder / name), arr)
    return imgs


def test_folder_with_corrupt_file(weights: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    imgs = images(src)
    good = (src / "rgb.png").read_bytes()
    (src / "broken.png").write_bytes(good[: len(good) // 3])  # truncated download
    (src / "notes.png").write_text("not an image")
    jpg = (src / "photo.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(jpg[: len(jpg) * 2 // 3])  # OpenCV alone would decode half an image
    rc = infer_main(["-i", str(src), "-o", str(tmp_path / "out"), "--weights", str(weights["x3"]), "-q"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "notes.png" in err and "cut.jpg: cannot decode image (truncated JPEG" in err
    assert "5 of 8 image(s) written" in err
    for name, arr in imgs.items():
        out = cv2.imread(str(tmp_path / "out" / (Path(name).stem + ".png")), cv2.IMREAD_UNCHANGED)
        assert out is not None, name
        assert out.shape[:2] == (arr.shape[0] * 3, arr.shape[1] * 3)
        if name == "gray.png":
            assert out.ndim == 2
        elif name == "rgba.png":
            assert out.shape[2] == 4
        else:
            assert out.shape[2] == 3
        assert out.dtype == (np.uint16 if name == "deep.png" else np.uint8)


def test_alpha_is_kept(weights: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:6, :, 3] = 0  # top half transparent
    cv2.imwrite(str(src), rgba)
    assert infer_main(["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(weights["x3"]), "-q"]) == 0
    alpha = cv2.imread(str(tmp_path / "o" / "a.png"), cv2.IMREAD_UNCHANGED)[..., 3]
    assert alpha[:15].max() <= 5 and alpha[21:].min() >= 250


@pytest.mark.parametrize("scale, tile", [(None, None), (2.5, None), (3.7, 16)])
def test_imdn_as_any_scale(weights: dict[str, Path], tmp_path: Path, scale, tile) -> None:
    src = tmp_path / "x.png"
    cv2.imwrite(str(src), np.random.default_rng(1).integers(0, 256, (21, 30, 3), dtype=np.uint8))
    args = ["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(weights["as"]), "-q"]
    args += ["--scale", str(scale)] if scale else []
    args += ["--tile", str(tile), "--tile-overlap", "4"] if tile else []
    assert infer_main(args) == 0
    out = cv2.imread(str(tmp_path / "o" / "x.png"))
    s = scale or 1
    assert out.shape[:2] == (round(21 * s), round(30 * s))


def test_scale_mismatch_for_imdn_is_a_clear_error(weights: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "in"
    images(src)
    exe = Path(sys.executable).with_name("basicsr")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "imdn_plugin"]
    res = subprocess.run([*cmd, "infer", "-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(weights["x3"]), "--scale", "2"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2
    assert "basicsr: error: --scale 2:" in res.stderr and "IMDN x3" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()
