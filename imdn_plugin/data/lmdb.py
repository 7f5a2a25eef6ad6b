"""BasicSR-format LMDBs of PNG images: an atomic writer, a verifier and readers.

The layout is BasicSR's (``basicsr.utils.lmdb_util``): a ``<name>.lmdb`` folder
with ``data.mdb``, ``lock.mdb`` and ``meta_info.txt`` (one line
``<key>.png (h,w,c) <compress_level>`` per image); values are PNG bytes, keys
ASCII image keys.  What :class:`LmdbWriter` writes is read back and checked
before it is moved into place.

An LMDB is verified, not trusted:

* :class:`LmdbWriter` records in ``imdn_manifest.json`` the size of
  ``data.mdb`` and the CRC-32 of every value; :func:`verify_lmdb` reads
  everything back against it (a rerun of the preparation does this).
* :func:`check_lmdb_keys` (training start-up) checks that ``data.mdb`` is as
  long as its own header says and that every ``meta_info.txt`` key is stored,
  walking the keys only.  The length check comes first: LMDB memory-maps the
  file, and touching a page past the end of a truncated file kills the process
  with SIGBUS, no message.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Union

import lmdb
import numpy as np
from tqdm import tqdm

from ..atomic import pid_alive
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

#: Written by :class:`LmdbWriter` beside ``data.mdb``: what was written (ignored by BasicSR).
MANIFEST_NAME = "imdn_manifest.json"
#: The hint of every "rebuild it" message.
REBUILD_HINT = "rebuild it (scripts/prepare_div2k.py --overwrite)"

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_META_LINE_RE = re.compile(r"\s*([^.\s]+)\.\S*\s+\((\d+),\s*(\d+),\s*(\d+)\)(?:\s+\d+)?\s*")
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
        if pid != os.getpid() and pid_alive(pid):
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
        self._crc: dict[str, int] = {}
        self._done = False

    def __enter__(self) -> LmdbWriter:
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
        self._crc[key] = zlib.crc32(data)
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
        manifest = {"format": 1, "data_mdb_bytes": (self.tmp / "data.mdb").stat().st_size,
                    "entries": len(self._meta), "crc32": self._crc}
        (self.tmp / MANIFEST_NAME).write_text(json.dumps(manifest) + "\n", encoding="ascii")
        if read_meta_info(self.tmp) != self._meta:
            raise RuntimeError(f"{self.tmp}: meta_info.txt does not match the written images")
        try:
            verify_lmdb(self.tmp)
        except ValueError as exc:
            raise RuntimeError(f"read-back after write failed: {exc}") from None
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


def _open_checked(path: Path) -> lmdb.Environment:
    """Open ``path`` read-only (as BasicSR does) after checking ``data.mdb`` holds every page its header names.

    Raises:
        ValueError: not an LMDB, or ``data.mdb`` shorter than the database
            (truncated), naming the sizes; nothing past the end is touched.
    """
    data = path / "data.mdb"
    try:
        size = data.stat().st_size
    except OSError as exc:
        raise ValueError(f"{path}: cannot read data.mdb ({exc.strerror or exc}); {REBUILD_HINT}") from None
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False)
    except lmdb.Error as exc:
        if "already open" in str(exc):
            raise
        raise ValueError(
            f"{path}: data.mdb ({size} bytes{_written_size(path)}) is not a readable LMDB "
            f"({str(exc).split(': ', 1)[-1]}); {REBUILD_HINT}"
        ) from None
    # Only the two header pages have been read (with pread); the rest is mapped, not touched yet.
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if size < needed:
        env.close()
        raise ValueError(
            f"{path}: data.mdb is truncated: {size} bytes{_written_size(path)}, the database needs {needed}; "
            f"{REBUILD_HINT}"
        )
    return env


def _written_size(path: Path) -> str:
    manifest = _read_manifest(path, quiet=True)
    if manifest and isinstance(manifest.get("data_mdb_bytes"), int):
        return f", {manifest['data_mdb_bytes']} when written"
    return ""


def _read_manifest(path: Path, quiet: bool = False) -> dict | None:
    """The writer's manifest, None when absent; ValueError when unreadable (unless ``quiet``)."""
    file = path / MANIFEST_NAME
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text(encoding="ascii"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("crc32"), dict):
            raise ValueError("no crc32 table")
    except (OSError, ValueError) as exc:
        if quiet:
            return None
        raise ValueError(f"{file}: unreadable ({exc}); {REBUILD_HINT}") from None
    return manifest


def check_lmdb_keys(lmdb_path: PathLike, keys: Iterable[str] | None = None) -> int:
    """Check that ``data.mdb`` is whole and holds every key of ``meta_info.txt`` (or ``keys``).

    Cheap enough for every training start: the size check reads the two
    header pages, the key walk reads the tree's branch and leaf pages but no
    value (0.04-0.17 s for 32,000 keys, DIV2K's sub-image count, on a shared
    2-core machine) but the first 24 bytes of each (the PNG header, one page),
    whose image size must be the one ``meta_info.txt`` gives.  The keys are
    those BasicSR will read (:func:`basicsr_keys`); an empty ``meta_info.txt``
    is refused.  Returns the number of keys checked.

    Raises:
        ValueError: naming the LMDB and the first missing key or wrong-sized value.
    """
    path = Path(lmdb_path)
    wanted = list(basicsr_keys(path) if keys is None else keys)
    if not wanted:
        raise ValueError(f"{path}: meta_info.txt lists no images (empty file); {REBUILD_HINT}")
    shapes = _meta_shapes(path) if keys is None else {}
    env = _open_checked(path)
    try:
        with env.begin(buffers=True) as txn:
            stored = set()
            for key, value in txn.cursor().iternext(keys=True, values=True):
                stored.add(bytes(key))
                expected = shapes.get(bytes(key))
                if expected is not None:
                    _check_value_size(path, bytes(key), value, expected)
    finally:
        env.close()
    missing = [k for k in wanted if k.encode("utf-8", "replace") not in stored]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(
            f"{path}: key {missing[0]!r} listed in meta_info.txt is not in data.mdb{more}; {REBUILD_HINT}"
        )
    return len(wanted)


