"""Tests of the DIV2K -> sub-image LMDB preparation (imdn_plugin.data.div2k, scripts/prepare_div2k.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

import imdn_plugin  # noqa: F401  (basicsr import shim)
from imdn_plugin.data import div2k, imageio, resize
from imdn_plugin.data import lmdb as lmdb_io

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "scripts" / "prepare_div2k.py"

CROP, STEP = 24, 16  # tiny geometry, divisible by 2 and 4 (and 3 for the crop size only where used)


def _image(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
    """A smooth-ish synthetic uint8 image (gradient + texture), deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(yy * 3 + xx * (c + 1) * 2) % 256 for c in range(channels)], axis=-1)
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


def _make_div2k(root: Path, sizes: list[tuple[int, int]], lr_scales: tuple[int, ...] = ()) -> Path:
    """Write ``root/DIV2K_train_HR/000k.png`` (and official LR for ``lr_scales``)."""
    hr_dir = root / "DIV2K_train_HR"
    hr_dir.mkdir(parents=True)
    for i, (h, w) in enumerate(sizes, start=1):
        img = _image(h, w, seed=i)
        cv2.imwrite(str(hr_dir / f"{i:04d}.png"), img)
        for s in lr_scales:
            lr_dir = root / "DIV2K_train_LR_bicubic" / f"X{s}"
            lr_dir.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(lr_dir / f"{i:04d}x{s}.png"), resize.bicubic_downscale(img, s))
    return root


def _paired_dataset(hr_lmdb: Path, lr_lmdb: Path, scale: int, phase: str = "val", **extra):
    from basicsr.data.paired_image_dataset import PairedImageDataset

    opt = {"dataroot_gt": str(hr_lmdb), "dataroot_lq": str(lr_lmdb), "io_backend": {"type": "lmdb"},
           "scale": scale, "phase": phase, **extra}
    return PairedImageDataset(opt)


def _close(ds) -> None:
    """Close the LMDB environments a PairedImageDataset opened (py-lmdb opens a path once per process)."""
    if ds.file_client is not None:
        for env in ds.file_client.client._client.values():
            env.close()
        ds.file_client = None


def _tensor_to_bgr_uint8(t) -> np.ndarray:
    # PairedImageDataset: BGR uint8 -> float32 / 255 -> RGB CHW. Undo it exactly.
    return np.round(t.numpy().transpose(1, 2, 0)[:, :, ::-1] * 255.0).astype(np.uint8)


def _lmdb_keys(path: Path) -> list[str]:
    return list(lmdb_io.read_meta_info(path))


# ----------------------------------------------------------------------------- reading images


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), _image(16, 16, 0))
    data = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_bytes(b"not an image at all")
    cv2.imwrite(str(tmp_path / "j.jpg"), _image(32, 32, 1))
    (tmp_path / "tj.jpg").write_bytes((tmp_path / "j.jpg").read_bytes()[:-200])
    for name in ("missing.png", "trunc.png", "text.png", "tj.jpg"):
        path = tmp_path / name
        with pytest.raises(ValueError, match=r"^cannot read image: ") as err:
            imageio.read_image(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_read_image_conversions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from PIL import Image

    gray = _image(10, 12, 2, channels=1)[:, :, 0]
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = imageio.read_image(tmp_path / "g.png")
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[:, :, c], gray) for c in range(3))

    v16 = np.array([[0, 128, 256, 385], [65535, 1000, 32896, 65534]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), v16)
    out = imageio.read_image(tmp_path / "d.png")
    assert np.array_equal(out[:, :, 0], np.round(v16 / 257.0).astype(np.uint8))
    assert out[1, 0, 0] == 255 and out[0, 1, 0] == 0 and out[0, 3, 0] == 1  # 385/257 = 1.498 -> 1

    bgra = _image(8, 8, 3, channels=4)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    with caplog.at_level("INFO", logger="imdn_plugin.data"):
        out = imageio.read_image(tmp_path / "a.png")
    assert np.array_equal(out, bgra[:, :, :3]) and "alpha" in caplog.text

    rgb = _image(8, 8, 4)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    expect = cv2.imread(str(tmp_path / "p.png"), cv2.IMREAD_COLOR)  # what OpenCV makes of a palette PNG
    assert np.array_equal(imageio.read_image(tmp_path / "p.png"), expect)


