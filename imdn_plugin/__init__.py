"""imdn-plugin: the IMDN family of lightweight SR networks for BasicSR.

Importing this package is cheap (no torch, no BasicSR): it only makes sure that
BasicSR 1.4.2 can be imported with current torchvision.  The networks live in
:mod:`imdn_plugin.archs`, BasicSR registration in :mod:`imdn_plugin.integration`
(:func:`imdn_plugin.register`); :class:`imdn_plugin.Upscaler` turns a checkpoint into an
image function.
"""
from typing import Any

from ._compat import install_torchvision_alias
from .version import __version__

install_torchvision_alias()


def __getattr__(name: str) -> Any:
    if name == "Upscaler":  # lazily: it imports torch
        from .upscaler import Upscaler

        return Upscaler
    raise AttributeError(name)


def register() -> None:
    """Register the plugin's networks, model and datasets into BasicSR (idempotent)."""
    from .integration import register as _register

    _register()


__all__ = ["Upscaler", "__version__", "register"]
