"""``--launcher pytorch`` / ``slurm`` set-up that also works without CUDA (BasicSR's ``init_dist`` replaced).

BasicSR 1.4.2 calls ``torch.cuda.set_device`` unconditionally; here a CPU-only
run uses gloo, and ``--launcher pytorch`` outside ``torchrun`` is one line.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import ConfigError


def init_dist(launcher: str, backend: str | None = None, **kwargs: Any) -> None:
    """BasicSR's ``init_dist`` that also works without CUDA (gloo on CPU)."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method("spawn")
    cuda = torch.cuda.is_available() and torch.cuda.device_count() > 0
    if launcher == "pytorch":
        missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing and "init_method" not in kwargs:
            raise ConfigError(
                f"--launcher pytorch: {', '.join(missing)} not set; start the run with torchrun, e.g. "
                "torchrun --nproc_per_node=2 -m imdn_plugin train -opt FILE --launcher pytorch "
                "(or drop --launcher for one process)"
            )
        if cuda:
            local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dist.init_process_group(backend=backend or ("nccl" if cuda else "gloo"), **kwargs)
    elif launcher == "slurm":
        if not cuda:
            raise ConfigError("--launcher slurm: needs CUDA devices; on CPU use torchrun with --launcher pytorch")
        from basicsr.utils.dist_util import _init_dist_slurm

        _init_dist_slurm(backend or "nccl", **kwargs)
    else:
        raise ConfigError(f"--launcher: unknown launcher '{launcher}' (none, pytorch, slurm)")
