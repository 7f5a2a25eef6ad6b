"""Make BasicSR 1.4.2 importable with current torchvision.

BasicSR 1.4.2 (``basicsr/data/degradations.py``) imports
``torchvision.transforms.functional_tensor``, a private module that torchvision
0.17 renamed to ``torchvision.transforms._functional_tensor``.  Instead of editing
site-packages we install a tiny meta-path finder that answers the old name with
the new module, and only when the old name is really asked for.  It imports
nothing heavy itself, so it is cheap enough to run at interpreter start (the
``imdn_plugin_compat.pth`` file installed next to the package does that).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

_OLD = "torchvision.transforms.functional_tensor"
_NEW = "torchvision.transforms._functional_tensor"


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return importlib.import_module(_NEW)

    def exec_module(self, module: ModuleType) -> None:
        # The module object is the already executed new module.
        return None


class _TorchvisionAliasFinder(importlib.abc.MetaPathFinder):
    """Resolve the removed torchvision module name to its renamed successor."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _OLD:
            return None
        # Appended last to sys.meta_path: every regular finder has already
        # declined, so the old module really is absent from this torchvision.
        if importlib.util.find_spec(_NEW) is None:  # very old or very new torchvision
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader())


def install_torchvision_alias() -> None:
    """Install the alias finder once (idempotent, import-free)."""
    if not any(isinstance(f, _TorchvisionAliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_TorchvisionAliasFinder())
