"""One run per experiment folder (imdn_plugin.integration.experiment_lock and its use in patches).

The second run is the real command, in-process (``imdn_plugin.cli.main``); the first run
is a helper process that holds the lock through the same API (a live PID to name).
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import imdn_plugin  # noqa: F401
from imdn_plugin.cli import main
from imdn_plugin.errors import ExperimentInUseError
from imdn_plugin.integration import experiment_lock as el
from tests.integration.test_training import write_opt

REPO = Path(__file__).resolve().parents[2]
HOLDER = """
import sys
from imdn_plugin.integration.experiment_lock import ExperimentLock
lock = ExperimentLock(sys.argv[1], "training").acquire()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def fresh_basicsr_logger():
    """BasicSR sets its logger up once per process, on the stderr and log file of the first run;
    each in-process run here gets its own (as each command run does)."""
    yield
    import logging

    import basicsr.utils.logger as basicsr_logger

    log = logging.getLogger("basicsr")
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    basicsr_logger.initialized_logger.pop("basicsr", None)


@pytest.fixture(scope="module")
def data(tiny_pairs: Path) -> Path:
    return tiny_pairs


@pytest.fixture
def holder(tmp_path: Path):
    """Start a process that holds the lock of a folder until the test ends; yields a function."""
    procs: list[subprocess.Popen] = []

    def hold(folder: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=30)


