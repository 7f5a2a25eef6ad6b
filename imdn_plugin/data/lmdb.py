"""BasicSR-format LMDBs of PNG images: an atomic writer, a verifier and readers.

The layout is BasicSR's (``basicsr.utils.lmdb_util``): a ``<name>.lmdb`` folder
with ``data.mdb``, ``lock.mdb`` and ``meta_info.txt`` (one line
``<key>.png (h,w,c) <compress_level>`` per image); values are PNG bytes, keys
ASCII image keys.  What :class:`LmdbWriter` writes is read back and checked
before it is moved into place.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Mapping, Union

import lmdb
import numpy as np
from tqdm import tqdm

from ..errors import ImageReadError
from .imageio import (
    DEFAULT_COMPRESS_LEVEL,
    PNG_IEND,
    PNG_SIGNATURE,
    imdecode,
    png_bytes,
)

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_TMP_RE = re.compile(r"\.(?:tmp|old)-(\d+)$")


def check_key(key: str, source: PathLike | None = None) -> None:
    # BasicSR splits meta_info lines at the first '.', and LMDB keys are ASCII.
    if not _KEY_RE.match(key):
        where = f" (from {source})" if source is not None else ""
        raise ValueError(
            f"name {key!r}{where} cannot be an LMDB key: use only ASCII letters, digits, '_' and '-'"
        )



def image_shape(img: np.ndarray) -> tuple[int, int, int]:
    return (img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2])



def _png_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR, or None if ``data`` is not a whole PNG."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    if not data.endswith(PNG_IEND):
        return None
    w, h = struct.unpack(">II", data[16:24])
    return h, w


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def remove_stale_temporaries(target: PathLike) -> None:
    """Remove ``<target>.tmp-<pid>`` / ``.old-<pid>`` left by runs that died (their pid is gone)."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    for p in target.parent.glob(f"{target.name}.*-*"):
        m = _TMP_RE.search(p.name)
        if not m or p.name[: m.start()] != target.name:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and _pid_alive(pid):
            logger.warning("%s: left alone, process %d that may be writing it is still running", p, pid)
            continue
        logger.info("removing stale temporary %s", p)
        shutil.rmtree(p, ignore_errors=True)