def _meta_shapes(path: Path) -> dict[bytes, tuple[int, int]]:
    """``{key: (h, w)}`` of the ``meta_info.txt`` lines that give a shape (BasicSR's format)."""
    out: dict[bytes, tuple[int, int]] = {}
    try:
        text = (path / "meta_info.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = _META_LINE_RE.fullmatch(line.strip())
        if m:
            out[m.group(1).encode("utf-8", "replace")] = (int(m.group(2)), int(m.group(3)))
    return out


def _check_value_size(path: Path, key: bytes, value: memoryview, expected: tuple[int, int]) -> None:
    """A PNG value's header size must be the ``meta_info.txt`` size (only its first page is read)."""
    head = bytes(value[:24])
    if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return  # not a PNG (BasicSR also stores JPEG): the decoder judges it when it is read
    w, h = struct.unpack(">II", head[16:24])
    if (h, w) != expected:
        raise ValueError(
            f"{path}: the value of key {key.decode('utf-8', 'replace')!r} is a {h}x{w} image, meta_info.txt says "
            f"{expected[0]}x{expected[1]}; {REBUILD_HINT}"
        )


def basicsr_keys(lmdb_path: PathLike) -> list[str]:
    """The keys BasicSR will read: ``line.split('.')[0]`` of every ``meta_info.txt`` line, as
    ``basicsr.data.data_util.paired_paths_from_lmdb`` derives them."""
    meta_file = Path(lmdb_path) / "meta_info.txt"
    try:
        with open(meta_file, encoding="utf-8", errors="replace") as fin:
            return [line.split(".")[0] for line in fin]
    except OSError as exc:
        raise ValueError(f"{meta_file}: cannot read ({exc.strerror or exc})") from None


def _png_size_of(value: memoryview) -> tuple[int, int] | None:
    """:func:`_png_size` of a value without copying it whole (head and tail suffice)."""
    if len(value) < 45:
        return _png_size(bytes(value))
    return _png_size(bytes(value[:33]) + bytes(value[-12:]))


def verify_lmdb(lmdb_path: PathLike, progress: bool = False) -> int:
    """Read back every value of an LMDB and check it against ``meta_info.txt`` and the manifest.

    Each value must be a whole PNG of its ``meta_info.txt`` size and, when the
    LMDB has :class:`LmdbWriter`'s manifest (older ones have none: a warning),
    have the recorded CRC-32, with the recorded number of entries.  Returns the
    number of values read.

    Raises:
        ValueError: one line naming the LMDB and the first bad key.
    """
    path = Path(lmdb_path)
    meta = read_meta_info(path)
    if not meta:
        raise ValueError(f"{path}: meta_info.txt lists no images; {REBUILD_HINT}")
    manifest = _read_manifest(path)
    if manifest is None:
        logger.warning("%s: no %s (made by an older version?): values checked as PNGs only", path, MANIFEST_NAME)
    else:
        crc = manifest["crc32"]
        if list(crc) != list(meta):
            raise ValueError(f"{path}: meta_info.txt does not list the keys that were written; {REBUILD_HINT}")
    env = _open_checked(path)
    try:
        entries = env.stat()["entries"]
        if entries != len(meta):
            raise ValueError(f"{path}: data.mdb holds {entries} entries, meta_info.txt lists {len(meta)}; {REBUILD_HINT}")
        with env.begin(buffers=True) as txn:
            for key, (h, w, _c) in tqdm(meta.items(), desc=f"verify {path.name}", unit="img", disable=not progress):
                value = txn.get(key.encode("ascii"))
                if value is None:
                    raise ValueError(f"{path}: key '{key}' listed in meta_info.txt is not in data.mdb; {REBUILD_HINT}")
                if manifest is not None and zlib.crc32(value) != crc[key]:
                    raise ValueError(f"{path}: the value of key '{key}' was altered after it was written "
                                     f"(CRC-32 differs); {REBUILD_HINT}")
                if _png_size_of(value) != (h, w):
                    raise ValueError(f"{path}: the value of key '{key}' is not a whole {h}x{w} PNG; {REBUILD_HINT}")
    finally:
        env.close()
    return len(meta)


def read_meta_info(lmdb_path: PathLike) -> dict[str, tuple[int, int, int]]:
    """``{key: (h, w, c)}`` from an LMDB's ``meta_info.txt`` (BasicSR format)."""
    meta_file = Path(lmdb_path) / "meta_info.txt"
    if not meta_file.is_file():
        raise ValueError(f"{lmdb_path}: no meta_info.txt, not a complete BasicSR LMDB")
    out: dict[str, tuple[int, int, int]] = {}
    for n, line in enumerate(meta_file.read_text(encoding="ascii").splitlines(), start=1):
        if not line.strip():
            continue
        m = _META_LINE_RE.fullmatch(line)
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
        env = _open_checked(path)
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
