"""``basicsr infer`` with hostile inputs, round 3: non-UTF-8 names, skipped inputs named with why,
output names confined to -o, explicit --param-key, --device and --scale refusals, exit codes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from imdn_plugin.archs import IMDN
from tests.cli.test_infer import error_line, run_cli, snapshot, summary_counts, write_images


# --------------------------------------------------------------------------- bug 1
def test_non_utf8_input_and_output_names(x2: Path, tmp_path: Path) -> None:
    """Every image is written (the one with the bad name too, same pixels as a good name) and no
    temporary stays, with a non-UTF-8 input name and a non-UTF-8 -o; in a child process, so that
    the SIGSEGV of the unfixed code fails this test only."""
    src = tmp_path / "in"
    write_images(src, ["a.png", "z.png"])
    bad_in = src / os.fsdecode(b"bad\xff.png")
    bad_in.write_bytes((src / "a.png").read_bytes())
    for out in (tmp_path / "out", tmp_path / os.fsdecode(b"out_\xff")):
        run = subprocess.run(
            [sys.executable, "-m", "imdn_plugin", "infer", "-i", os.fsencode(src), "-o", os.fsencode(out),
             "--weights", str(x2), "-q"], capture_output=True, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
        assert sorted(os.listdir(os.fsencode(out))) == [b"a.png", b"bad\xff.png", b"z.png"]
        got, want = (cv2.imdecode(np.fromfile(os.fsencode(out / n), np.uint8), cv2.IMREAD_UNCHANGED)
                     for n in (bad_in.name, "a.png"))  # fmt: skip
        assert got.shape == (16, 18, 3) and np.array_equal(got, want)


# --------------------------------------------------------------------------- bug 3
def test_recursive_names_every_input_it_does_not_read(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    d = tmp_path / "d"
    write_images(d, ["a.png", "sub/b.png", "locked/c.png"])
    (d / "anim.gif").write_bytes(b"GIF89a" + bytes(20))
    (d / "sub" / "notes.txt").write_text("x")
    (d / "linked").symlink_to(d / "sub", target_is_directory=True)
    real_scandir = os.scandir

    def scandir(path="."):  # mode 000 for a user without the permission (tests may run as root)
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "out"
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", str(x2), "-q", "-r"], monkeypatch, capsys)
    assert rc == 1, err
    assert summary_counts(err) == {"written": 2, "failed": 1}
    assert f"  {d}/locked: cannot read folder (Permission denied)" in err
    assert f"  {d}/linked: symbolic link to a folder: not followed (give it as -i)" in err
    assert f"  {d}/anim.gif: GIF is not read (convert it to PNG)" in err
    assert f"  {d}/sub/notes.txt: not an image file name" in err
    assert "2 not read" not in err and "3 not read (listed below)" in err
    assert sorted(snapshot(out)) == ["a.png", "sub/b.png"]


def test_folder_mode_names_skipped_files_and_exits_0(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    d = tmp_path / "d"
    write_images(d, ["a.png"])
    (d / "b.gif").write_bytes(b"GIF89a")
    rc, err = run_cli(["-i", str(d), "-o", str(tmp_path / "o"), "--weights", str(x2), "-q"], monkeypatch, capsys)
    assert rc == 0 and f"  {d}/b.gif: GIF is not read" in err and "1 not read" in err


def test_unreadable_input_folder_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    d = tmp_path / "d"
    write_images(d, ["a.png"])
    real = os.listdir

    def listdir(path="."):
        if os.fspath(path) == str(d):
            raise PermissionError(13, "Permission denied", str(d))
        return real(path)

    monkeypatch.setattr(os, "listdir", listdir)
    rc, err = run_cli(["-i", str(d), "-o", str(tmp_path / "o"), "--weights", "none.pth"], monkeypatch, capsys)
    assert rc == 2 and error_line(err) == f"basicsr: error: --input: cannot read folder {d} (Permission denied)"
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- bug 7
def test_explicit_param_key_must_exist(x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    write_images(tmp_path / "d", ["a.png"])
    base = ["-i", str(tmp_path / "d" / "a.png"), "-o", str(tmp_path / "o"), "--weights", str(x2), "-q"]
    for key in ("params_ema", "parms"):
        rc, err = run_cli([*base, "--param-key", key], monkeypatch, capsys)
        assert rc == 2, err
        assert error_line(err) == f"basicsr: error: {x2}: --param-key '{key}': no such group in the file; its groups are: params"
    assert not (tmp_path / "o").exists()
    bare = tmp_path / "bare.pth"
    torch.save(torch.load(x2, weights_only=True)["params"], bare)
    rc, err = run_cli([*base[:-2], str(bare), "-q", "--param-key", "params"], monkeypatch, capsys)
    assert rc == 2 and "it is a bare state dict (drop --param-key)" in err
    rc, err = run_cli([*base, "--param-key", "params"], monkeypatch, capsys)  # present: used
    assert rc == 0 and (tmp_path / "o" / "a.png").is_file()
    rc, err = run_cli([*base[:-2], str(bare), "-q", "--overwrite"], monkeypatch, capsys)  # no key: any form
    assert rc == 0, err


def test_explicit_param_key_picks_that_group(tmp_path: Path) -> None:
    from imdn_plugin.checkpoint import load_state_dict

    torch.manual_seed(0)
    a, b = IMDN(num_feat=16, num_block=1, upscale=2).state_dict(), IMDN(num_feat=16, num_block=1, upscale=2).state_dict()
    torch.save({"params": a, "params_ema": b}, tmp_path / "both.pth")
    got = load_state_dict(tmp_path / "both.pth", "params_ema", exact_key=True)
    assert torch.equal(got["fea_conv.weight"], b["fea_conv.weight"])
    assert not torch.equal(got["fea_conv.weight"], a["fea_conv.weight"])


# --------------------------------------------------------------------------- bug 8
@pytest.mark.parametrize("suffix", ["/../../escaped", "_x/y", "..\\up", "a\x00b"])
def test_suffix_cannot_leave_the_output_folder(suffix: str, x2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    d, out = tmp_path / "d", tmp_path / "deep" / "o"
    write_images(d, ["a.png"])
    out.mkdir(parents=True)
    rc, err = run_cli(["-i", str(d), "-o", str(out), "--weights", str(x2), "--suffix", suffix], monkeypatch, capsys)
    assert rc == 2 and error_line(err).startswith(f"basicsr: error: --suffix {suffix!r}: holds "), err
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "d", "d/a.png", "deep", "deep/o", "x2.pth"]  # fmt: skip


def test_plan_refuses_outputs_outside_the_folder(tmp_path: Path) -> None:
    from imdn_plugin.cli.infer import plan_outputs
    from imdn_plugin.errors import ConfigError

    src = tmp_path / "a.png"
    with pytest.raises(ConfigError, match="would be written outside --output"):
        plan_outputs([src], None, tmp_path / "o", "/../../x")


# --------------------------------------------------------------------------- devices, scale
def test_mps_and_missing_cuda_index_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    write_images(tmp_path / "d", ["a.png"])
    base = ["-i", str(tmp_path / "d"), "-o", str(tmp_path / "o"), "--weights", "none.pth"]
    rc, err = run_cli([*base, "--device", "mps"], monkeypatch, capsys)
    assert rc == 2 and error_line(err) == "basicsr: error: --device mps: not supported (cpu, cuda or cuda:N)"
    rc, err = run_cli([*base, "--device", "xla"], monkeypatch, capsys)
    assert rc == 2 and "--device xla: not supported" in error_line(err)
    assert not (tmp_path / "o").exists()


def test_huge_scale_is_a_short_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from imdn_plugin.archs import IMDN_AS

    torch.manual_seed(0)
    w = tmp_path / "as.pth"
    torch.save(IMDN_AS(num_feat=16, num_block=1).state_dict(), w)
    write_images(tmp_path / "d", ["a.png"])
    rc, err = run_cli(["-i", str(tmp_path / "d"), "-o", str(tmp_path / "o"), "--weights", str(w), "-q",
                       "--scale", "1e300"], monkeypatch, capsys)  # fmt: skip
    assert rc == 1
    line = [ln for ln in err.splitlines() if "the output would be" in ln][0]
    assert len(line) < 300 and "9e+300x8e+300 pixels" in line, line
