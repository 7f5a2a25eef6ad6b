"""Whole-image feature maps kept outside the forward's working memory.

:func:`.global_tiling.global_tiled_forward` streams an IMDN through the image
one stage at a time; between stages it keeps a few full-size feature maps
(``num_feat`` channels at the trunk's resolution: 614 MB each in fp32 for a
1200×2001 IMDN ×4 input).  Kept in RAM they would cost more than the
whole-image forward that tiling is meant to avoid, so on a CPU they go to an
unlinked temporary file (the kernel's page cache keeps them in otherwise free
memory, which is not the process's: it is given back under pressure).  On a GPU
they are kept in host memory when it has room.

Maps are stored pixel-major (``H×W×C``): a region of rows is one read per row,
and what a read returns is a channels-last ``1×C×h×w`` tensor without a copy.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import BinaryIO

import torch
from torch import Tensor

from ..errors import InferenceError
from ..machine import available_bytes

logger = logging.getLogger(__name__)

#: Extra free space asked of the temporary folder beyond the maps themselves.
DISK_MARGIN = 256 * 2**20


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e9:.1f} GB" if num_bytes >= 1e9 else f"{num_bytes / 1e6:.0f} MB"


class FeatureStore:
    """A ``C×H×W`` map of one dtype, written and read by rectangular regions.

    Args:
        channels, height, width: Map size.
        dtype: Element type (what the stage that fills it produced).
        file: An open unbuffered binary file to hold it, or None for host memory.
    """

    def __init__(self, channels: int, height: int, width: int, dtype: torch.dtype, file: BinaryIO | None) -> None:
        self.shape = (channels, height, width)
        self.dtype = dtype
        self._file = file
        self._item = torch.empty((), dtype=dtype).element_size()
        self._row_bytes = width * channels * self._item
        self._memory = None if file is not None else torch.empty((height, width, channels), dtype=dtype)
        if file is not None:
            file.truncate(height * self._row_bytes)

    def _offset(self, row: int, col: int) -> int:
        return row * self._row_bytes + col * self.shape[0] * self._item

    def read(self, r0: int, r1: int, c0: int, c1: int, device: torch.device) -> Tensor:
        """Rows ``[r0, r1)``, columns ``[c0, c1)`` as a channels-last ``1×C×h×w`` tensor on ``device``."""
        if self._memory is not None:  # a copy: stages may work in place on what they are given
            hwc = self._memory[r0:r1, c0:c1]
            hwc = hwc.clone() if device.type == "cpu" else hwc
        else:
            assert self._file is not None
            hwc = torch.empty((r1 - r0, c1 - c0, self.shape[0]), dtype=self.dtype)
            raw = hwc.view(torch.uint8).numpy()
            if c0 == 0 and c1 == self.shape[2]:  # whole rows: one contiguous read
                self._read_into(self._offset(r0, 0), raw.reshape(-1))
            else:
                for i in range(r1 - r0):
                    self._read_into(self._offset(r0 + i, c0), raw[i].reshape(-1))
        return hwc.to(device, non_blocking=False).permute(2, 0, 1).unsqueeze(0)

    def _read_into(self, offset: int, buf) -> None:
        assert self._file is not None
        self._file.seek(offset)
        view, done = memoryview(buf), 0
        while done < len(view):
            got = self._file.readinto(view[done:])
            if not got:
                raise InferenceError(f"feature store: short read from the temporary file at byte {offset + done}")
            done += got

    def write(self, r0: int, c0: int, region: Tensor) -> None:
        """Store the ``1×C×h×w`` (or ``C×h×w``) tensor ``region`` with its top-left corner at ``(r0, c0)``."""
        chw = region[0] if region.dim() == 4 else region
        hwc = chw.permute(1, 2, 0).to("cpu", self.dtype).contiguous()
        h, w, _ = hwc.shape
        if self._memory is not None:
            self._memory[r0 : r0 + h, c0 : c0 + w] = hwc
            return
        assert self._file is not None
        raw = hwc.view(torch.uint8).numpy()
        if c0 == 0 and w == self.shape[2]:
            self._write_from(self._offset(r0, 0), raw.reshape(-1))
        else:
            for i in range(h):
                self._write_from(self._offset(r0 + i, c0), raw[i].reshape(-1))

    def _write_from(self, offset: int, buf) -> None:
        assert self._file is not None
        self._file.seek(offset)
        view, done = memoryview(buf), 0
        while done < len(view):
            done += self._file.write(view[done:])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._memory = None


class FeatureStores:
    """Where :func:`.global_tiling.global_tiled_forward` keeps its whole-image maps.

    Args:
        device: Device of the forward: on CUDA the maps stay in host memory when
            they take at most half of what is available, else they go to a file.
        directory: Folder of the temporary file (default: ``tempfile.gettempdir()``,
            i.e. ``$TMPDIR``).
    """

    def __init__(self, device: torch.device, directory: str | None = None) -> None:
        self.device = device
        self.directory = directory or tempfile.gettempdir()
        wanted = os.environ.get("TMPDIR")
        if directory is None and wanted and os.path.realpath(wanted) != os.path.realpath(self.directory):
            logger.warning("TMPDIR=%s is not a writable folder: the tiles' feature maps go to %s", wanted, self.directory)
        self._open: list[FeatureStore] = []
        self.in_memory: bool | None = None

    def plan(self, total_bytes: int) -> None:
        """Choose memory or disk for maps of ``total_bytes`` together; a full disk is an error, said up front."""
        if self.device.type != "cpu":
            have = available_bytes(torch.device("cpu"))
            if have is not None and total_bytes <= have // 2:
                self.in_memory = True
                return
        self.in_memory = False
        free = shutil.disk_usage(self.directory).free
        if total_bytes + DISK_MARGIN > free:
            raise InferenceError(
                f"tiling with whole-image CCA statistics needs {_size(total_bytes + DISK_MARGIN)} of temporary space "
                f"in {self.directory} ({_size(free)} free): set TMPDIR to a folder with room, or use "
                "tile_stats: local (--tile-stats local)"
            )
        logger.debug("global tiling: %.2f GB of feature maps in temporary files in %s", total_bytes / 1e9, self.directory)

    def new(self, channels: int, height: int, width: int, dtype: torch.dtype) -> FeatureStore:
        assert self.in_memory is not None, "plan() first"
        file = None
        if not self.in_memory:
            file = tempfile.TemporaryFile(dir=self.directory, prefix="imdn-features-", buffering=0)
        store = FeatureStore(channels, height, width, dtype, file)  # type: ignore[arg-type]
        self._open.append(store)
        return store

    def close(self) -> None:
        for store in self._open:
            store.close()
        self._open.clear()

    def __enter__(self) -> FeatureStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["FeatureStore", "FeatureStores"]
