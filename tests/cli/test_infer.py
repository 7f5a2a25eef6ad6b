"""``basicsr infer``: detection from the checkpoint, image kinds, folders with bad files,
collisions decided before any work, non-finite values, huge images, --recursive, EXIF,
progress, output pixels equal to the network's, the ACS padding and tile overlap defaults."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from imdn_plugin import Upscaler
from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.cli.infer import main as infer_main
from imdn_plugin.inference import (
    InferenceOptions,
    acs_forward,
    build_predictor,
    tiled_forward,
)
from imdn_plugin.inference.cropping import acs_patch_size
from imdn_plugin.inference.fast import make_fast_forward
from tests.helpers import banded, sensitive


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
    assert "basicsr infer: 5 written, 3 failed → " in err
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
    args = ["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(weights["x3"]), "-q", "--alpha", "bicubic"]
    assert infer_main(args) == 0
    alpha = cv2.imread(str(tmp_path / "o" / "a.png"), cv2.IMREAD_UNCHANGED)[..., 3]
    assert alpha[:15].max() <= 5 and alpha[21:].min() >= 250


@pytest.mark.slow
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


@pytest.mark.slow
def test_scale_mismatch_for_imdn_is_a_clear_error(weights: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "in"
    images(src)
    exe = Path(sys.executable).with_name("basicsr")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "imdn_plugin"]
    res = subprocess.run([*cmd, "infer", "-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(weights["x3"]), "--scale", "2"],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert res.returncode == 2
    assert "basicsr: error: --scale 2:" in res.stderr and "IMDN x3" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- helpers
def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """``basicsr infer ARGS`` in this process, through the command's own error handling."""
    import imdn_plugin.cli as cli

    monkeypatch.setattr(cli, "keep_freed_memory", lambda: False)  # leave this test process's malloc alone
    capsys.readouterr()
    rc = cli.main(["infer", *args])
    return rc, capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_images(folder: Path, names: list[str], size: tuple[int, int] = (8, 9)) -> dict[str, bytes]:
    rng = np.random.default_rng(len(names))
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(folder / name), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return snapshot(folder)


def summary_counts(err: str) -> dict[str, int]:
    line = [ln for ln in err.splitlines() if ln.startswith("basicsr infer: ") and "→" in ln]
    assert len(line) == 1, err
    return {what: int(n) for n, what in re.findall(r"(\d+) (written|skipped|failed)", line[0])}


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("basicsr: error: ") and "Traceback" not in err, err
    return lines[0]


MISSING = "no-such-weights.pth"  # refusals must come before the checkpoint is even opened


# --------------------------------------------------------------------------- collisions
def test_same_folder_png_and_jpg_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    d = tmp_path / "d"
    before = write_images(d, ["a.png", "a.jpg"])
    for extra in ([], ["--overwrite"], ["--skip-existing"]):
        rc, err = run_cli(["-i", str(d), "-o", str(d), "--weights", MISSING, *extra], monkeypatch, capsys)
        assert rc == 2
        line = error_line(err)
        assert "2 output(s) would replace input files: " in line and f"{d}/a.png (from {d}/a.jpg)" in line
        assert "inputs are never overwritten" in line
        assert snapshot(d) == before  # every input byte-identical, nothing added


def test_single_input_into_its_own_folder_refused_even_with_overwrite(tmp_path: Path, monkeypatch, capsys) -> None:
    d = tmp_path / "d"
    before = write_images(d, ["a.png"])
    rc, err = run_cli(["-i", str(d / "a.png"), "-o", str(d), "--weights", MISSING, "--overwrite"], monkeypatch, capsys)
    assert rc == 2 and "1 output(s) would replace input files" in error_line(err)
    assert snapshot(d) == before


def test_two_inputs_one_output_name_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    d, out = tmp_path / "d", tmp_path / "out"
    before = write_images(d, ["a.png", "a.jpg", "b.png"])
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", MISSING], monkeypatch, capsys)
    assert rc == 2
    line = error_line(err)
    assert f"1 output name(s) would be written by several inputs: {out}/a.png (from {d}/a.jpg + {d}/a.png)" in line
    assert snapshot(d) == before and not out.exists()


