"""Every contact with BasicSR: registration, pipeline patches, the model, the dataset.

* :func:`register` (this package's ``basicsr.plugins`` entry point,
  ``imdn_plugin.integration:register``) puts the networks, the model and the
  datasets into BasicSR's registries — idempotently — and applies the pipeline
  patches.
* :mod:`.registries` — registering once, looking names up.
* :mod:`.patches` — the wiring of every in-memory replacement of a BasicSR function;
  the replacements: :mod:`.parse` (option files), :mod:`.distributed`,
  :mod:`.run_folders` (one run per folder, resume), :mod:`.images`,
  :mod:`.exact_resume` (seeding, RNG state, the resume position), :mod:`.progress`.
* :mod:`.model` — :class:`IMDNModel`.
* :mod:`.datasets` — :class:`AnyScalePairedDataset`.
"""
from __future__ import annotations

from .registries import register_once


def register() -> None:
    """Register IMDN, IMDN_AS, IMDN_RTC, IMDN_RTE, CCALayer, IMDNModel and the datasets; patch the pipelines.

    Safe to call any number of times, from the command and from user code.
    """
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY

    from ..archs import IMDN, IMDN_AS, IMDN_RTC, IMDN_RTE, CCALayer
    from .datasets import AnyScalePairedDataset
    from .model import IMDNModel
    from .patches import patch_pipelines

    for registry, obj in (
        (ARCH_REGISTRY, IMDN),
        (ARCH_REGISTRY, IMDN_AS),
        (ARCH_REGISTRY, IMDN_RTC),
        (ARCH_REGISTRY, IMDN_RTE),
        (ARCH_REGISTRY, CCALayer),
        (MODEL_REGISTRY, IMDNModel),
        (DATASET_REGISTRY, AnyScalePairedDataset),
    ):
        register_once(registry, obj)
    patch_pipelines()
