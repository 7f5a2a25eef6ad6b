"""Exact resume: a run stopped and resumed ends with the same weights as one never stopped.

Three pieces, all owned by one :class:`ExactResume` object per process:

* **Per-sample RNGs.**  Each training sample's augmentation is drawn from
  Python/NumPy/torch RNGs seeded by ``(manual_seed, epoch, position)``
  (:class:`SeededDataset`, :class:`ResumableSampler`), not from whichever loader
  worker happens to load it.
* **The resume position.**  :meth:`ExactResume.resumed_at` records the epoch and
  iteration of the training state; :meth:`ExactResume.skip_used_batches` makes
  the sampler leave out the batches of that epoch already used.
* **The global RNG streams** (:func:`rng_state` / :func:`set_rng_state`), saved in
  every training state by ``IMDNModel`` and restored on resume.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed Python, NumPy and torch RNGs for one sample; restore the global streams after."""
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


class SeededDataset(torch.utils.data.Dataset):
    """A training dataset whose item ``(index, draw)`` is augmented with RNGs seeded by ``draw``.

    Plain integer indices work too (``draw = index``).
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # opt, paths, ... of the wrapped dataset
        if name in ("dataset", "seed"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: Any) -> Any:
        index, draw = key if isinstance(key, tuple) else (key, key)
        with seeded_rngs(self.seed * 1_000_003 + int(draw)):
            return self.dataset[index]


def resumable_sampler_class() -> type:
    """BasicSR's ``EnlargedSampler`` subclass :class:`ResumableSampler` (built lazily: imports BasicSR)."""
    from basicsr.data.data_sampler import EnlargedSampler

    class ResumableSampler(EnlargedSampler):
        """BasicSR's ``EnlargedSampler`` (same order) that yields ``(index, draw)`` and can skip.

        ``draw`` is unique per epoch and position, so with :class:`SeededDataset`
        a sample's augmentation does not depend on the worker that loads it.
        While ``self.epoch == resume_epoch``, the first ``skip`` samples are left out.
        """

        resume_epoch: int | None = None
        skip: int = 0

        def __iter__(self):  # type: ignore[override]
            g = torch.Generator()
            g.manual_seed(self.epoch)
            order = torch.randperm(self.total_size, generator=g).tolist()
            size = len(self.dataset)
            mine = order[self.rank : self.total_size : self.num_replicas]
            start = self.skip if self.epoch == self.resume_epoch else 0
            base = self.epoch * self.total_size
            return iter([(v % size, base + v) for v in mine[start:]])

    return ResumableSampler


@dataclass
class ResumePosition:
    """Where a resumed run starts: the training state's epoch and iteration."""

    epoch: int
    iter: int


class ExactResume:
    """The state exact resume needs between BasicSR's pipeline steps of one run.

    ``basicsr.train.train_pipeline`` calls ``load_resume_state`` before it builds
    the data loaders; the patched functions of :mod:`.patches` report to this
    object in that order (:meth:`resumed_at`, :meth:`wrap_train_dataset`,
    :meth:`skip_used_batches`).
    """

    def __init__(self) -> None:
        self.seed = 0
        self.position: ResumePosition | None = None

    def resumed_at(self, epoch: int, iteration: int) -> None:
        self.position = ResumePosition(int(epoch), int(iteration))

    def start_run(self, opt: dict) -> None:
        """Take the run's ``manual_seed`` (the per-sample RNGs' base seed)."""
        self.seed = int(opt.get("manual_seed") or 0)

    def wrap_train_dataset(self, dataset: Any) -> SeededDataset:
        return SeededDataset(dataset, self.seed)

    def skip_used_batches(self, train_loader: Any, sampler: Any, log: Any) -> None:
        """Make ``sampler`` leave out the batches of the interrupted epoch already used (once)."""
        position, self.position = self.position, None
        if train_loader is None or position is None or not hasattr(sampler, "skip"):
            return
        per_epoch = len(train_loader)
        done = position.iter - position.epoch * per_epoch
        if 0 <= done <= per_epoch:
            sampler.resume_epoch, sampler.skip = position.epoch, done * train_loader.batch_size
            log.info(f"Resume: skipping the {done} batches of epoch {position.epoch} already used.")
        else:
            log.warning(
                f"Resume: iteration {position.iter} is not inside epoch {position.epoch} of "
                f"{per_epoch} iterations (dataset or batch size changed?); the epoch restarts."
            )


def rng_state() -> dict:
    """RNG states as tensors and plain containers (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
