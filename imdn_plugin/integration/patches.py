"""The wiring of every in-memory replacement of a BasicSR 1.4.2 function, in one place.

:func:`patch_pipelines` (called by :func:`imdn_plugin.integration.register`)
replaces function attributes of BasicSR's modules; no file of BasicSR is
edited.  The replacements live in their own modules (:mod:`.parse`,
:mod:`.distributed`, :mod:`.run_folders`, :mod:`.images`, :mod:`.exact_resume`,
:mod:`.progress`); this module only wires them in.  Each fix, and how it differs from BasicSR for any model trained or
tested through the pipelines (the plugin's or another package's):

* ``parse_options`` is :func:`.parse.parse_options`: the same flags and keys,
  but option files and ``--force_yml`` values are read as data (a safe YAML
  loader; BasicSR's runs ``!!python/object/apply`` tags and evaluates
  ``--force_yml`` values), and :func:`imdn_plugin.options.validate_options`
  checks the result, so a typo in ``network_g`` or a missing dataset folder
  stops the run before any work, with one line naming the file and the key.
* ``init_dist`` works without CUDA (gloo), so ``--launcher pytorch`` runs on CPU.
* ``load_resume_state`` loads onto the CPU (BasicSR calls
  ``torch.cuda.current_device()`` unconditionally), with ``weights_only=True``,
  and ``--auto_resume`` skips a training state or network file that cannot be
  read instead of crashing on it.
* One run per folder (:mod:`.experiment_lock`): ``make_exp_dirs`` and
  ``load_resume_state`` lock ``experiments/<name>/`` (``results/<name>/`` for
  ``basicsr test``) on rank 0 for the whole run; a second run with the same
  name is refused with one line naming the folder and the holder's PID.  A
  fresh run archives the previous contents into ``<name>_archived_<time>/``
  as BasicSR does, but by moving them out of the locked folder: a folder in
  use is never renamed.  ``--auto_resume``/``resume_state`` reuse it.
* ``load_resume_state``: a training state without ``optimizers``/``schedulers``
  is skipped by ``--auto_resume`` (the previous complete one is used).
* ``PairedImageDataset`` reads images through :mod:`imdn_plugin.data.imageio`:
  grayscale, RGBA, palette and 16-bit files (16-bit keeps its precision), and
  an unreadable file is an error that names it (BasicSR fails with
  ``'NoneType' object has no attribute 'astype'``).
* Exact resume (:mod:`.exact_resume`): the training set, its sampler and the
  loader set-up are wrapped so that each sample's augmentation is seeded by
  ``(manual_seed, epoch, position)`` and a resumed run skips the batches of the
  interrupted epoch already used.  The sample order is BasicSR's; the random
  augmentation draws differ from BasicSR's (they no longer depend on the loader
  worker), with the same distribution.
* ``SRModel.nondist_validation`` (``basicsr test``, validation with
  ``save_img``) writes its images through
  :func:`imdn_plugin.data.imageio.write_image_atomic` instead of BasicSR's
  ``imwrite``: a kill during the write never leaves a cut-off PNG under its
  final name, and a full disk is one line (exit status 1) naming the file.
* ``init_dist`` refuses ``--launcher pytorch`` without ``torchrun`` (no
  ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` in the environment) in one line,
  instead of torch's ``ValueError`` traceback.
* Training output (:mod:`.progress`): ``train_pipeline`` ends with one summary
  (last/best validation metrics, bicubic baseline, final model path);
  ``MessageLogger`` prints an ETA that never goes negative (BasicSR's ends at
  ``-1 day, 23:59:58``) and drives a progress bar on a terminal; ``build_model``'s
  model reports each iteration and validation to them.
"""
from __future__ import annotations

from typing import Any

from .distributed import init_dist
from .exact_resume import ExactResume, resumable_sampler_class
from .images import imfrombytes, imwrite, naming_file_client
from .progress import (
    ProgressMessageLogger,
    observing_build_model,
    reporting_train_pipeline,
)
from .run_folders import load_resume_state, make_exp_dirs, release_run_locks

_PATCH_FLAG = "_imdn_plugin_patch"


