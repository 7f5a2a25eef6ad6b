"""What a ``basicsr train`` run shows: a progress bar, a sane ETA, a final summary, sample images.

BasicSR 1.4.2 logs one line every ``print_freq`` iterations whose ETA is
``time per iteration × (total - current - 1)``: it is off by one and ends
negative (``eta: -1 day, 23:59:58`` on the last line).  The pieces here, put in
place by :mod:`.patches` (:func:`reporting_train_pipeline`,
:class:`ProgressMessageLogger`, :func:`observing_build_model`), add:

* a tqdm bar over the iterations on stderr when stderr is a terminal (rank 0
  only); the log lines keep going to the console above it and to the log file;
* an ETA that is ``seconds per iteration so far × iterations left``, never negative;
* one summary at the end, through the logger (so also in the log file): last
  and best validation metrics per validation set, the bicubic baseline when a
  ``bicubic_baseline.txt`` (written by ``scripts/make_demo_data.py``) lies next to
  the validation ``dataroot_gt`` folder, and the path of the final model;
* :func:`comparison_image`: the bicubic | output | ground truth crop that
  :class:`~.model.IMDNModel` writes to TensorBoard at each validation.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import os.path as osp
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from basicsr.utils.logger import MessageLogger

#: Side of the square TensorBoard sample crop, in ground-truth pixels.
SAMPLE_CROP = 128
#: Name of the baseline file looked for next to a validation set's ``dataroot_gt``.
BASELINE_FILE = "bicubic_baseline.txt"


def sample_tag(dataset_name: str) -> str:
    """TensorBoard image tag of a validation set's bicubic | output | ground truth crop."""
    return f"val/{dataset_name}/bicubic_output_gt"


