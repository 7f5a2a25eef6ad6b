"""Every contact with BasicSR: registration, pipeline patches, the model, the dataset.

* :func:`register` (this package's ``basicsr.plugins`` entry point,
  ``imdn_plugin.integration:register``) puts the networks, the model and the
  datasets into BasicSR's registries — idempotently — and applies the pipeline
  patches.
* :mod:`.patches` — every in-memory replacement of a BasicSR function, in one place.
* :mod:`.exact_resume` — seeding, RNG state and the resume position.
* :mod:`.model` — :class:`IMDNModel`.
* :mod:`.datasets` — :class:`AnyScalePairedDataset`.
"""
from __future__ import annotations

from typing import Any


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


def register_once(registry: Any, obj: type) -> None:
    """Register ``obj`` under its name unless that very class (or its reloaded twin) is there."""
    name = obj.__name__
    if name not in registry:
        registry.register(obj)
        return
    existing = registry._obj_map[name]  # BasicSR's Registry has no public getter that does not print
    if existing is obj:
        return
    if (existing.__module__, existing.__qualname__) == (obj.__module__, obj.__qualname__):
        registry._obj_map[name] = obj  # the same class from a reloaded module
        return
    raise RuntimeError(
        f"BasicSR's {registry._name} registry already holds a different '{name}' "
        f"(from {existing.__module__}); remove one of the two plugins"
    )


def lookup(registry_name: str, name: str) -> type:
    """The class registered as ``name`` in BasicSR's ``ARCH``/``MODEL``/``DATASET`` registry (KeyError if none)."""
    import basicsr.utils.registry as reg

    registry = getattr(reg, f"{registry_name}_REGISTRY")
    if name not in registry:
        raise KeyError(name)
    return registry._obj_map[name]


def registered(registry_name: str) -> list[str]:
    """The names in BasicSR's ``ARCH``/``MODEL``/``DATASET`` registry (BasicSR's own modules imported)."""
    import basicsr.archs  # importing the packages fills the registries
    import basicsr.data
    import basicsr.models  # noqa: F401
    import basicsr.utils.registry as reg

    return sorted(getattr(reg, f"{registry_name}_REGISTRY")._obj_map)


def lookup_arch(name: str) -> type:
    """The network class registered as ``name`` (KeyError if none)."""
    return lookup("ARCH", name)
