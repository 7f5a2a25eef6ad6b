"""LMDB writer / verifier: every key is read back (first, middle and last), ``meta_info.txt``
says ``(h,w,c)`` for non-square and grayscale images, and the sub-image threshold of
:func:`subimage_positions` at its bound, one below and one above."""
from __future__ import annotations

from pathlib import Path

import lmdb
import numpy as np
import pytest

from imdn_plugin.data import div2k
from imdn_plugin.data.lmdb import LmdbWriter, read_lmdb_image, read_meta_info, verify_lmdb


def _write(target: Path, images: dict[str, np.ndarray]) -> Path:
    with LmdbWriter(target) as writer:
        for key, img in images.items():
            writer.put(key, img)
        writer.commit()
    return target


@pytest.fixture
def ten(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return _write(tmp_path / "ten.lmdb", {f"im_s{i:03d}": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
                                          for i in range(1, 11)})  # fmt: skip


@pytest.mark.parametrize("index", [0, 4, 9], ids=["first", "middle", "last"])
def test_verify_reads_every_key(ten: Path, index: int) -> None:
    assert verify_lmdb(ten) == 10
    key = list(read_meta_info(ten))[index]
    env = lmdb.open(str(ten))
    with env.begin(write=True) as txn:
        value = bytearray(txn.get(key.encode()))
        value[len(value) // 2] ^= 0x01  # a bit flipped inside the pixel data: still a whole PNG
        txn.put(key.encode(), bytes(value))
    env.close()
    with pytest.raises(ValueError, match=rf"the value of key '{key}' was altered after it was written"):
        verify_lmdb(ten)


@pytest.mark.parametrize("index", [0, 9], ids=["first", "last"])
def test_verify_finds_a_missing_key_at_either_end(ten: Path, index: int) -> None:
    key = list(read_meta_info(ten))[index]
    env = lmdb.open(str(ten))
    with env.begin(write=True) as txn:
        value = txn.get(key.encode())
        txn.delete(key.encode())
        txn.put(b"zz_other", value)  # same number of entries
    env.close()
    with pytest.raises(ValueError, match=rf"key '{key}' listed in meta_info.txt is not in data.mdb"):
        verify_lmdb(ten)


def test_meta_info_is_height_width_channels(tmp_path: Path) -> None:
    """BasicSR's meta_info line is ``<key>.png (h,w,c) <level>``: pinned on non-square and gray images."""
    rng = np.random.default_rng(1)
    images = {
        "tall": rng.integers(0, 256, (9, 4, 3), dtype=np.uint8),
        "wide": rng.integers(0, 256, (3, 7, 3), dtype=np.uint8),
        "gray": rng.integers(0, 256, (5, 2), dtype=np.uint8),
    }
    target = _write(tmp_path / "shapes.lmdb", images)
    lines = (target / "meta_info.txt").read_text(encoding="ascii").splitlines()
    level = lines[0].rsplit(" ", 1)[1]
    assert lines == [f"tall.png (9,4,3) {level}", f"wide.png (3,7,3) {level}", f"gray.png (5,2,1) {level}"]
    assert read_meta_info(target) == {"tall": (9, 4, 3), "wide": (3, 7, 3), "gray": (5, 2, 1)}
    for key, img in images.items():
        back = read_lmdb_image(target, key)
        assert back.shape[:2] == img.shape[:2]
        assert np.array_equal(back.reshape(img.shape) if img.ndim == 2 else back, img)
    assert verify_lmdb(target) == 3


def test_div2k_sub_images_of_a_non_square_image_have_hw_meta(tmp_path: Path) -> None:
    """The DIV2K preparation writes the same convention for its crops (LR crops of a non-square HR)."""
    import cv2

    rng = np.random.default_rng(2)
    (tmp_path / "D" / "DIV2K_train_HR").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "D" / "DIV2K_train_HR" / "0001.png"), rng.integers(0, 256, (24, 48, 3), dtype=np.uint8))
    out = div2k.prepare_div2k(tmp_path / "D", scales=[2], crop_size=24, step=24, progress=False)
    assert set(read_meta_info(out["hr"]).values()) == {(24, 24, 3)}
    assert set(read_meta_info(out["X2"]).values()) == {(12, 12, 3)}
    assert len(read_meta_info(out["hr"])) == 2  # a 24x48 image: two 24x24 crops side by side


# --------------------------------------------------------------------------- sub-image thresholds


def _axis(n: int, crop: int, step: int, thresh: int) -> list[int]:
    return sorted({t for t, _ in div2k.subimage_positions(n, crop, crop, step, thresh)})


@pytest.mark.parametrize(
    "n, thresh, starts",
    [
        # 0, 10, 20 fit (20 + 16 = 36); the strip left at 40 is 4 pixels wide.
        (40, 3, [0, 10, 20, 24]),  # strip wider than the threshold: one more crop at the edge
        (40, 4, [0, 10, 20]),  # strip == threshold: dropped
        (40, 5, [0, 10, 20]),  # strip narrower than the threshold: dropped
        (36, 0, [0, 10, 20]),  # crops end exactly at the edge: nothing left, nothing added
        (37, 0, [0, 10, 20, 21]),  # one pixel left: covered (thresh 0)
        (16, 0, [0]),  # image side == crop: one crop
        (15, 0, []),  # one pixel smaller than the crop: none
        (17, 0, [0, 1]),  # one pixel larger: two
    ],
)
def test_subimage_threshold_bounds(n: int, thresh: int, starts: list[int]) -> None:
    assert _axis(n, 16, 10, thresh) == starts


@pytest.mark.parametrize("crop, step, thresh, ok", [(1, 1, 0, True), (0, 1, 0, False), (1, 0, 0, False), (1, 1, -1, False)])
def test_subimage_geometry_bounds(crop: int, step: int, thresh: int, ok: bool) -> None:
    if ok:
        assert div2k.subimage_positions(2, 3, crop, step, thresh) == [(t, l) for t in (0, 1) for l in (0, 1, 2)]
    else:
        with pytest.raises(ValueError, match="bad crop geometry"):
            div2k.subimage_positions(2, 3, crop, step, thresh)


@pytest.mark.parametrize("scales, mod", [([2], 12), ([3], 12), ([2, 3, 4], 12), ([8], 24), ([5], 60), ([1], 12)])
def test_default_mod_crop_is_lcm_of_2_3_4_and_the_scales(scales: list[int], mod: int) -> None:
    """HR images are mod-cropped to one multiple for every scale of the paper (x2, x3, x4) and the
    ones asked for, so that the HR LMDB is the same whichever scales are prepared with it."""
    assert div2k.default_mod(scales) == mod
