"""What a training run shows: ETA, progress bar, final summary, TensorBoard sample image.

One ``basicsr train`` subprocess (4 iterations of a tiny IMDN, validation every 2,
TensorBoard on); the rest are in-process unit tests.
"""
from __future__ import annotations

import io
import logging
import re
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from imdn_plugin.integration.progress import (
    ProgressMessageLogger,
    TrainingRun,
    eta_seconds,
    read_baseline,
    sample_tag,
)
from tests.integration.test_training import data_dir, train, write_opt  # noqa: F401  (data_dir: fixture)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


# ---------------------------------------------------------------------------- unit tests
def test_eta_is_time_per_iteration_times_iterations_left_and_never_negative() -> None:
    assert eta_seconds(10.0, 5, 3) == pytest.approx(6.0)
    assert eta_seconds(10.0, 5, 0) == 0.0
    assert eta_seconds(10.0, 5, -1) == 0.0  # BasicSR's formula gives -2 s here
    assert eta_seconds(0.0, 0, 4, fallback_per_iter=0.5) == pytest.approx(2.0)


def _log_lines(ml: ProgressMessageLogger, *calls: dict) -> list[str]:
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
    level = ml.logger.level
    ml.logger.addHandler(handler)
    ml.logger.setLevel(logging.INFO)
    try:
        for log_vars in calls:
            ml(dict(log_vars))
    finally:
        ml.logger.removeHandler(handler)
        ml.logger.setLevel(level)
    return records


def test_message_logger_eta_counts_the_iterations_left() -> None:
    opt = {"name": "tiny", "logger": {"print_freq": 1, "use_tb_logger": False}, "train": {"total_iter": 4}}
    ml = ProgressMessageLogger(opt, start_iter=0)
    ml.start_time = time.time() - 4.5  # 2 iterations in 4.5 s: 2.25 s per iteration, 2 left
    mid, end = _log_lines(
        ml,
        {"epoch": 0, "iter": 2, "lrs": [1e-3], "time": 2.0, "data_time": 0.1, "l_pix": 0.5},
        {"epoch": 0, "iter": 4, "lrs": [1e-3], "time": 2.0, "data_time": 0.1, "l_pix": 0.25},
    )
    assert "[eta: 0:00:04, time (data): 2.000 (0.100)]" in mid and "l_pix: 5.0000e-01" in mid
    assert "[eta: 0:00:00," in end


def test_progress_bar_only_on_a_terminal() -> None:
    tty, pipe = _Tty(), io.StringIO()
    for stream in (tty, pipe):
        run = TrainingRun(stream=stream)
        run.open_bar("tiny", 0, 4)
        for it in range(1, 5):
            run.step(it)
        run.show({"psnr": "30.1234"})
        run.close_bar()
    assert re.search(r"tiny: 100%.*4/4", tty.getvalue()), tty.getvalue()
    assert pipe.getvalue() == ""


def test_progress_bar_resumes_at_the_start_iteration() -> None:
    tty = _Tty()
    run = TrainingRun(stream=tty)
    run.open_bar("tiny", 6, 8)
    run.step(7)
    run.close_bar()
    assert "7/8" in tty.getvalue() and "8/8" not in tty.getvalue()


def test_read_baseline_reads_the_demo_scripts_mean_line(tmp_path: Path) -> None:
    (tmp_path / "HR").mkdir()
    (tmp_path / "bicubic_baseline.txt").write_text(
        "# Bicubic x4 baseline ...\n0801 psnr 28.1000 ssim 0.8000\nmean psnr 29.3800 ssim 0.8123\n", encoding="utf-8"
    )
    values, path = read_baseline(str(tmp_path / "HR") + "/")
    assert values == {"psnr": 29.38, "ssim": 0.8123} and path == str(tmp_path / "bicubic_baseline.txt")
    assert read_baseline(str(tmp_path / "missing" / "HR")) == ({}, None)