class LmdbWriter:
    """Write images into a BasicSR-format LMDB, atomically.

    The result is a directory ``<name>.lmdb`` with ``data.mdb``, ``lock.mdb`` and
    ``meta_info.txt`` (one line ``<key>.png (h,w,c) <compress_level>`` per image,
    in insertion order); values are PNG bytes from :func:`~.imageio.png_bytes`, keys the
    ASCII image keys.  Everything is written into ``<name>.lmdb.tmp-<pid>`` next
    to the target; :meth:`commit` writes ``meta_info.txt`` last, verifies the
    database and renames it into place, so an interrupted run never leaves a
    target that looks finished.  Leaving the ``with`` block without commit (e.g.
    on an exception) deletes the temporary directory.

    Args:
        target: Final path, must end with ``.lmdb``.
        compress_level: PNG compression level (0-9; BasicSR uses 1).
        batch: Images per LMDB transaction.
        map_size: Initial LMDB map size in bytes; doubled whenever it fills up.
        overwrite: Replace an existing target on commit (else it must not exist).
    """

    def __init__(
        self,
        target: PathLike,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        batch: int = 1000,
        map_size: int = 1 << 30,
        overwrite: bool = False,
    ) -> None:
        self.target = Path(target)
        if not self.target.name.endswith(".lmdb"):
            raise ValueError(f"LMDB path must end with '.lmdb': {self.target}")
        if not 0 <= int(compress_level) <= 9:
            raise ValueError(f"PNG compress level must be 0..9, got {compress_level}")
        if self.target.exists() and not overwrite:
            raise FileExistsError(f"{self.target} already exists (use overwrite)")
        self.compress_level = int(compress_level)
        self.batch = max(1, int(batch))
        self.overwrite = overwrite
        self.tmp = self.target.with_name(f"{self.target.name}.tmp-{os.getpid()}")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self._env: lmdb.Environment | None = lmdb.open(str(self.tmp), map_size=int(map_size))
        self._pending: list[tuple[bytes, bytes]] = []
        self._meta: dict[str, tuple[int, int, int]] = {}
        self._done = False

    def __enter__(self) -> "LmdbWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            if exc_type is None:
                logger.warning("%s: writer closed without commit, discarding", self.target)
            self.abort()

    def __len__(self) -> int:
        return len(self._meta)

    def put(self, key: str, img: np.ndarray) -> None:
        """Encode ``img`` (uint8, H×W or H×W×C) as PNG and store it under ``key``."""
        self.put_encoded(key, png_bytes(img, self.compress_level), image_shape(img))

    def put_encoded(self, key: str, data: bytes, shape: tuple[int, int, int]) -> None:
        """Store already PNG-encoded bytes (made with this writer's compress level)."""
        if self._done:
            raise RuntimeError("LmdbWriter already committed or aborted")
        check_key(key)
        if key in self._meta:
            raise ValueError(f"duplicate key {key!r} in {self.target}")
        self._meta[key] = tuple(int(v) for v in shape)  # type: ignore[assignment]
        self._pending.append((key.encode("ascii"), bytes(data)))
        if len(self._pending) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        assert self._env is not None
        while self._pending:
            try:
                with self._env.begin(write=True) as txn:
                    for k, v in self._pending:
                        txn.put(k, v)
            except lmdb.MapFullError:
                new_size = self._env.info()["map_size"] * 2
                logger.debug("%s: growing LMDB map to %d bytes", self.tmp, new_size)
                self._env.set_mapsize(new_size)
                continue
            self._pending.clear()

    def commit(self, extra_files: Mapping[str, str] | None = None) -> Path:
        """Flush, write ``meta_info.txt`` (+ ``extra_files``), verify and move into place."""
        if self._done:
            raise RuntimeError("LmdbWriter already committed or aborted")
        if not self._meta:
            raise ValueError(f"no images to write into {self.target}")
        self._flush()
        assert self._env is not None
        self._env.sync(True)
        self._env.close()
        self._env = None
        for name, text in (extra_files or {}).items():
            (self.tmp / name).write_text(text, encoding="utf-8")
        lines = "".join(f"{k}.png ({h},{w},{c}) {self.compress_level}\n" for k, (h, w, c) in self._meta.items())
        (self.tmp / "meta_info.txt").write_text(lines, encoding="ascii")
        _verify_lmdb(self.tmp, self._meta)
        old = None
        if self.target.exists():
            if not self.overwrite:
                raise FileExistsError(f"{self.target} appeared while writing; not replaced")
            old = self.target.with_name(f"{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
        os.replace(self.tmp, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._done = True
        logger.info("wrote %s (%d images)", self.target, len(self._meta))
        return self.target

    def abort(self) -> None:
        """Discard everything written so far (removes the temporary directory)."""
        if self._env is not None:
            self._env.close()
            self._env = None
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True


def _verify_lmdb(path: Path, expected: Mapping[str, tuple[int, int, int]]) -> None:
    """Check that the LMDB at ``path`` holds exactly ``expected``'s keys, each a whole PNG of that size."""
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False)
    try:
        if env.stat()["entries"] != len(expected):
            raise RuntimeError(f"{path}: {env.stat()['entries']} entries, expected {len(expected)}")
        with env.begin() as txn:
            for key, (h, w, _c) in expected.items():
                value = txn.get(key.encode("ascii"))
                if value is None:
                    raise RuntimeError(f"{path}: key {key} missing after write")
                if _png_size(value) != (h, w):
                    raise RuntimeError(f"{path}: value of {key} is not a whole {h}x{w} PNG")
    finally:
        env.close()
    meta = read_meta_info(path)
    if meta != dict(expected):
        raise RuntimeError(f"{path}: meta_info.txt does not match the written images")


def read_meta_info(lmdb_path: PathLike) -> dict[str, tuple[int, int, int]]:
    """``{key: (h, w, c)}`` from an LMDB's ``meta_info.txt`` (BasicSR format)."""
    meta_file = Path(lmdb_path) / "meta_info.txt"
    if not meta_file.is_file():
        raise ValueError(f"{lmdb_path}: no meta_info.txt, not a complete BasicSR LMDB")
    out: dict[str, tuple[int, int, int]] = {}
    for n, line in enumerate(meta_file.read_text(encoding="ascii").splitlines(), start=1):
        if not line.strip():
            continue
        m = re.fullmatch(r"\s*([^.\s]+)\.\S*\s+\((\d+),\s*(\d+),\s*(\d+)\)(?:\s+\d+)?\s*", line)
        if not m:
            raise ValueError(f"{meta_file}:{n}: malformed line {line!r}")
        out[m.group(1)] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    return out


def read_lmdb_image(lmdb_path: PathLike, key: str) -> np.ndarray:
    """Decode one stored image (``cv2.IMREAD_UNCHANGED``) - for checks and tests."""
    env = lmdb.open(str(lmdb_path), readonly=True, lock=False, readahead=False)
    try:
        with env.begin() as txn:
            value = txn.get(key.encode("ascii"))
    finally:
        env.close()
    if value is None:
        raise KeyError(f"{key} not in {lmdb_path}")
    try:
        return imdecode(np.frombuffer(value, np.uint8))
    except ImageReadError as exc:
        raise ImageReadError(f"{lmdb_path}: key {key}: cannot decode image ({exc})") from None


def lmdb_is_complete(lmdb_path: PathLike) -> bool:
    """True if ``lmdb_path`` has data.mdb and a meta_info.txt listing exactly its entries."""
    path = Path(lmdb_path)
    if not (path / "data.mdb").is_file() or not (path / "meta_info.txt").is_file():
        return False
    try:
        meta = read_meta_info(path)
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False)
        try:
            entries = env.stat()["entries"]
        finally:
            env.close()
    except (ValueError, lmdb.Error):
        return False
    return entries == len(meta) > 0


