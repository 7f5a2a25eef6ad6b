"""The training summary after ``--auto_resume`` finds a finished run (issue 20): the iterations
reached, not "no/6"."""
from __future__ import annotations

import time
from pathlib import Path

from imdn_plugin.integration.progress import TrainingRun
from tests.integration.test_training import write_opt


def _opt(total: int) -> dict:
    return {"name": "r", "train": {"total_iter": total}, "datasets": {}, "path": {"models": "/nonexistent"}}


def test_summary_of_a_run_that_had_nothing_left_to_train() -> None:
    run = TrainingRun()
    run.start_iter = 6
    assert run.summary(_opt(6)).splitlines()[0].startswith("Training summary (r): 6/6 iterations (nothing left to train), ")
    fresh = TrainingRun()
    assert fresh.summary(_opt(6)).splitlines()[0].startswith("Training summary (r): 0/6 iterations (none trained), ")
    fresh.start_iter, fresh.last_iter = 2, 5
    assert fresh.summary(_opt(6)).splitlines()[0].startswith("Training summary (r): 5/6 iterations, ")


def test_auto_resume_of_a_finished_run(tiny_pairs: Path, tmp_path: Path, basicsr_in_process) -> None:
    opt = write_opt(tmp_path, tiny_pairs, "done", total_iter=4)
    assert basicsr_in_process("train", "-opt", str(opt)) == 0
    time.sleep(1.1)  # a new log file name (BasicSR names logs by the second)
    assert basicsr_in_process("train", "-opt", str(opt), "--auto_resume") == 0
    logs = sorted((tmp_path / "experiments" / "done").glob("train_done_*.log"))
    assert len(logs) == 2
    assert "Training summary (done): 4/4 iterations (nothing left to train)" in logs[-1].read_text()
