"""The training start-up LMDB check (issue 20): an empty ``meta_info.txt`` and a value whose
image size differs from what ``meta_info.txt`` says are refused before any work."""
from __future__ import annotations

import shutil
from pathlib import Path

import lmdb
import numpy as np
import pytest

from imdn_plugin.data.imageio import png_bytes
from imdn_plugin.data.lmdb import check_lmdb_keys


@pytest.fixture
def hr(tiny_sr_data: Path, tmp_path: Path) -> Path:
    path = tmp_path / "hr.lmdb"
    shutil.copytree(tiny_sr_data / "DIV2K_train_HR_sub.lmdb", path)
    return path


def test_whole_lmdb_passes(hr: Path) -> None:
    assert check_lmdb_keys(hr) == 4


def test_empty_meta_info_is_refused(hr: Path) -> None:
    (hr / "meta_info.txt").write_text("")
    with pytest.raises(ValueError, match=f"^{hr}: meta_info.txt lists no images"):
        check_lmdb_keys(hr)


def test_value_of_another_size_is_refused(hr: Path) -> None:
    env = lmdb.open(str(hr), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"0001_s003", png_bytes(np.zeros((40, 44, 3), np.uint8)))
    env.close()
    with pytest.raises(ValueError, match=r"the value of key '0001_s003' is a 40x44 image, meta_info.txt says 48x48"):
        check_lmdb_keys(hr)