def export_lmdb_to_folder(lmdb_path: PathLike, folder: PathLike, progress: bool = True) -> int:
    """Write every stored value as ``<folder>/<key>.png`` (the very same PNG bytes); returns the count."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(read_meta_info(lmdb_path))
    env = lmdb.open(str(lmdb_path), readonly=True, lock=False, readahead=False)
    try:
        with env.begin() as txn:
            for key in tqdm(keys, desc=f"export {Path(lmdb_path).name}", unit="img", disable=not progress):
                (folder / f"{key}.png").write_bytes(txn.get(key.encode("ascii")))
    finally:
        env.close()
    return len(keys)


def validate_pairs(
    hr_meta: Mapping[str, tuple[int, ...]],
    lr_meta: Mapping[str, tuple[int, ...]],
    scale: int,
    hr_name: str = "HR",
    lr_name: str = "LR",
) -> None:
    """Check that the key sets are equal and every HR size is ``scale ×`` its LR size.

    Raises:
        ValueError: naming the first offending key (and both sizes).
    """
    only_lr = sorted(set(lr_meta) - set(hr_meta))
    if only_lr:
        raise ValueError(f"LR key {only_lr[0]} in {lr_name} has no HR counterpart in {hr_name}"
                         + (f" (and {len(only_lr) - 1} more)" if len(only_lr) > 1 else ""))
    only_hr = sorted(set(hr_meta) - set(lr_meta))
    if only_hr:
        raise ValueError(f"HR key {only_hr[0]} in {hr_name} has no LR counterpart in {lr_name}"
                         + (f" (and {len(only_hr) - 1} more)" if len(only_hr) > 1 else ""))
    for key in sorted(hr_meta):
        hh, hw = hr_meta[key][:2]
        lh, lw = lr_meta[key][:2]
        if (hh, hw) != (lh * scale, lw * scale):
            raise ValueError(
                f"{key}: HR size {hh}x{hw} ({hr_name}) is not {scale} x LR size {lh}x{lw} ({lr_name})"
            )


def validate_lmdb_pair(hr_lmdb: PathLike, lr_lmdb: PathLike, scale: int) -> int:
    """:func:`validate_pairs` on two LMDBs' ``meta_info.txt``; returns the number of pairs."""
    hr_meta, lr_meta = read_meta_info(hr_lmdb), read_meta_info(lr_lmdb)
    validate_pairs(hr_meta, lr_meta, scale, str(hr_lmdb), str(lr_lmdb))
    return len(hr_meta)
