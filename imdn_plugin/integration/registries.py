"""BasicSR's registries: registering the plugin's classes once, and looking names up.

No import of BasicSR at module level: the lookups import it when called.
"""
from __future__ import annotations

from typing import Any


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


class BasicSRRegistry:
    """BasicSR's registries for the option schema (:class:`imdn_plugin.options.Registry`)."""

    def names(self, kind: str) -> list[str]:
        return registered(kind)

    def get(self, kind: str, name: str) -> Any:
        return lookup(kind, name)


BASICSR = BasicSRRegistry()