# ---------------------------------------------------------------------------- pipeline fixes
def patch_pipelines() -> None:
    """Apply the run-time fixes to ``basicsr.train``, ``basicsr.test`` and ``basicsr.utils.options``."""
    import basicsr.test
    import basicsr.train
    import basicsr.utils.options

    from .parse import parse_options

    for module in (basicsr.train, basicsr.test, basicsr.utils.options):
        if not getattr(module.parse_options, _PATCH_FLAG, False):
            module.parse_options = _flag(parse_options)
    if not getattr(basicsr.utils.options.init_dist, _PATCH_FLAG, False):
        basicsr.utils.options.init_dist = _flag(init_dist)
    import basicsr.data.paired_image_dataset as paired

    if not getattr(paired.imfrombytes, _PATCH_FLAG, False):
        paired.imfrombytes = _flag(imfrombytes)
        paired.FileClient = _flag(naming_file_client(paired.FileClient))
    if not getattr(basicsr.train.create_train_val_dataloader, _PATCH_FLAG, False):
        resume = ExactResume()
        basicsr.train.load_resume_state = _flag(_reporting_resume(_flag(load_resume_state), resume))
        basicsr.train.create_train_val_dataloader = _resumable_loaders(
            basicsr.train.create_train_val_dataloader, resume
        )
        basicsr.train.build_dataset = _seeded_train_datasets(basicsr.train.build_dataset, resume)
        basicsr.train.EnlargedSampler = _flag(resumable_sampler_class())
    import basicsr.models.sr_model as sr_model

    if not getattr(sr_model.imwrite, _PATCH_FLAG, False):
        sr_model.imwrite = _flag(imwrite)
    if not getattr(basicsr.train.train_pipeline, _PATCH_FLAG, False):
        basicsr.train.train_pipeline = _flag(reporting_train_pipeline(basicsr.train.train_pipeline))
        basicsr.train.build_model = _flag(observing_build_model(basicsr.train.build_model))
        basicsr.train.MessageLogger = _flag(ProgressMessageLogger)
    _patch_run_folders()


def _flag(func: Any) -> Any:
    setattr(func, _PATCH_FLAG, True)
    return func


_RELEASE_FLAG = "_imdn_plugin_releases_locks"


def _patch_run_folders() -> None:
    """Lock the experiment / results folder; release it when the pipeline returns."""
    import basicsr.test
    import basicsr.train

    for module, pipeline in ((basicsr.train, "train_pipeline"), (basicsr.test, "test_pipeline")):
        if not getattr(module.make_exp_dirs, _PATCH_FLAG, False):
            module.make_exp_dirs = _flag(make_exp_dirs)
        # Its own flag: the training pipeline is also wrapped for the progress output.
        if not getattr(getattr(module, pipeline), _RELEASE_FLAG, False):
            setattr(module, pipeline, _releasing_locks(getattr(module, pipeline)))


def _releasing_locks(pipeline: Any) -> Any:
    @_flag
    def run_pipeline(root_path: str) -> Any:
        try:
            return pipeline(root_path)
        finally:
            release_run_locks()

    run_pipeline.__name__ = run_pipeline.__qualname__ = pipeline.__name__
    setattr(run_pipeline, _RELEASE_FLAG, True)
    run_pipeline.__wrapped__ = pipeline  # type: ignore[attr-defined]
    return run_pipeline


# ---------------------------------------------------------------------------- exact resume
def _reporting_resume(load: Any, resume: ExactResume) -> Any:
    def load_and_report(opt: dict) -> dict | None:
        state = load(opt)
        if state is not None:
            resume.resumed_at(state["epoch"], state["iter"])
        return state

    return load_and_report


def _seeded_train_datasets(build_dataset: Any, resume: ExactResume) -> Any:
    @_flag
    def build(dataset_opt: dict) -> Any:
        dataset = build_dataset(dataset_opt)
        return resume.wrap_train_dataset(dataset) if dataset_opt.get("phase") == "train" else dataset

    return build


def _resumable_loaders(create: Any, resume: ExactResume) -> Any:
    @_flag
    def create_train_val_dataloader(opt: dict, logger_: Any):
        resume.start_run(opt)
        result = create(opt, logger_)
        resume.skip_used_batches(result[0], result[1], logger_)
        return result

    return create_train_val_dataloader