# ----------------------------------------------------------------------------- geometry + bicubic


def test_subimage_positions_follow_basicsr_convention() -> None:
    # 60 rows, crop 24, step 16: 0, 16, 32 fit; 60 - 56 = 4 rows left -> edge crop at 36.
    assert [t for t, _ in div2k.subimage_positions(60, 24, CROP, STEP, thresh_size=0)] == [0, 16, 32, 36]
    assert [t for t, _ in div2k.subimage_positions(60, 24, CROP, STEP, thresh_size=3)] == [0, 16, 32, 36]
    assert [t for t, _ in div2k.subimage_positions(60, 24, CROP, STEP, thresh_size=4)] == [0, 16, 32]
    assert div2k.subimage_positions(72, 48, CROP, STEP) == [(t, l) for t in (0, 16, 32, 48) for l in (0, 16, 24)]
    assert div2k.subimage_positions(20, 100, CROP, STEP) == []  # smaller than one crop
    assert div2k.subimage_key("0001", 7) == "0001_s007" and div2k.subimage_key("0001", 1234) == "0001_s1234"


def test_bicubic_lr_is_rounded_matlab_imresize_of_modcropped_hr(tmp_path: Path) -> None:
    from basicsr.utils.matlab_functions import imresize

    hr = _image(50, 37, 5)
    for s in (2, 3, 4):
        lr = resize.bicubic_downscale(hr, s)
        crop = hr[: 50 - 50 % s, : 37 - 37 % s]
        expect = np.clip(np.round(imresize(crop.astype(np.float32), 1 / s)), 0, 255).astype(np.uint8)
        assert lr.dtype == np.uint8 and lr.shape == (50 // s, 37 // s, 3)
        assert np.array_equal(lr, expect)
        # The [0, 1]-range formulation differs at most by float round-off.
        alt = np.clip(np.round(imresize(crop.astype(np.float32) / 255.0, 1 / s) * 255.0), 0, 255)
        assert np.abs(alt - lr.astype(np.float64)).max() <= 1

    # And it is exactly what lands in the LR LMDB (no official LR present: bicubic path).
    root = _make_div2k(tmp_path / "D", [(48, 72)])
    out = div2k.prepare_div2k(root, scales=[3], crop_size=CROP, step=12, progress=False)
    hr_full = resize.mod_crop(imageio.read_image(root / "DIV2K_train_HR" / "0001.png"), div2k.default_mod([3]))
    lr_full = resize.bicubic_downscale(hr_full, 3)
    positions = div2k.subimage_positions(*hr_full.shape[:2], CROP, 12)
    for i, (t, l) in enumerate(positions, start=1):
        got = lmdb_io.read_lmdb_image(out["X3"], div2k.subimage_key("0001", i))
        assert np.array_equal(got, lr_full[t // 3 : (t + CROP) // 3, l // 3 : (l + CROP) // 3])


# ----------------------------------------------------------------------------- LMDB round trip


def test_lmdb_round_trip_through_paired_image_dataset(tmp_path: Path) -> None:
    root = _make_div2k(tmp_path / "D", [(72, 48), (60, 84)])
    out = div2k.prepare_div2k(root, tmp_path / "out", scales=[2, 4], crop_size=CROP, step=STEP, progress=False)
    assert set(out) == {"hr", "X2", "X4"}
    assert out["hr"].name == "DIV2K_train_HR_sub.lmdb" and out["X4"].name == "DIV2K_train_LR_bicubic_X4_sub.lmdb"
    for path in out.values():
        assert sorted(p.name for p in path.iterdir()) == [
            "data.mdb", "imdn_manifest.json", div2k.PREP_INFO_NAME, "lock.mdb", "meta_info.txt"]
        first = (path / "meta_info.txt").read_text().splitlines()[0]
        size = CROP // (1 if path == out["hr"] else int(path.name.split("_X")[1].split("_")[0]))
        assert first == f"0001_s001.png ({size},{size},3) 1"

    mod = div2k.default_mod([2, 4])
    expected_hr: dict[str, np.ndarray] = {}
    expected_lr: dict[int, dict[str, np.ndarray]] = {2: {}, 4: {}}
    for stem in ("0001", "0002"):
        hr = resize.mod_crop(imageio.read_image(root / "DIV2K_train_HR" / f"{stem}.png"), mod)
        for sub in div2k.extract_subimages(hr, stem, CROP, STEP):
            expected_hr[sub.key] = sub.img
            for s in (2, 4):
                lr = resize.bicubic_downscale(hr, s)
                expected_lr[s][sub.key] = lr[sub.top // s : (sub.top + CROP) // s, sub.left // s : (sub.left + CROP) // s]

    # The stored bytes decode to the very same arrays.
    for key, img in expected_hr.items():
        assert np.array_equal(lmdb_io.read_lmdb_image(out["hr"], key), img)
    for s in (2, 4):
        ds = _paired_dataset(out["hr"], out[f"X{s}"], s)
        assert len(ds) == len(expected_hr) == 4 * 3 + 4 * 5
        for i in range(len(ds)):
            item = ds[i]
            key = item["gt_path"]
            assert item["lq_path"] == key
            assert np.array_equal(_tensor_to_bgr_uint8(item["gt"]), expected_hr[key])
            assert np.array_equal(_tensor_to_bgr_uint8(item["lq"]), expected_lr[s][key])
        _close(ds)


def test_keys_and_positions_correspond(tmp_path: Path) -> None:
    root = _make_div2k(tmp_path / "D", [(60, 48)], lr_scales=(4,))
    out = div2k.prepare_div2k(root, scales=[4], crop_size=CROP, step=STEP, progress=False)
    hr = imageio.read_image(root / "DIV2K_train_HR" / "0001.png")  # 60x48: already a multiple of 12
    lr = imageio.read_image(root / "DIV2K_train_LR_bicubic" / "X4" / "0001x4.png")
    positions = [(t, l) for t in (0, 16, 32, 36) for l in (0, 16, 24)]
    assert _lmdb_keys(out["hr"]) == _lmdb_keys(out["X4"]) == [f"0001_s{i:03d}" for i in range(1, 13)]
    for i, (t, l) in enumerate(positions, start=1):
        key = f"0001_s{i:03d}"
        hr_crop = lmdb_io.read_lmdb_image(out["hr"], key)
        lr_crop = lmdb_io.read_lmdb_image(out["X4"], key)
        assert np.array_equal(hr_crop, hr[t : t + CROP, l : l + CROP])
        assert np.array_equal(lr_crop, lr[t // 4 : t // 4 + CROP // 4, l // 4 : l // 4 + CROP // 4])


# ----------------------------------------------------------------------------- mismatches


def test_mismatched_official_lr_is_refused(tmp_path: Path) -> None:
    root = _make_div2k(tmp_path / "D", [(48, 48), (48, 72)], lr_scales=(2,))
    bad = root / "DIV2K_train_LR_bicubic" / "X2" / "0002x2.png"
    cv2.imwrite(str(bad), _image(24, 35, 9))  # should be 24x36
    with pytest.raises(ValueError) as err:
        div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=STEP, progress=False)
    msg = str(err.value)
    assert "0002x2.png" in msg and "24x35" in msg and "48x72" in msg and "0002.png" in msg
    assert not (root / "DIV2K_train_HR_sub.lmdb").exists()
    assert not list(root.glob("*.tmp-*"))

    bad.unlink()
    with pytest.raises(ValueError, match=r"HR image 0002 has no LR counterpart .*0002x2\.png"):
        div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=STEP, progress=False)
    cv2.imwrite(str(root / "DIV2K_train_LR_bicubic" / "X2" / "0007x2.png"), _image(24, 24, 7))
    with pytest.raises(ValueError, match=r"LR image .*0007x2\.png has no HR counterpart"):
        div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=STEP, progress=False)


def test_validate_pairs_names_key_and_sizes(tmp_path: Path) -> None:
    hr = {"0001_s001": (24, 24, 3), "0001_s002": (24, 24, 3)}
    lmdb_io.validate_pairs(hr, {"0001_s001": (12, 12, 3), "0001_s002": (12, 12, 3)}, 2)
    with pytest.raises(ValueError, match=r"0001_s002: HR size 24x24 .* is not 2 x LR size 12x11"):
        lmdb_io.validate_pairs(hr, {"0001_s001": (12, 12, 3), "0001_s002": (12, 11, 3)}, 2)
    with pytest.raises(ValueError, match=r"HR key 0001_s002 .* has no LR counterpart"):
        lmdb_io.validate_pairs(hr, {"0001_s001": (12, 12, 3)}, 2)
    with pytest.raises(ValueError, match=r"LR key 0009_s001 .* has no HR counterpart"):
        lmdb_io.validate_pairs(hr, {**{k: (12, 12, 3) for k in hr}, "0009_s001": (12, 12, 3)}, 2)

    # Same on real LMDBs (meta_info.txt of both).
    with lmdb_io.LmdbWriter(tmp_path / "hr.lmdb") as w:
        w.put("a_s001", _image(24, 24, 1))
        w.put("a_s002", _image(24, 24, 2))
        w.commit()
    with lmdb_io.LmdbWriter(tmp_path / "lr.lmdb") as w:
        w.put("a_s001", _image(12, 12, 1))
        w.commit()
    with pytest.raises(ValueError, match=r"HR key a_s002 in .*hr\.lmdb has no LR counterpart in .*lr\.lmdb"):
        lmdb_io.validate_lmdb_pair(tmp_path / "hr.lmdb", tmp_path / "lr.lmdb", 2)


# ----------------------------------------------------------------------------- interruption


def test_interrupted_write_leaves_nothing_finished_and_rerun_completes(tmp_path, monkeypatch) -> None:
    root = _make_div2k(tmp_path / "D", [(48, 48), (48, 72), (72, 48)], lr_scales=(2,))
    calls = {"n": 0}
    real_put = lmdb_io.LmdbWriter.put_encoded

    def failing_put(self, key, data, shape):
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("simulated crash while writing")
        return real_put(self, key, data, shape)

    monkeypatch.setattr(lmdb_io.LmdbWriter, "put_encoded", failing_put)
    with pytest.raises(RuntimeError, match="simulated crash"):
        div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=STEP, progress=False)
    monkeypatch.undo()
    assert calls["n"] == 20
    assert sorted(p.name for p in root.iterdir()) == ["DIV2K_train_HR", "DIV2K_train_LR_bicubic"]

    out = div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=STEP, progress=False)
    assert len(_paired_dataset(out["hr"], out["X2"], 2)) == 9 + 12 + 12


@pytest.mark.slow
def test_killed_writer_leaves_only_a_temporary_that_a_rerun_removes(tmp_path: Path) -> None:
    root = _make_div2k(tmp_path / "D", [(48, 48), (48, 72)], lr_scales=(2,))
    # A real hard stop (os._exit: no cleanup at all) in the middle of the LMDB writes.
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from imdn_plugin.data import div2k, imageio, lmdb as lmdb_io, resize
        real = lmdb_io.LmdbWriter.put_encoded
        n = [0]
        def put(self, *a):
            n[0] += 1
            if n[0] == 10:
                os._exit(3)
            real(self, *a)
        lmdb_io.LmdbWriter.put_encoded = put
        div2k.prepare_div2k({str(root)!r}, scales=[2], crop_size={CROP}, step={STEP}, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 3, proc.stderr
    leftovers = sorted(p.name for p in root.glob("*.lmdb*"))
    assert leftovers and all(".lmdb.tmp-" in name for name in leftovers), leftovers
    assert not (root / "DIV2K_train_HR_sub.lmdb").exists()

    out = div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=STEP, progress=False)
    assert sorted(p.name for p in root.glob("*.lmdb*")) == [out["hr"].name, out["X2"].name]
    assert len(_paired_dataset(out["hr"], out["X2"], 2)) == 9 + 12


def test_rerun_skips_complete_targets_and_refuses_foreign_ones(tmp_path: Path) -> None:
    root = _make_div2k(tmp_path / "D", [(48, 48)], lr_scales=(2,))
    out = div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=STEP, progress=False)
    stamp = (out["hr"] / "data.mdb").stat().st_mtime_ns
    div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=STEP, progress=False)
    assert (out["hr"] / "data.mdb").stat().st_mtime_ns == stamp  # skipped
    with pytest.raises(ValueError, match=r"other settings .*--overwrite"):
        div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=12, progress=False)
    div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=12, progress=False, overwrite=True)
    assert len(_lmdb_keys(out["hr"])) == 9

    (out["X2"] / "meta_info.txt").unlink()  # e.g. another tool stopped half-way
    with pytest.raises(ValueError, match=r"not a complete LMDB"):
        div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=12, progress=False)


