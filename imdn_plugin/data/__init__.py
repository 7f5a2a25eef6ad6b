"""Image data without BasicSR: reading/encoding images, resizing, LMDBs, DIV2K preparation.

* :mod:`.imageio` — every image read and PNG written by the plugin.
* :mod:`.resize` — MATLAB-compatible bicubic resizing.
* :mod:`.lmdb` — BasicSR-format LMDBs: atomic writer, verifier, readers.
* :mod:`.div2k` — DIV2K-style folders to sub-image LMDBs.

The BasicSR dataset :class:`AnyScalePairedDataset` lives in
:mod:`imdn_plugin.integration.datasets`.
"""