# ---------------------------------------------------------------------------- one training run
@pytest.fixture(scope="module")
def tb_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    cwd = tmp_path_factory.mktemp("progress")
    val = cwd / "val"
    for sub in ("HR", "LR"):
        (val / sub).mkdir(parents=True)
        shutil.copy(data_dir / sub / "0000.png", val / sub / "0000.png")
    (val / "bicubic_baseline.txt").write_text("# test baseline\nmean psnr 12.3456 ssim 0.5432\n", encoding="utf-8")
    opt_path = write_opt(cwd, data_dir, "tiny_tb", total_iter=4)
    opt = yaml.safe_load(opt_path.read_text())
    opt["datasets"]["val"] = {"name": "tiny_val", "type": "PairedImageDataset", "dataroot_gt": str(val / "HR"),
                              "dataroot_lq": str(val / "LR"), "io_backend": {"type": "disk"}}  # fmt: skip
    opt["val"] = {"val_freq": 2, "save_img": False, "metrics": {
        "psnr": {"type": "calculate_psnr", "crop_border": 4, "test_y_channel": True},
        "ssim": {"type": "calculate_ssim", "crop_border": 4, "test_y_channel": True}}}  # fmt: skip
    opt["logger"]["use_tb_logger"] = True
    opt_path.write_text(yaml.safe_dump(opt))
    res = train(cwd, opt_path)
    assert res.returncode == 0, res.stderr[-3000:]
    log = "".join(p.read_text() for p in (cwd / "experiments" / "tiny_tb").glob("train_tiny_tb_*.log"))
    return cwd, res.stdout + res.stderr, log


@pytest.mark.slow
def test_summary_reports_last_best_bicubic_and_the_saved_model(tb_run) -> None:
    cwd, console, log = tb_run
    summary = log[log.index("Training summary (tiny_tb): 4/4 iterations"):]
    assert "Training summary" in console  # also on the console, not only in the file
    # BasicSR's own validation lines: at 2, 4 and the final pass after saving.
    validated = [float(v) for v in re.findall(r"# psnr: ([\d.]+)\tBest", log)]
    assert len(validated) == 3
    m = re.search(r"# psnr: last ([\d.]+) @ (\d+) iter  best ([\d.]+) @ (\d+) iter  bicubic 12\.3456", summary)
    assert m, summary
    assert float(m.group(1)) == pytest.approx(validated[-1], abs=1e-4) and m.group(2) == "4"
    assert float(m.group(3)) == pytest.approx(max(validated), abs=1e-4) and int(m.group(4)) <= 4
    assert re.search(r"# ssim: last [\d.]+ @ 4 iter  best [\d.]+ @ \d iter  bicubic 0\.5432", summary), summary
    model = re.search(r"Final model: (\S+)", summary).group(1)
    assert model == "experiments/tiny_tb/models/net_g_latest.pth" and (cwd / model).is_file()


@pytest.mark.slow
def test_eta_never_negative_and_zero_at_the_end(tb_run) -> None:
    _, console, log = tb_run
    etas = re.findall(r"\[eta: ([^,]+),", log)
    assert len(etas) == 4, etas
    assert "-1 day" not in console + log and etas[-1] == "0:00:00"


