"""Training-side error cases, each one line before or during work, in-process through ``basicsr train``."""
from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest
import torch
import yaml

import imdn_plugin.atomic
from imdn_plugin.cli import main
from tests.integration.test_experiment_lock import fresh_basicsr_logger  # noqa: F401  (autouse fixture)
from tests.integration.test_training import write_opt


@pytest.fixture(scope="module")
def data(tiny_pairs: Path) -> Path:
    return tiny_pairs


def opt_file(tmp_path: Path, data: Path, name: str, total_iter: int, **edits) -> Path:
    path = write_opt(tmp_path, data, name, total_iter=total_iter)
    opt = yaml.safe_load(path.read_text())
    opt["logger"]["save_checkpoint_freq"] = 2
    opt["path"].update(edits)
    path.write_text(yaml.safe_dump(opt))
    return path


def error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("basicsr: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.slow
def test_auto_resume_skips_a_state_without_optimizers(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "-opt", str(opt_file(tmp_path, data, "ks", 4))]) == 0
    states = tmp_path / "experiments" / "ks" / "training_states"
    state = torch.load(states / "4.state", weights_only=True)
    del state["optimizers"]  # loads, but cannot be resumed from
    torch.save(state, states / "4.state")
    with caplog.at_level("WARNING"):
        assert main(["train", "-opt", str(opt_file(tmp_path, data, "ks", 6)), "--auto_resume"]) == 0
    assert "auto_resume: skipping iteration 4: " in caplog.text
    assert "4.state: not a complete BasicSR training state (no 'optimizers' key)" in caplog.text
    # Resumed from iteration 2: iteration 4 was trained and saved again, complete this time.
    assert "optimizers" in torch.load(states / "4.state", weights_only=True)
    assert (states / "6.state").is_file()

    # An explicit resume_state without it is an error, one line.
    state = torch.load(states / "6.state", weights_only=True)
    del state["schedulers"]
    torch.save(state, tmp_path / "bad.state")
    opt = opt_file(tmp_path, data, "ks", 8, resume_state=str(tmp_path / "bad.state"))
    assert main(["train", "-opt", str(opt)]) == 2
    assert "bad.state: not a complete BasicSR training state (no 'schedulers' key)" in error_line(capsys)


class _FullDisk(io.FileIO):
    """A file that takes 100 bytes, then fails as a full disk does."""

    def write(self, data) -> int:
        if self.tell() + len(data) > 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


@pytest.mark.slow
def test_disk_full_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)

    def open_on_a_filling_disk(file, mode="r", *args, **kwargs):
        if ".4.state." in str(file) and "w" in mode:  # the temporary file of 4.state
            return io.BufferedWriter(_FullDisk(file, "w"))
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(imdn_plugin.atomic, "open", open_on_a_filling_disk, raising=False)
    opt = opt_file(tmp_path, data, "full", 6)
    assert main(["train", "-opt", str(opt)]) == 2
    line = error_line(capsys)
    states = tmp_path / "experiments" / "full" / "training_states"
    assert f"{states / '4.state'}: cannot be written (No space left on device)" in line, line
    assert sorted(p.name for p in states.iterdir()) == ["2.state"]  # no partial file, no temporary
    assert torch.load(states / "2.state", weights_only=True)["iter"] == 2
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "-opt", str(opt), "--auto_resume"]) == 0  # resumes from the intact iteration 2
    assert (states / "6.state").is_file()


def test_persistent_workers_without_workers_is_refused_before_work(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    opt = write_opt(tmp_path, data, "pw", total_iter=2, workers=0, persistent_workers=True)
    assert main(["train", "-opt", str(opt)]) == 2
    line = error_line(capsys)
    assert "datasets:train:persistent_workers: true needs loader workers, but num_worker_per_gpu is 0" in line
    assert not (tmp_path / "experiments").exists()