# ----------------------------------------------------------------------------- CLI


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, str(CLI), *args], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=120, env=env)


def test_cli_help_and_errors(tmp_path: Path) -> None:
    proc = _run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for word in ("--input", "--scales", "--crop-size", "--step", "--out", "DIV2K_train_HR_sub.lmdb",
                 "DIV2K_train_LR_bicubic_X{s}_sub.lmdb", "--overwrite"):
        assert word in proc.stdout
    proc = _run_cli("--input", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "nowhere" in proc.stderr


def test_cli_on_tiny_div2k(tmp_path: Path) -> None:
    # Official LR for both scales: the subprocess then never imports basicsr (keeps the test fast);
    # the bicubic path is covered in-process above.
    root = _make_div2k(tmp_path / "DIV2K", [(48, 48), (48, 72), (60, 48)], lr_scales=(2, 4))
    proc = _run_cli("--input", "DIV2K", "--out", "lmdb", "--scales", "2", "4", "--crop-size", str(CROP),
                    "--step", str(STEP), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "lmdb"
    assert sorted(p.name for p in out.iterdir()) == [
        "DIV2K_train_HR_sub.lmdb", "DIV2K_train_LR_bicubic_X2_sub.lmdb", "DIV2K_train_LR_bicubic_X4_sub.lmdb"]
    n = 9 + 12 + 12
    for s in (2, 4):
        lr = out / f"DIV2K_train_LR_bicubic_X{s}_sub.lmdb"
        assert len(_paired_dataset(out / "DIV2K_train_HR_sub.lmdb", lr, s)) == n
        train = _paired_dataset(out / "DIV2K_train_HR_sub.lmdb", lr, s, phase="train", gt_size=16,
                                use_hflip=True, use_rot=True)
        item = train[5]
        assert tuple(item["gt"].shape) == (3, 16, 16) and tuple(item["lq"].shape) == (3, 16 // s, 16 // s)
        _close(train)
    assert root.is_dir()
    # Rerun: everything is kept.
    proc = _run_cli("--input", "DIV2K", "--out", "lmdb", "--scales", "2", "4", "--crop-size", str(CROP),
                    "--step", str(STEP), cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr.count("skipped") == 3