@pytest.mark.slow
def test_tensorboard_gets_the_bicubic_output_gt_crop(tb_run, data_dir: Path) -> None:  # noqa: F811
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cwd, _, _ = tb_run
    ea = EventAccumulator(str(cwd / "tb_logger" / "tiny_tb"), size_guidance={"images": 0})
    ea.Reload()
    tag = sample_tag("tiny_val")
    assert tag == "val/tiny_val/bicubic_output_gt" and tag in ea.Tags()["images"], ea.Tags()
    events = ea.Images(tag)
    assert [e.step for e in events][:2] == [2, 4] and len(events) == 3
    img = cv2.imdecode(np.frombuffer(events[-1].encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (64, 3 * 64 + 2 * 2, 3)  # 64x64 GT (smaller than the 128 crop), 2-pixel gaps
    gt = cv2.imread(str(data_dir / "HR" / "0000.png"))
    lr = cv2.imread(str(data_dir / "LR" / "0000.png"))
    assert np.array_equal(img[:, 2 * 66 :], gt)
    bicubic = cv2.resize(lr, (64, 64), interpolation=cv2.INTER_CUBIC)
    assert np.abs(img[:, :64].astype(int) - bicubic.astype(int)).max() <= 2
    assert (img[:, 64:66] == 255).all()


# ---------------------------------------------------------------------------- the TensorBoard sample, in-process
def test_comparison_image_is_the_central_crop_of_each_panel() -> None:
    import torch

    from imdn_plugin.integration.progress import comparison_image

    torch.manual_seed(0)
    lq, out, gt = torch.rand(1, 3, 50, 75), torch.rand(1, 3, 200, 300), torch.rand(1, 3, 200, 300)
    img = comparison_image(lq, out, gt)
    assert img.shape == (3, 128, 3 * 128 + 4)
    assert torch.equal(img[:, :, 130:258], out[0, :, 36:164, 86:214])  # (200-128)/2, (300-128)/2
    assert torch.equal(img[:, :, 260:], gt[0, :, 36:164, 86:214])
    assert (img[:, :, 128:130] == 1).all()
    # A ground truth of another size is left out rather than misaligned.
    assert comparison_image(lq, out, gt[:, :, :100]).shape == (3, 128, 2 * 128 + 2)


class _FakeTB:
    def __init__(self) -> None:
        self.images: list[tuple[str, tuple[int, ...], int]] = []

    def add_image(self, tag: str, img, step: int) -> None:
        self.images.append((tag, tuple(img.shape), step))

    def add_scalar(self, *args) -> None:
        pass


class _FakeLoader(list):
    """A validation "loader": a list of batches with BasicSR's ``dataloader.dataset.opt["name"]``."""

    dataset = type("FakeDataset", (), {"opt": {"name": "fake"}})


def test_imdn_model_writes_one_sample_per_validation_only_with_a_tb_logger() -> None:
    import torch

    from tests.integration.test_model import SMALL, make_model

    model = make_model({"type": "IMDN", "upscale": 2, **SMALL})
    model.opt["val"] = {"metrics": None}
    torch.manual_seed(1)
    loader = _FakeLoader(
        {"lq": torch.rand(1, 3, 20, 20), "gt": torch.rand(1, 3, 40, 40), "lq_path": [f"x/{i}.png"]} for i in range(2)
    )
    tb = _FakeTB()
    model.nondist_validation(loader, 7, tb, False)
    assert tb.images == [("val/fake/bicubic_output_gt", (3, 40, 3 * 40 + 4), 7)]
    model.nondist_validation(loader, 8, None, False)  # no TensorBoard logger: nothing to write, no error
    model.nondist_validation(_FakeLoader(), 9, tb, False)  # an empty set leaves nothing armed
    model.feed_data(loader[0])
    model.test()  # outside validation: nothing written
    assert len(tb.images) == 1


def test_register_installs_the_training_output_hooks() -> None:
    import basicsr.train

    import imdn_plugin

    imdn_plugin.register()
    imdn_plugin.register()  # idempotent: wrapped once
    assert basicsr.train.MessageLogger is ProgressMessageLogger
    # train_pipeline: the experiment-lock release around the progress reporting around BasicSR's, once each
    chain = [basicsr.train.train_pipeline]
    while hasattr(chain[-1], "__wrapped__"):
        chain.append(chain[-1].__wrapped__)
    reporting = chain[-1]
    assert len(chain) == 2 and reporting.__qualname__.startswith("reporting_train_pipeline")
    assert basicsr.train.build_model.__qualname__.startswith("observing_build_model")
    assert reporting.__closure__[0].cell_contents.__module__ == "basicsr.train"
