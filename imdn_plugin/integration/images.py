"""Image reading and writing inside BasicSR's datasets and validation, through :mod:`imdn_plugin.data.imageio`.

Replaces ``imfrombytes`` / ``FileClient`` of ``PairedImageDataset`` (grayscale,
RGBA, palette and 16-bit files; an unreadable file named) and the ``imwrite`` of
``SRModel.nondist_validation`` (atomic; a failed write is one line).
"""
from __future__ import annotations

import os.path as osp
from typing import Any

import numpy as np

from ..errors import ImageReadError, WorkFailedError


class _NamedBytes(bytes):
    """Encoded image bytes that remember where they came from."""

    source: str = "image"


def naming_file_client(file_client: type) -> type:
    """BasicSR's ``FileClient`` subclassed so that ``get`` results carry their file path / LMDB key."""

    class NamingFileClient(file_client):  # type: ignore[misc, valid-type]
        """BasicSR's ``FileClient`` whose ``get`` result carries the file path / LMDB key."""

        def get(self, filepath: Any, client_key: str = "default") -> bytes:
            where = f"{filepath}" if self.backend != "lmdb" else f"{client_key} LMDB key '{filepath}'"
            try:
                data = super().get(filepath, client_key)
            except OSError as exc:
                raise ImageReadError(f"{where}: cannot read file ({exc.strerror or exc})") from None
            if data is None:
                raise ImageReadError(f"{where}: not found")
            named = _NamedBytes(data)
            named.source = where
            return named

    return NamingFileClient


def imfrombytes(content: bytes, flag: str = "color", float32: bool = False) -> np.ndarray:
    """BasicSR's ``imfrombytes`` on :func:`imdn_plugin.data.imageio.decode` (BGR, 3 channels)."""
    from ..data.imageio import decode, notice

    source = getattr(content, "source", "image")
    decoded = decode(content, source)
    if decoded.alpha is not None:
        notice(source, "alpha", "alpha channel dropped (BasicSR's datasets and metrics use BGR)")
    img = decoded.bgr
    if flag == "grayscale":
        img = img.mean(axis=2)
    return img if float32 else (img * 255.0).round().astype(np.uint8)


def imwrite(img: np.ndarray, file_path: str, params: Any = None, auto_mkdir: bool = True) -> None:
    """BasicSR's ``imwrite`` (used by ``SRModel.nondist_validation``), atomic; a failed write is
    :class:`~imdn_plugin.errors.WorkFailedError` naming the file (a full disk: one line)."""
    from ..data.imageio import write_image_atomic

    if not auto_mkdir and not osp.isdir(osp.dirname(osp.abspath(file_path))):
        raise WorkFailedError(f"{file_path}: cannot write image (its folder does not exist)")
    try:
        write_image_atomic(file_path, img, params)
    except OSError as exc:
        raise WorkFailedError(
            f"{file_path}: cannot write image ({exc.strerror or exc}); nothing was written under that name, "
            "the images written before it are kept"
        ) from None
