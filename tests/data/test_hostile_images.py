"""Hostile images, round 3: data after the end marker, cut-short files, multi-frame files, float
images above 1, non-UTF-8 names and atomic writes of every image the plugin or BasicSR writes."""
from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from imdn_plugin.data import headers, imageio
from imdn_plugin.errors import ImageReadError


@pytest.fixture(autouse=True)
def fresh_notices() -> None:
    getattr(imageio, "_NOTICED", set()).clear()


def _img(h: int = 12, w: int = 14, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _encode(ext: str, img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


# --------------------------------------------------------------------------- data after the end
@pytest.mark.parametrize("trailing", [8000, 65, 5000])
def test_jpeg_with_data_after_its_end_marker_decodes_as_without(trailing: int) -> None:
    img = _img(40, 48)
    jpg = _encode(".jpg", img)
    # a "motion photo": an MP4 after the JPEG's end-of-image marker, with no FF D9 in it
    tail = b"\x00\x00\x00\x18ftypmp42" + bytes(np.random.default_rng(1).integers(0, 0xFF, trailing, dtype=np.uint8))
    got = imageio.decode(jpg + tail, "motion.jpg")
    want = imageio.decode(jpg, "plain.jpg")
    assert np.array_equal(got.bgr, want.bgr)


@pytest.mark.parametrize("trailing", [65, 200, 10_000])
def test_png_with_data_after_iend_decodes_as_without(trailing: int) -> None:
    png = _encode(".png", _img())
    got = imageio.decode(png + b"\x01" * trailing, "trail.png")
    assert np.array_equal(got.bgr, imageio.decode(png, "p.png").bgr)


def test_cut_short_files_are_still_refused() -> None:
    jpg, png = _encode(".jpg", _img(40, 48)), _encode(".png", _img(40, 48))
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        imageio.decode(jpg[: len(jpg) * 2 // 3], "cut.jpg")
    with pytest.raises(ImageReadError, match="truncated PNG"):
        imageio.decode(png[: len(png) - 20], "cut.png")
    # an end marker inside an EXIF thumbnail (before the scan) does not count as the image's end
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 8) + b"Exif\xff\xd9\x00\x00"
    crafted = jpg[:2] + app1 + jpg[2:]
    assert headers.truncation_problem(crafted) is None
    cut = crafted[: len(crafted) * 2 // 3] + bytes(5000)  # cut, then zero padding: no end marker after the scan
    assert headers.truncation_problem(cut) == "truncated JPEG: no end-of-image marker"


# --------------------------------------------------------------------------- notices
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _apng(frames: int) -> bytes:
    png = _encode(".png", _img())
    # acTL goes after IHDR (8 + 25 bytes) and before IDAT
    return png[:33] + _chunk(b"acTL", struct.pack(">II", frames, 0)) + png[33:]


def test_first_frame_of_a_multi_frame_file_is_noticed_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    data = _apng(3)
    assert headers.frame_count(data) == 3
    imageio.decode(data, "anim.png")
    imageio.decode(data, "anim.png")  # once per file
    notes = [r.getMessage() for r in caplog.records if "frames" in r.getMessage()]
    assert notes == ["anim.png: holds 3 frames/pages; only the first is used"]
    caplog.clear()
    imageio.decode(_encode(".png", _img()), "still.png")
    assert not caplog.records


def test_multi_page_tiff_is_counted(tmp_path: Path) -> None:
    path = str(tmp_path / "pages.tif")
    assert cv2.imwritemulti(path, [_img(seed=s) for s in range(4)])
    assert headers.frame_count(Path(path).read_bytes()) == 4
    assert headers.frame_count(_encode(".tif", _img())) == 1


def test_float_above_one_is_clipped_with_a_notice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    img = np.full((4, 5, 3), 0.5, np.float32)
    img[0, 0, 0], img[1, 1, 1] = 3.0, -0.25
    got = imageio.from_array(img, "hdr.exr")
    assert got.bgr.max() == 1.0 and got.bgr.min() == 0.0
    assert "hdr.exr: 2 float sample(s) outside [0, 1] (from -0.25 to 3) clipped to [0, 1]" in caplog.text
    caplog.clear()
    imageio.from_array(np.full((4, 5, 3), 0.5, np.float32), "fine.exr")
    assert not caplog.records


def test_alpha_dropped_for_training_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), np.dstack([_img(), np.full((12, 14), 7, np.uint8)]))
    assert imageio.read_image(path).shape == (12, 14, 3)
    assert f"{path}: alpha channel dropped" in caplog.text


# --------------------------------------------------------------------------- writing
BAD_NAME_SCRIPT = r"""
import os, sys, numpy as np
from imdn_plugin.data.imageio import write_png_atomic
folder = os.fsdecode(sys.argv[1].encode() + b"/out_\xff")
os.makedirs(folder)
img = np.arange(12 * 14 * 3, dtype=np.uint8).reshape(12, 14, 3)
write_png_atomic(os.path.join(folder, os.fsdecode(b"bad\xff.png")), img)
print(sorted(os.listdir(os.fsencode(folder))))
"""


def test_non_utf8_names_are_written_not_crashed(tmp_path: Path) -> None:
    # cv2.imwrite crashes (SIGSEGV) on such a str path: in a child, so a crash fails this test only
    run = subprocess.run([sys.executable, "-c", BAD_NAME_SCRIPT, str(tmp_path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[b'bad\\xff.png']"
    data = (tmp_path / os.fsdecode(b"out_\xff") / os.fsdecode(b"bad\xff.png")).read_bytes()
    want = np.arange(12 * 14 * 3, dtype=np.uint8).reshape(12, 14, 3)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), want)


def test_write_image_atomic_never_leaves_a_cut_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "res" / "img_test.png"
    target.parent.mkdir()
    real = cv2.imwrite

    def killed(name: str, img: np.ndarray, params: object = None) -> bool:
        real(name, img)
        with open(name, "r+b") as f:  # what a kill during the write leaves: a PNG without IEND
            f.truncate(os.path.getsize(name) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(cv2, "imwrite", killed)
    with pytest.raises(KeyboardInterrupt):
        imageio.write_image_atomic(str(target), _img())
    assert os.listdir(target.parent) == []
    monkeypatch.setattr(cv2, "imwrite", real)
    imageio.write_image_atomic(str(target), _img())
    assert np.array_equal(cv2.imread(str(target)), _img())
    jpg = tmp_path / "res" / "x.jpg"
    imageio.write_image_atomic(str(jpg), _img(), [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert cv2.imread(str(jpg)).shape == (12, 14, 3)
