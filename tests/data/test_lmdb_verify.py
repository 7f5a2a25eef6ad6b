"""LMDBs are verified, not trusted: the preparation's rerun reads everything back against the
writer's manifest, and training checks at start-up that data.mdb is whole and holds every key."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest
import yaml

import imdn_plugin  # noqa: F401
from imdn_plugin.data import div2k
from imdn_plugin.data import lmdb as lmdb_io
from imdn_plugin.data.lmdb import MANIFEST_NAME, check_lmdb_keys, verify_lmdb
from imdn_plugin.errors import ConfigError
from imdn_plugin.options import check_dataset_paths
from imdn_plugin.options.schema import DatasetOptions, IoBackend, Options
from tests.data.test_div2k import CLI, CROP, REPO, STEP, _make_div2k


@pytest.fixture
def prepared(tmp_path: Path) -> dict[str, Path]:
    root = _make_div2k(tmp_path / "D", [(48, 48), (48, 72)], lr_scales=(2,))
    return div2k.prepare_div2k(root, scales=[2], crop_size=CROP, step=STEP, progress=False)


def rerun(out: dict[str, Path], **kwargs) -> dict[str, Path]:
    return div2k.prepare_div2k(out["hr"].parent, scales=[2], crop_size=CROP, step=STEP, progress=False, **kwargs)


def lmdb_opt(out: dict[str, Path]) -> Options:
    train = DatasetOptions(name="t", type="PairedImageDataset", dataroot_gt=str(out["hr"]), dataroot_lq=str(out["X2"]),
                           io_backend=IoBackend(type="lmdb"), key="train")  # fmt: skip
    return Options(datasets=(train,))


def test_writer_records_size_and_checksums(prepared: dict[str, Path]) -> None:
    manifest = json.loads((prepared["hr"] / MANIFEST_NAME).read_text())
    assert manifest["data_mdb_bytes"] == (prepared["hr"] / "data.mdb").stat().st_size
    assert list(manifest["crc32"]) == list(lmdb_io.read_meta_info(prepared["hr"])) and manifest["entries"] == 21
    assert verify_lmdb(prepared["hr"]) == 21 and check_lmdb_keys(prepared["X2"]) == 21


@pytest.mark.slow
def test_truncated_data_mdb_is_reported_by_the_rerun_and_at_training_start(prepared: dict[str, Path]) -> None:
    data = prepared["hr"] / "data.mdb"
    size = data.stat().st_size
    os.truncate(data, size - 4096)  # an interrupted copy
    # The script says it in one line. (First, in a child: reading a page past the end of the
    # file would be SIGBUS, which must not take the test process down.)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [sys.executable, str(CLI), "--input", str(prepared["hr"].parent), "--scales", "2",
            "--crop-size", str(CROP), "--step", str(STEP), "--quiet"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, check=False, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, (proc.returncode, proc.stderr[-2000:])
    assert f"{prepared['hr']}: data.mdb is truncated: {size - 4096} bytes, {size} when written" in proc.stderr
    assert "--overwrite" in proc.stderr
    with pytest.raises(ValueError, match="data.mdb is truncated"):
        rerun(prepared)
    # Training refuses it before touching a page.
    with pytest.raises(ConfigError, match=r"^datasets:train:dataroot_gt: .*data\.mdb is truncated"):
        check_dataset_paths(lmdb_opt(prepared))
    os.truncate(data, 100)  # not even the header
    with pytest.raises(ConfigError, match=r"data\.mdb \(100 bytes, \d+ when written\) is not a readable LMDB"):
        check_dataset_paths(lmdb_opt(prepared))
    rerun(prepared, overwrite=True)
    assert verify_lmdb(prepared["hr"]) == 21


def test_altered_value_is_reported_by_the_rerun(prepared: dict[str, Path]) -> None:
    key = list(lmdb_io.read_meta_info(prepared["X2"]))[7]
    value = _value(prepared["X2"], key)
    data = prepared["X2"] / "data.mdb"
    raw = bytearray(data.read_bytes())
    at = raw.find(value)
    assert at >= 0
    while at >= 0:  # copy-on-write may have left stale copies in free pages: alter them all
        raw[at + len(value) // 2] ^= 0x01  # one bit flipped inside the PNG's pixel data
        at = raw.find(value, at + 1)
    data.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=rf"X2_sub\.lmdb: the value of key '{key}' was altered after it was written"):
        rerun(prepared)
    # Without the manifest (an LMDB from an older version) the PNG check still reads every value;
    # a value that is not a whole PNG is named.
    (prepared["X2"] / MANIFEST_NAME).unlink()
    env = lmdb.open(str(prepared["X2"]))
    with env.begin(write=True) as txn:
        txn.put(key.encode(), value[:-20])
    env.close()
    with pytest.raises(ValueError, match=rf"the value of key '{key}' is not a whole 12x12 PNG"):
        verify_lmdb(prepared["X2"])


def test_missing_key_is_reported_at_training_start(prepared: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    from imdn_plugin.cli import main
    from tests.integration.test_training import write_opt

    key = list(lmdb_io.read_meta_info(prepared["hr"]))[16]
    env = lmdb.open(str(prepared["hr"]))
    with env.begin(write=True) as txn:
        assert txn.delete(key.encode())
    env.close()
    opt = write_opt(tmp_path, tmp_path, "mk", total_iter=2, io_backend={"type": "lmdb"},
                    dataroot_gt=str(prepared["hr"]), dataroot_lq=str(prepared["X2"]), gt_size=16)  # fmt: skip
    opt_dict = yaml.safe_load(opt.read_text())
    opt_dict["scale"] = opt_dict["network_g"]["upscale"] = 2
    opt.write_text(yaml.safe_dump(opt_dict))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "-opt", str(opt)]) == 2
    with pytest.raises(ConfigError) as err:
        check_dataset_paths(lmdb_opt(prepared))
    assert str(err.value) == (
        f"datasets:train:dataroot_gt: {prepared['hr']}: key '{key}' listed in meta_info.txt is not in data.mdb; "
        "rebuild it (scripts/prepare_div2k.py --overwrite)"
    )
    assert not (tmp_path / "experiments").exists()  # refused before any work


def test_key_check_time_on_32k_keys(tmp_path: Path) -> None:
    # DIV2K's 800 images give 32,208 sub-images of 480x480 with step 240: the start-up check
    # walks that many keys. Timing printed (run with -s), not asserted.
    path = tmp_path / "big.lmdb"
    keys = [f"{i // 40 + 1:04d}_s{i % 40 + 1:03d}" for i in range(32000)]
    env = lmdb.open(str(path), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for k in keys:
            txn.put(k.encode(), b"v" * 64)
    env.close()
    (path / "meta_info.txt").write_text("".join(f"{k}.png (480,480,3) 1\n" for k in keys))
    start = time.perf_counter()
    assert check_lmdb_keys(path) == 32000
    print(f"\nstart-up key check, 32000 keys: {time.perf_counter() - start:.3f} s")
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.delete(keys[-1].encode())
    env.close()
    with pytest.raises(ValueError, match=f"key '{keys[-1]}' listed in meta_info.txt is not in data.mdb"):
        check_lmdb_keys(path)
    shutil.rmtree(path)


def _value(path: Path, key: str) -> bytes:
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return bytes(txn.get(key.encode()))
    finally:
        env.close()