def error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("basicsr: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_second_training_with_the_same_name_is_refused_and_renames_nothing(
    data: Path, tmp_path: Path, holder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "experiments" / "lk"
    (exp / "models").mkdir(parents=True)
    (exp / "training_states").mkdir()
    # The live run's checkpoint: what --auto_resume would pick up (and write after).
    torch.save({"params": {}}, exp / "models" / "net_g_4.pth")
    torch.save({"epoch": 0, "iter": 4, "optimizers": [], "schedulers": []}, exp / "training_states" / "4.state")
    proc = holder(exp)
    before = snapshot(exp)
    opt = write_opt(tmp_path, data, "lk", total_iter=2)
    for extra in ([], ["--auto_resume"]):
        assert main(["train", "-opt", str(opt), *extra]) == 2
        line = error_line(capsys)
        assert f"{exp}: in use by a training run (PID {proc.pid} on " in line, line
        assert "give this run another 'name'" in line
    assert snapshot(exp) == before  # nothing written, nothing moved
    assert sorted(p.name for p in (tmp_path / "experiments").iterdir()) == ["lk"]  # no lk_archived_*


@pytest.mark.slow
def test_stale_lock_of_a_dead_run_is_taken_over(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    exp = tmp_path / "experiments" / "st"
    (exp / "models").mkdir(parents=True)
    (exp / "models" / "net_g_4.pth").write_bytes(b"old run")
    (exp / el.LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": "h", "started": 0, "command": "training"}))
    inode = exp.stat().st_ino
    opt = write_opt(tmp_path, data, "st", total_iter=2)
    with caplog.at_level("WARNING"):
        assert main(["train", "-opt", str(opt)]) == 0
    assert f"taking over the lock left by a training run (PID {dead.pid} on h, started " in caplog.text
    assert "which ended without releasing it" in caplog.text and "now belongs to another process" not in caplog.text
    assert exp.stat().st_ino == inode  # the folder itself was never renamed
    archived = list((tmp_path / "experiments").glob("st_archived_*"))
    assert len(archived) == 1 and (archived[0] / "models" / "net_g_4.pth").read_bytes() == b"old run"
    assert (exp / "models" / "net_g_latest.pth").is_file()
    assert el.read_lock_record(exp) == {}  # released at the end of the run


@pytest.mark.slow
def test_basicsr_test_locks_its_results_folder(
    data: Path, tmp_path: Path, holder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    opt = {
        "name": "tst", "model_type": "IMDNModel", "scale": 4, "num_gpu": 0,
        "datasets": {"test_1": {"name": "t", "type": "PairedImageDataset", "dataroot_gt": str(data / "HR"),
                                "dataroot_lq": str(data / "LR"), "io_backend": {"type": "disk"}}},
        "network_g": {"type": "IMDN", "num_feat": 16, "num_block": 1, "upscale": 4},
        "path": {"pretrain_network_g": None, "strict_load_g": True},
        "val": {"save_img": False, "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 4}}},
    }  # fmt: skip
    (tmp_path / "t.yml").write_text(yaml.safe_dump(opt))
    results = tmp_path / "results" / "tst"
    proc = holder(results)
    assert main(["test", "-opt", str(tmp_path / "t.yml")]) == 2
    assert f"{results}: in use by a training run (PID {proc.pid} " in error_line(capsys)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["tst"]
    assert [p.name for p in results.iterdir()] == [el.LOCK_NAME]


def test_lock_api_same_process_release_and_folder_creation(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    first = el.ExperimentLock(folder).acquire()
    assert el.read_lock_record(folder)["pid"] == os.getpid()
    with pytest.raises(ExperimentInUseError, match=rf"{folder}: in use by a training run \(PID {os.getpid()} "):
        el.ExperimentLock(folder, "test").acquire()  # flock: another open file, even in this process
    first.release()
    assert el.read_lock_record(folder) == {}
    with el.ExperimentLock(folder, "test") as again:
        assert again.held and el.read_lock_record(folder)["command"] == "test"


def test_forked_children_do_not_keep_the_lock(tmp_path: Path) -> None:
    # DataLoader workers are forks of the run: if they kept the lock, a killed run's
    # folder would stay locked until its workers noticed and exited.
    lock = el.ExperimentLock(tmp_path / "f").acquire()
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the "worker": says it runs (fork hooks done), waits until the test is done
        os.close(w)
        os.write(ready_w, b"1")
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"1"
        os.close(ready_r)
        os.close(lock._fd)  # the run dies (its descriptor goes), the worker lives on
        lock._fd = None
        el.ExperimentLock(tmp_path / "f").acquire().release()
    finally:
        os.close(w)
        os.waitpid(pid, 0)


def test_without_flock_the_pid_record_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(el.fcntl, "flock", no_flock)
    folder = tmp_path / "x"
    folder.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        host = el.socket.gethostname()
        (folder / el.LOCK_NAME).write_text(json.dumps({"pid": live.pid, "host": host, "started": 0}))
        with pytest.raises(ExperimentInUseError, match=f"PID {live.pid} on "):
            el.ExperimentLock(folder).acquire()
        (folder / el.LOCK_NAME).write_text(json.dumps({"pid": live.pid, "host": "elsewhere", "started": 0}))
        with pytest.raises(ExperimentInUseError, match=r"if no run uses it, delete .*\.imdn_lock"):
            el.ExperimentLock(folder).acquire()
    finally:
        live.stdin.close()
        live.wait()
    (folder / el.LOCK_NAME).write_text(json.dumps({"pid": live.pid, "host": host, "started": 0}))
    with caplog.at_level("WARNING"):
        lock = el.ExperimentLock(folder).acquire()  # that PID is gone now
    assert "taking over" in caplog.text and "flock not supported" in caplog.text
    lock.release()


def test_only_rank_0_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import basicsr.utils.dist_util as dist_util

    from imdn_plugin.integration import run_folders

    monkeypatch.setattr(dist_util, "get_dist_info", lambda: (1, 2))
    run_folders.lock_run_folder(str(tmp_path / "r1"), "training")
    assert not (tmp_path / "r1").exists() and not run_folders._RUN_LOCKS
    monkeypatch.setattr(dist_util, "get_dist_info", lambda: (0, 2))
    run_folders.lock_run_folder(str(tmp_path / "r0"), "training")
    try:
        assert el.read_lock_record(tmp_path / "r0")["pid"] == os.getpid()
    finally:
        run_folders.release_run_locks()
    assert el.read_lock_record(tmp_path / "r0") == {}


def test_takeover_never_calls_a_live_pid_no_longer_running(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A left record naming a PID that exists now (PID 1 in a container, a reused PID): the message
    says the lock was left, and that the PID is now another process (issue 20)."""
    import socket

    folder = tmp_path / "exp"
    folder.mkdir()
    record = {"pid": 1, "host": socket.gethostname(), "started": 0, "command": "training"}
    (folder / el.LOCK_NAME).write_text(json.dumps(record))
    with caplog.at_level("WARNING"):
        lock = el.ExperimentLock(folder).acquire()
    lock.release()
    assert "no longer running" not in caplog.text
    assert "taking over the lock left by a training run (PID 1 on " in caplog.text
    assert "PID 1 now belongs to another process" in caplog.text
