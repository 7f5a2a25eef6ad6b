"""Image data without BasicSR: reading/encoding images, resizing, LMDBs, DIV2K preparation.

* :mod:`.imageio` — every image read and PNG written by the plugin.
* :mod:`.resize` — MATLAB-compatible bicubic resizing.
* :mod:`.lmdb` — BasicSR-format LMDBs: atomic writer, verifier, readers.
* :mod:`.div2k` — DIV2K-style folders to sub-image LMDBs.

The BasicSR dataset :class:`AnyScalePairedDataset` lives in
:mod:`imdn_plugin.integration.datasets` (it is still importable from here).
"""
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "AnyScalePairedDataset":  # the old import path; needs BasicSR
        from ..integration.datasets import AnyScalePairedDataset

        return AnyScalePairedDataset
    raise AttributeError(name)