def test_rerun_refused_then_skip_existing_then_overwrite(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    d, out = tmp_path / "d", tmp_path / "out"
    inputs = write_images(d, ["a.png", "b.png", "c.png"])
    args = ["-i", str(d), "-o", str(out), "--weights", str(x2), "-q"]
    rc, err = run_cli(args, monkeypatch, capsys)
    assert rc == 0 and summary_counts(err) == {"written": 3, "failed": 0}
    first = snapshot(out)
    assert sorted(first) == ["a.png", "b.png", "c.png"]
    (out / "a.png").write_bytes(b"an earlier result the user edited")
    (out / "c.png").unlink()
    kept = snapshot(out)

    rc, err = run_cli(args, monkeypatch, capsys)  # rerun: refused, nothing touched
    assert rc == 2
    assert error_line(err).endswith(
        f"2 output file(s) exist already: {out}/a.png, {out}/b.png; "
        "add --overwrite to replace them or --skip-existing to keep them and skip their inputs"
    )
    assert snapshot(out) == kept

    rc, err = run_cli([*args, "--skip-existing"], monkeypatch, capsys)  # resume
    assert rc == 0 and summary_counts(err) == {"written": 1, "skipped": 2, "failed": 0}
    assert snapshot(out) == {**kept, "c.png": first["c.png"]}

    rc, err = run_cli([*args, "--overwrite"], monkeypatch, capsys)
    assert rc == 0 and summary_counts(err) == {"written": 3, "failed": 0}
    assert snapshot(out) == first
    assert snapshot(d) == inputs


def test_overwrite_and_skip_existing_exclude_each_other(tmp_path: Path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["-i", "x", "-o", "y", "--weights", MISSING, "--overwrite", "--skip-existing"], monkeypatch, capsys)
    assert info.value.code == 2 and "not allowed with argument" in error_line(capsys.readouterr().err)


def test_a_bad_flag_value_is_one_line(monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["-i", "x", "-o", "y", "--weights", MISSING, "--backend", "nonsense"], monkeypatch, capsys)
    line = error_line(capsys.readouterr().err)  # not argparse's usage block
    assert info.value.code == 2 and "argument --backend: invalid choice: 'nonsense'" in line
    assert line.endswith("(see basicsr infer --help)")


def test_output_must_be_a_writable_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    d = tmp_path / "d"
    write_images(d, ["a.png"])
    existing = tmp_path / "result.png"
    existing.write_bytes(b"keep me")
    rc, err = run_cli(["-i", str(d), "-o", str(existing), "--weights", MISSING], monkeypatch, capsys)
    assert rc == 2
    assert error_line(err) == f"basicsr: error: --output: {existing} is a file; give a folder (it is created if needed)"
    assert existing.read_bytes() == b"keep me"
    rc, err = run_cli(["-i", str(d), "-o", str(existing / "sub"), "--weights", MISSING], monkeypatch, capsys)
    assert rc == 2 and f"--output: cannot write to {existing}/sub (" in error_line(err)


def test_folder_created_for_a_run_that_stops_is_removed(tmp_path: Path, monkeypatch, capsys) -> None:
    d = tmp_path / "d"
    write_images(d, ["a.png"])
    rc, err = run_cli(["-i", str(d), "-o", str(tmp_path / "new" / "out"), "--weights", MISSING], monkeypatch, capsys)
    assert rc == 2 and "checkpoint file not found" in error_line(err)
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- non-finite values
def test_non_finite_checkpoint_refused(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    d, out = tmp_path / "d", tmp_path / "out"
    write_images(d, ["a.png"])
    state = torch.load(x2, weights_only=True)["params"]
    state["IMDB1.c3.weight"][0, 0, 0, 0] = float("nan")
    bad = tmp_path / "diverged.pth"
    torch.save({"params": state}, bad)
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", str(bad)], monkeypatch, capsys)
    assert rc == 2
    assert error_line(err).startswith(f"basicsr: error: {bad}: tensor 'IMDB1.c3.weight' holds 1 non-finite value(s)")
    assert not out.exists()


def test_nan_tiff_and_huge_header_fail_alone(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from tests.data.test_imageio import huge_bmp, huge_png

    d, out = tmp_path / "d", tmp_path / "out"
    write_images(d, ["good.png"])
    img = np.random.default_rng(0).random((6, 7, 3)).astype(np.float32)
    img[2, 3, 0] = np.nan
    assert cv2.imwrite(str(d / "nan.tiff"), img)
    (d / "bomb.png").write_bytes(huge_png())
    (d / "bomb2.bmp").write_bytes(huge_bmp())
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", str(x2), "-q"], monkeypatch, capsys)
    assert rc == 1
    assert summary_counts(err) == {"written": 1, "failed": 3}
    assert sorted(snapshot(out)) == ["good.png"]
    listed = err.split("3 failed:\n")[1].splitlines()
    assert listed == [
        f"  {d}/bomb.png: cannot decode image (100000x100000 = 10,000,000,000 pixels, above the limit of "
        "268,435,456; set IMDN_MAX_PIXELS to allow more)",
        f"  {d}/bomb2.bmp: cannot decode image (100000x100000 = 10,000,000,000 pixels, above the limit of "
        "268,435,456; set IMDN_MAX_PIXELS to allow more)",
        f"  {d}/nan.tiff: 1 non-finite sample(s) (NaN/Inf) in a float image, first at row 2, column 3; "
        "refusing to guess their colour",
    ]


def test_non_finite_network_output_is_not_written(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    d, out = tmp_path / "d", tmp_path / "out"
    write_images(d, ["a.png"])
    state = torch.load(x2, weights_only=True)["params"]
    huge = tmp_path / "overflow.pth"  # finite weights whose activations overflow float32
    torch.save({"params": {k: torch.full_like(v, 1e20) for k, v in state.items()}}, huge)
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", str(huge), "-q"], monkeypatch, capsys)
    assert rc == 1 and summary_counts(err) == {"written": 0, "failed": 1}
    assert f"  {d}/a.png: the network's output holds " in err and "non-finite value(s) (NaN/Inf)" in err
    assert snapshot(out) == {}


# --------------------------------------------------------------------------- folders, EXIF, progress
def test_recursive_mirrors_the_tree(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    d = tmp_path / "d"
    inputs = write_images(d, ["top.png", "sub/mid.png", "sub/deeper/low.jpg", "other/x.png"])
    rc, err = run_cli(["-i", str(d), "-o", str(tmp_path / "flat"), "--weights", str(x2), "-q"], monkeypatch, capsys)
    assert rc == 0 and f"basicsr infer: 2 subfolder(s) of {d} skipped (use --recursive)" in err
    assert sorted(snapshot(tmp_path / "flat")) == ["top.png"]

    out = d / "out"  # inside the input tree: never read back as input
    args = ["-i", str(d), "-o", str(out), "--weights", str(x2), "-q", "-r"]
    rc, err = run_cli(args, monkeypatch, capsys)
    assert rc == 0 and summary_counts(err) == {"written": 4, "failed": 0}
    assert sorted(snapshot(out)) == ["other/x.png", "sub/deeper/low.png", "sub/mid.png", "top.png"]
    rc, err = run_cli([*args, "--skip-existing"], monkeypatch, capsys)
    assert rc == 0 and summary_counts(err) == {"written": 0, "skipped": 4, "failed": 0}
    assert {k: v for k, v in snapshot(d).items() if not k.startswith("out/")} == inputs

    write_images(d, ["sub/deeper/low.png"])  # a clash deep in the tree
    rc, err = run_cli(["-i", str(d), "-o", str(tmp_path / "o2"), "--weights", MISSING, "-r"], monkeypatch, capsys)
    assert rc == 2 and f"{tmp_path}/o2/sub/deeper/low.png (from {d}/sub/deeper/low.jpg + {d}/sub/deeper/low.png)" in err


def test_exif_orientation_is_applied(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from imdn_plugin import Upscaler
    from tests.data.test_imageio import DISPLAY, jpeg_with_orientation

    d, out = tmp_path / "d", tmp_path / "out"
    d.mkdir()
    rgb = np.random.default_rng(3).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    for o in (3, 6, 8):
        (d / f"o{o}.jpg").write_bytes(jpeg_with_orientation(rgb, o))
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", str(x2), "-q"], monkeypatch, capsys)
    assert rc == 0
    up = Upscaler(x2, device="cpu")
    for o in (3, 6, 8):
        stored = cv2.imread(str(d / f"o{o}.jpg"), cv2.IMREAD_UNCHANGED)  # pixels as stored
        expected = up(np.ascontiguousarray(DISPLAY[o](stored)).astype(np.float32) / 255)
        got = cv2.imread(str(out / f"o{o}.png"), cv2.IMREAD_UNCHANGED)
        assert got.shape == expected.shape == ((12, 20, 3) if o == 3 else (20, 12, 3))
        assert np.abs(got.astype(np.float64) - np.round(expected * 255)).max() <= 1


@pytest.mark.slow
def test_progress_bars_over_images_and_tiles(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    d = tmp_path / "d"
    write_images(d, ["a.png", "b.png"], size=(12, 12))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    args = ["-i", str(d), "--weights", str(x2), "--tile", "8", "--tile-overlap", "2", "--tile-stats", "local"]
    rc, err = run_cli([*args, "-o", str(tmp_path / "o1")], monkeypatch, capsys)
    assert rc == 0 and "images: 100%" in err and "2/2" in err and "tiles: " in err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    rc, err = run_cli([*args, "-o", str(tmp_path / "o2"), "-q"], monkeypatch, capsys)
    assert rc == 0 and "images:" not in err and "tiles" not in err and summary_counts(err)["written"] == 2


def test_errors_name_the_flags(tmp_path: Path, monkeypatch, capsys) -> None:
    for extra, expected in [
        (["--tile", "16", "--tile-overlap", "8", "--tile-stats", "local"],
         "--tile-overlap: must be less than half the tile (16), got 8"),  # (global tiles need no overlap)
        (["--backend", "onnxruntime", "--precision", "bf16"], "--precision: the onnxruntime backend runs fp32 only"),
        (["--tile", "2"], "--tile: must be an integer >= 4 (or no --tile: no tiling), got 2"),
        (["--acs-padding", "6"], "--acs-padding: must be a positive multiple of 4"),
    ]:
        rc, err = run_cli(["-i", str(tmp_path), "-o", str(tmp_path / "o"), "--weights", MISSING, *extra], monkeypatch, capsys)
        assert rc == 2 and expected in error_line(err) and "inference:" not in err


def test_output_appearing_during_the_run_is_kept(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from imdn_plugin.upscaler import Upscaler

    d, out = tmp_path / "d", tmp_path / "out"
    write_images(d, ["a.png", "b.png"])
    real = Upscaler._upscale_read

    def racing(self, src):  # another program writes out/a.png while the network runs
        if Path(src).name == "a.png":
            (out / "a.png").write_bytes(b"someone else's file")
        return real(self, src)

    monkeypatch.setattr(Upscaler, "_upscale_read", racing)
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", str(x2), "-q"], monkeypatch, capsys)
    assert rc == 1 and summary_counts(err) == {"written": 1, "failed": 1}
    assert f"  {out}/a.png: appeared while this run was working; not overwritten (use --overwrite)" in err
    assert (out / "a.png").read_bytes() == b"someone else's file"


def test_summary_counts_what_is_on_disk(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from imdn_plugin.data import imageio

    d, out = tmp_path / "d", tmp_path / "out"
    write_images(d, ["a.png"])
    # a write that leaves nothing (8-bit RGB results are encoded into the file, others written as bytes)
    monkeypatch.setattr(imageio, "write_png_atomic", lambda path, img, overwrite=True: None)
    monkeypatch.setattr(imageio, "write_atomic", lambda path, data, overwrite=True: None)
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", str(x2), "-q"], monkeypatch, capsys)
    assert rc == 1 and summary_counts(err) == {"written": 0, "failed": 1}
    assert f"  {out}/a.png: not found after writing" in err


def test_output_that_is_an_input_under_another_name_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    # A hard link stands in for a case-insensitive filesystem (macOS): out/a.png *is* d/a.png.
    d, out = tmp_path / "d", tmp_path / "out"
    before = write_images(d, ["a.png"])
    out.mkdir()
    os.link(d / "a.png", out / "a.png")
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", MISSING, "--overwrite"], monkeypatch, capsys)
    assert rc == 2 and f"1 output(s) would replace input files: {out}/a.png (from {d}/a.png)" in error_line(err)
    assert snapshot(d) == before


def test_names_differing_only_in_case_are_one_output(tmp_path: Path, monkeypatch, capsys) -> None:
    d, out = tmp_path / "d", tmp_path / "out"
    write_images(d, ["Photo.jpg", "photo.png"])
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", MISSING], monkeypatch, capsys)
    assert rc == 2 and "1 output name(s) would be written by several inputs" in error_line(err)


# --------------------------------------------------------------------------- pixels and defaults
#
# The outputs of `basicsr infer` compared with the network's own output, computed here
# from the decoded file: RGB order into the network, round(x * 255) / round(x * 65535).


def save_bare(net: torch.nn.Module, path: Path) -> Path:
    torch.save(net.state_dict(), path)  # the authors' form: a bare state dict
    return path


def as_network_input(path: Path) -> tuple[torch.Tensor, float, bool]:
    """``(RGB NCHW in [0, 1], max value, gray)`` of an image file, decoded independently of the plugin."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    maxval = 65535.0 if arr.dtype == np.uint16 else 255.0
    gray = arr.ndim == 2
    bgr = np.repeat(arr[:, :, None], 3, axis=2) if gray else arr
    rgb = bgr[:, :, ::-1].astype(np.float32) / maxval
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None], maxval, gray


def to_pixels(y: torch.Tensor, maxval: float, gray: bool) -> np.ndarray:
    """Network output (RGB NCHW) -> the integer pixels of the PNG infer writes."""
    bgr = y[0].clamp(0, 1).numpy().transpose(1, 2, 0)[:, :, ::-1].astype(np.float64)
    img = bgr.mean(axis=2) if gray else bgr
    return np.round(img * maxval)


def read_pixels(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64)


@pytest.mark.parametrize("kind", ["rgb8", "rgb16", "gray8"])
def test_output_pixels_are_the_networks_rgb_output(kind: str, tmp_path: Path, one_thread) -> None:
    net = sensitive(lambda: IMDN(num_feat=16, num_block=1, upscale=2))
    weights = save_bare(net, tmp_path / "x2.pth")
    rng = np.random.default_rng(3)
    shape, dtype = {"rgb8": ((14, 11, 3), np.uint8), "rgb16": ((9, 12, 3), np.uint16), "gray8": ((10, 13), np.uint8)}[kind]
    smooth = cv2.GaussianBlur(rng.random(shape), (3, 3), 0)  # channels differ
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), (smooth * np.iinfo(dtype).max).round().astype(dtype))
    # on the CPU, as the expected values below (exact equality is asked of most pixels)
    assert infer_main(["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(weights), "-q", "--device", "cpu"]) == 0
    got = read_pixels(tmp_path / "o" / "in.png")

    x, maxval, gray = as_network_input(src)
    predict = build_predictor(net, InferenceOptions())
    expected = to_pixels(predict(x), maxval, gray)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1 and (got == expected).mean() > 0.99
    assert 0 < expected.mean() < maxval  # not clamped flat
    if not gray:  # the test can tell the channel orders apart
        swapped = to_pixels(predict(x.flip(1)).flip(1), maxval, gray)
        assert np.abs(swapped - expected).max() > maxval / 20


def test_acs_padding_default_is_32(tmp_path: Path, one_thread) -> None:
    net = sensitive(lambda: IMDN_AS(num_feat=16, num_block=1))
    weights = save_bare(net, tmp_path / "as.pth")
    src = tmp_path / "odd.png"  # sides not divisible by 4, large enough for ACS patches
    # rows 58-63 lie inside the top ACS patches with padding 32 (64 rows), outside with 28 (60 rows)
    cv2.imwrite(str(src), banded(70, 75, 4, np.s_[58:64, :]))
    x, maxval, _ = as_network_input(src)
    assert acs_patch_size(70, 32) <= 70 and acs_patch_size(75, 32) <= 75  # real ACS, not the padding fallback
    forward = make_fast_forward(net)
    expected = {p: to_pixels(acs_forward(forward, x, padding=p), maxval, False) for p in (32, 28)}
    assert np.abs(expected[32] - expected[28]).max() > 50  # the padding shows in the pixels

    assert infer_main(["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(weights), "-q"]) == 0
    assert np.abs(read_pixels(tmp_path / "o" / "odd.png") - expected[32]).max() <= 1
    # The public Upscaler without options: the same default.
    bgr = cv2.imread(str(src), cv2.IMREAD_UNCHANGED).astype(np.float32) / 65535
    up = Upscaler(weights, device="cpu")(bgr)
    assert np.abs(np.round(up * 65535) - expected[32]).max() <= 1


def test_tile_overlap_default_is_32(tmp_path: Path, one_thread) -> None:
    net = sensitive(lambda: IMDN(num_feat=16, num_block=1, upscale=2))
    weights = save_bare(net, tmp_path / "x2.pth")
    src = tmp_path / "big.png"
    # Bands along the top and left: rows/columns 40-47 come from a window starting at 0 (with the
    # band) for overlap 24, from one starting at 8 (without) for overlap 32.
    cv2.imwrite(str(src), banded(100, 90, 5, np.s_[:6, :], np.s_[:, :6]))
    x, maxval, _ = as_network_input(src)
    forward = make_fast_forward(net)
    # Per-tile CCA statistics depend on how far each tile reaches: the overlap shows in the pixels.
    expected = {
        o: to_pixels(tiled_forward(forward, x, scale=2, tile=72, overlap=o, batch=4, multiple=1), maxval, False)
        for o in (32, 24)
    }
    assert np.abs(expected[32] - expected[24]).max() > 100
    args = ["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(weights), "-q", "--tile", "72", "--tile-stats", "local"]
    assert infer_main(args) == 0
    assert np.abs(read_pixels(tmp_path / "o" / "big.png") - expected[32]).max() <= 1


SIGTERM_CHILD = """
import os, signal, sys
from pathlib import Path

import imdn_plugin.cli as cli
from imdn_plugin.data import imageio

real = imageio.cv2.imwrite


def killed_while_writing(path, img, params):
    if Path(path).name.startswith(".b.png."):
        Path(path).write_bytes(b"\\x89PNG half")
        os.kill(os.getpid(), signal.SIGTERM)  # this child process, never the test process
    return real(path, img, params)


imageio.cv2.imwrite = killed_while_writing
before = signal.getsignal(signal.SIGTERM)
rc = cli.main(["infer", *sys.argv[1:]])
if signal.getsignal(signal.SIGTERM) is not before:
    sys.exit("the command's SIGTERM handler is still installed")
sys.exit(rc)
"""


@pytest.mark.slow
def test_sigterm_while_writing_leaves_no_temporary(x2: Path, tmp_path: Path) -> None:
    """kill / timeout / docker stop unwind like Ctrl-C: the PNG being encoded into its temporary is
    removed, the summary says what is on disk; a temporary a SIGKILLed run left is not an input.

    The SIGTERM goes to a child process running the command: a signal sent to the pytest process
    itself would hit whatever else is loaded there (onnxruntime / OpenVINO threads: rc 139)."""
    d, out = tmp_path / "d", tmp_path / "out"
    write_images(d, ["a.png", "b.png"])
    (d / ".c.png.x1y2z3.tmp.png").write_bytes(b"\x89PNG truncated")  # what a SIGKILL leaves behind
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SIGTERM_CHILD, "-i", str(d), "-o", str(out), "--weights", str(x2), "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    err = proc.stderr
    assert proc.returncode == 130 and "(interrupted)" in err, (proc.returncode, err[-2000:])
    assert summary_counts(err)["written"] == 1 and summary_counts(err).get("failed", 0) == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # no .b.png.*.tmp.png, no c.png


@pytest.mark.slow
def test_mode_whole_is_what_imdn_as_tiles_reproduce(tmp_path: Path, monkeypatch, capsys) -> None:
    """IMDN_AS untiled defaults to ACS (patches with their own statistics, paper §3.3); tiles give
    the whole-image result, which --mode whole asks for directly."""
    torch.manual_seed(4)
    net = IMDN_AS(num_feat=16, num_block=1)
    with torch.no_grad():  # make the CCA gates depend strongly on the statistics (ACS patches differ)
        squeeze, excite = net.IMDB1.cca.conv_du[0], net.IMDB1.cca.conv_du[2]
        squeeze.weight.abs_().mul_(20)
        squeeze.bias.zero_()
        excite.weight.mul_(20)
    weights = tmp_path / "as.pth"
    torch.save({"params": net.state_dict()}, weights)
    d = tmp_path / "d"
    write_images(d, ["a.png"], size=(90, 77))  # ACS patches (76x64 + padding) smaller than the image
    got = {}
    for name, extra in (("whole", ["--mode", "whole"]), ("tiled", ["--tile", "32"]), ("acs", [])):
        rc, _ = run_cli(["-i", str(d), "-o", str(tmp_path / name), "--weights", str(weights), "-q", *extra],
                        monkeypatch, capsys)  # fmt: skip
        assert rc == 0
        got[name] = cv2.imread(str(tmp_path / name / "a.png")).astype(int)
    assert got["whole"].shape == got["acs"].shape == (90, 77, 3)
    assert np.abs(got["whole"] - got["tiled"]).max() <= 1
    assert np.abs(got["whole"] - got["acs"]).max() > 1  # the default really is another result