# ---------------------------------------------------------------------------- ETA
def eta_seconds(elapsed: float, iters_timed: int, iters_left: int, fallback_per_iter: float = 0.0) -> float:
    """Seconds left: mean seconds per iteration so far × iterations left, never negative.

    ``fallback_per_iter`` is used while no iteration has been timed yet.
    """
    per_iter = elapsed / iters_timed if iters_timed > 0 else fallback_per_iter
    return max(0.0, per_iter) * max(0, iters_left)


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (``N day(s), H:MM:SS`` past a day), as BasicSR prints it."""
    return str(datetime.timedelta(seconds=int(max(0.0, seconds))))


# ---------------------------------------------------------------------------- one run
class TrainingRun:
    """The user-facing state of one training run: bar, observed model, validation results."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.time()
        self.model: Any = None
        self.last_iter: int | None = None
        #: The iteration the run started from (a resume's), known once the message logger exists.
        self.start_iter: int | None = None
        self.last_results: dict[str, tuple[dict[str, float], int | None]] = {}
        self.bar: Any = None
        self._postfix: dict[str, str] = {}
        self._redirect = contextlib.ExitStack()

    # -- progress bar
    def open_bar(self, name: str, start_iter: int, total_iters: int) -> None:
        """A tqdm bar over the iterations, only when the stream is a terminal (rank 0 only)."""
        from basicsr.utils.dist_util import get_dist_info

        if self.bar is not None or get_dist_info()[0] != 0 or not _isatty(self.stream):
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self.bar = tqdm(total=total_iters, initial=min(start_iter, total_iters), unit="it", desc=name[:20],
                        file=self.stream, dynamic_ncols=True, mininterval=0.5)  # fmt: skip
        # Console log lines are written above the bar instead of through it; the log file is untouched.
        self._redirect.enter_context(logging_redirect_tqdm(loggers=[logging.getLogger("basicsr")]))

    def step(self, current_iter: int) -> None:
        """One training iteration has finished."""
        self.last_iter = current_iter
        if self.bar is not None and current_iter > self.bar.n:
            self.bar.update(min(current_iter, self.bar.total) - self.bar.n)

    def show(self, values: dict[str, str]) -> None:
        """Values shown after the bar (latest losses, latest validation metrics)."""
        self._postfix.update(values)
        if self.bar is not None:
            self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in self._postfix.items()), refresh=False)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._redirect.close()

    # -- validation
    def record_validation(self, dataset_name: str, results: dict[str, float]) -> None:
        """Metrics of one validation pass over ``dataset_name`` (after ``self.last_iter`` iterations)."""
        self.last_results[dataset_name] = (dict(results), self.last_iter)
        self.show({k: f"{v:.4f}" for k, v in results.items()})

    # -- summary
    def summary(self, opt: dict) -> str:
        """The end-of-training summary: metrics (last, best, bicubic), the final model's path."""
        total = (opt.get("train") or {}).get("total_iter")
        elapsed = format_eta(time.time() - self.started)
        if self.last_iter is not None:
            done, note = self.last_iter, ""
        elif self.start_iter is not None:  # e.g. --auto_resume of a finished run: nothing trained here
            done, note = self.start_iter, " (nothing left to train)"
        else:
            done, note = 0, " (none trained)"
        lines = [f"Training summary ({opt.get('name')}): {done}/{total} iterations{note}, {elapsed} in this run."]
        best_all = getattr(self.model, "best_metric_results", {}) or {}
        val_sets = [d for phase, d in opt.get("datasets", {}).items() if phase.split("_")[0] == "val"]
        if not val_sets or not (opt.get("val") or {}).get("metrics"):
            lines.append("\tno validation metrics (no val datasets or no `val: metrics` block)")
        for dataset_opt in val_sets:
            name = dataset_opt.get("name")
            last, last_iter = self.last_results.get(name, ({}, None))
            best = best_all.get(name, {})
            baseline, baseline_path = read_baseline(dataset_opt.get("dataroot_gt"))
            lines.append(f"\tValidation {name}:")
            for metric in (opt.get("val") or {}).get("metrics", {}):
                parts = []
                if metric in last:
                    parts.append(f"last {last[metric]:.4f} @ {last_iter} iter")
                if metric in best and best[metric].get("iter", -1) != -1:
                    parts.append(f"best {best[metric]['val']:.4f} @ {self._trained_iter(best[metric]['iter'])} iter")
                if metric in baseline:
                    parts.append(f"bicubic {baseline[metric]:.4f}")
                lines.append(f"\t # {metric}: " + ("  ".join(parts) if parts else "not validated"))
            if baseline_path:
                lines.append(f"\t (bicubic: {_shown(baseline_path)})")
        model_path = osp.join(opt["path"]["models"], "net_g_latest.pth")
        if osp.isfile(model_path):
            lines.append(f"Final model: {_shown(model_path)}")
        else:
            lines.append(f"Final model: not found at {_shown(model_path)}")
        return "\n".join(lines)

    def _trained_iter(self, reported: Any) -> Any:
        # BasicSR runs the final validation at total_iter + 1 (or later): the weights are
        # those of the last trained iteration.
        if isinstance(reported, int) and self.last_iter is not None and reported > self.last_iter:
            return self.last_iter
        return reported


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it lies under it, else absolute."""
    path = osp.abspath(path)
    rel = osp.relpath(path)
    return path if rel.startswith(os.pardir) else rel


_BASELINE_MEAN = re.compile(r"^mean((?:\s+[A-Za-z_]\w*\s+[-+0-9.eE]+)+)\s*$")


def read_baseline(dataroot_gt: Any) -> tuple[dict[str, float], str | None]:
    """``({metric: value}, path)`` from the ``mean ...`` line of the ``bicubic_baseline.txt``
    next to ``dataroot_gt`` (format of ``scripts/make_demo_data.py``); ``({}, None)`` if none."""
    if not isinstance(dataroot_gt, str) or not dataroot_gt:
        return {}, None
    path = osp.join(osp.dirname(osp.normpath(dataroot_gt)), BASELINE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return {}, None
    for line in text.splitlines():
        m = _BASELINE_MEAN.match(line.strip())
        if m:
            tokens = m.group(1).split()
            try:
                return {k: float(v) for k, v in zip(tokens[::2], tokens[1::2], strict=False)}, path
            except ValueError:
                return {}, None
    return {}, None


# ---------------------------------------------------------------------------- the hooks
_current: TrainingRun | None = None


def current_run() -> TrainingRun | None:
    """The run of the ``train_pipeline`` in progress (None outside one)."""
    return _current


def reporting_train_pipeline(train_pipeline: Callable[[str], None]) -> Callable[[str], None]:
    """``train_pipeline`` with a :class:`TrainingRun` around it and the summary logged at the end."""

    def train_pipeline_with_summary(root_path: str) -> None:
        global _current
        from basicsr.utils import get_root_logger
        from basicsr.utils.dist_util import get_dist_info

        run = _current = TrainingRun()
        try:
            train_pipeline(root_path)
        finally:
            run.close_bar()
            _current = None
        model = run.model
        if model is not None and get_dist_info()[0] == 0:
            get_root_logger().info(run.summary(model.opt))

    return train_pipeline_with_summary


def observing_build_model(build_model: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """``build_model`` whose model reports each finished iteration and validation to the run."""

    def build_observed_model(opt: dict) -> Any:
        model = build_model(opt)
        run = _current
        if run is None or not opt.get("is_train"):
            return model
        run.model = model
        optimize, validation = model.optimize_parameters, model.validation

        def optimize_parameters(current_iter: int) -> None:
            optimize(current_iter)
            run.step(current_iter)

        def observed_validation(dataloader: Any, current_iter: Any, tb_logger: Any, save_img: bool = False) -> None:
            validation(dataloader, current_iter, tb_logger, save_img)
            results = getattr(model, "metric_results", None)
            if isinstance(results, dict) and results:
                run.record_validation(dataloader.dataset.opt["name"], results)

        model.optimize_parameters = optimize_parameters
        model.validation = observed_validation
        return model

    return build_observed_model


class ProgressMessageLogger(MessageLogger):
    """BasicSR's ``MessageLogger`` with an ETA that never goes negative, driving the run's bar."""

    def __init__(self, opt: dict, start_iter: int = 1, tb_logger: Any = None) -> None:
        super().__init__(opt, start_iter, tb_logger)
        self._timed_from = start_iter
        run = _current
        if run is not None:
            run.start_iter = start_iter
            run.open_bar(opt["name"], start_iter, int(self.max_iters))

    def reset_start_time(self) -> None:
        """BasicSR calls this after iteration 1: time from there on."""
        super().reset_start_time()
        self._timed_from = self.start_iter + 1

    def __call__(self, log_vars: dict) -> None:
        from basicsr.utils.dist_util import get_dist_info

        if get_dist_info()[0] != 0:  # BasicSR's MessageLogger is master_only
            return
        log_vars = dict(log_vars)
        epoch, current_iter, lrs = log_vars.pop("epoch"), log_vars.pop("iter"), log_vars.pop("lrs")
        message = f"[{self.exp_name[:5]}..][epoch:{epoch:3d}, iter:{current_iter:8,d}, lr:("
        message += "".join(f"{v:.3e}," for v in lrs) + ")] "
        if "time" in log_vars:
            iter_time, data_time = log_vars.pop("time"), log_vars.pop("data_time")
            eta = eta_seconds(time.time() - self.start_time, current_iter - self._timed_from,
                              int(self.max_iters) - current_iter, iter_time)  # fmt: skip
            message += f"[eta: {format_eta(eta)}, time (data): {iter_time:.3f} ({data_time:.3f})] "
        for k, v in log_vars.items():
            message += f"{k}: {v:.4e} "
            if self.use_tb_logger and "debug" not in self.exp_name and self.tb_logger is not None:
                self.tb_logger.add_scalar(f"losses/{k}" if k.startswith("l_") else k, v, current_iter)
        self.logger.info(message)
        run = _current
        if run is not None:
            run.show({k: f"{v:.3e}" for k, v in log_vars.items() if k.startswith("l_")})


# ---------------------------------------------------------------------------- TensorBoard sample
def center_box(height: int, width: int, size: int = SAMPLE_CROP) -> tuple[slice, slice]:
    """The central ``size``×``size`` window (smaller when the image is)."""
    h, w = min(size, height), min(size, width)
    top, left = (height - h) // 2, (width - w) // 2
    return slice(top, top + h), slice(left, left + w)


def comparison_image(lq: torch.Tensor, output: torch.Tensor, gt: torch.Tensor | None,
                     size: int = SAMPLE_CROP, gap: int = 2) -> torch.Tensor:  # fmt: skip
    """CHW float image in [0, 1]: bicubic | output | ground truth, central crop at output scale.

    ``lq``/``output``/``gt``: the first image of NCHW batches (RGB in [0, 1]).  The
    bicubic panel is ``torch`` bicubic upscaling of ``lq`` to the output size; panels
    are separated by ``gap`` white columns.  A panel whose channels (or, for ``gt``,
    size) differ from the output's is left out.
    """
    out = output[:1].detach().float()
    rows, cols = center_box(out.shape[-2], out.shape[-1], size)
    panels = []
    if lq.shape[1] == out.shape[1]:
        bicubic = F.interpolate(lq[:1].detach().float().to(out.device), size=out.shape[-2:], mode="bicubic",
                                align_corners=False)  # fmt: skip
        panels.append(bicubic[0, :, rows, cols])
    panels.append(out[0, :, rows, cols])
    if gt is not None and gt.shape[1:] == out.shape[1:]:
        panels.append(gt[:1].detach().float().to(out.device)[0, :, rows, cols])
    sep = torch.ones(out.shape[1], panels[0].shape[1], gap, device=out.device)
    parts: list[torch.Tensor] = []
    for i, p in enumerate(panels):
        parts += [sep, p] if i else [p]
    return torch.cat(parts, dim=2).clamp_(0, 1).cpu()
