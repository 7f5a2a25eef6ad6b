"""``scripts/prepare_div2k.py`` exit codes (issue 20): 2 refused before any work, 1 failed during
the work (a full disk: one line, no traceback), 130 interrupted."""
from __future__ import annotations

import errno
import importlib.util
from pathlib import Path

import lmdb
import pytest

import imdn_plugin.data.div2k as div2k
from imdn_plugin.errors import ImageReadError

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prepare_div2k.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("prepare_div2k_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "exc, code, line",
    [
        (ValueError("input folder not found: x"), 2, "input folder not found: x"),
        (FileExistsError("y.lmdb already exists (use overwrite)"), 2, "y.lmdb already exists (use overwrite)"),
        (OSError(errno.ENOSPC, "No space left on device", "out/a.lmdb.tmp-1/data.mdb"), 1,
         "out/a.lmdb.tmp-1/data.mdb: No space left on device; stopped: the LMDBs finished before are kept, "
         "the unfinished one was removed"),
        (lmdb.Error("mdb_txn_commit: Input/output error"), 1, "mdb_txn_commit: Input/output error; stopped: "),
        (ImageReadError("cannot read image: 0001.png (not a decodable image)"), 1, "cannot read image: 0001.png"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)  # fmt: skip
def test_exit_codes(script, exc: BaseException, code: int, line: str, tmp_path: Path, monkeypatch, capsys) -> None:
    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(div2k, "prepare_div2k", fail)
    assert script.main(["--input", str(tmp_path), "--quiet"]) == code
    err = capsys.readouterr().err
    assert line in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
