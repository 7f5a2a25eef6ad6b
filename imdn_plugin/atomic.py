"""Atomic file writes (a temporary file in the target's folder, fsync, then a rename), and
:func:`pid_alive` for telling stale temporaries and locks of dead processes from live ones.

Every file the plugin writes for the user (images, checkpoints, training states,
exported models) goes through :func:`atomic_write`, so a kill or a full disk
never leaves a half-written file under a real name.  The file gets the mode any
file the user's tools would create (``0o666`` less the umask), not ``mkstemp``'s
private ``0o600``.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Union

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(
    path: PathLike, data: bytes | Callable[[BinaryIO], None], *, overwrite: bool = True, suffix: str = ".tmp"
) -> Path:
    """Write ``data`` (bytes, or a function writing into a binary file) to ``path`` atomically.

    With ``overwrite=False`` an existing ``path`` is never replaced
    (:class:`FileExistsError`, checked again at the rename with a hard link).
    ``suffix`` ends the temporary file's name (e.g. ``.tmp.png`` for a writer that
    picks its format from the name).  Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: exists (not overwritten)")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        with open(tmp, "wb") as f:  # by name: f.name tells what is being written
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:  # a hard link fails if the name appeared meanwhile: never replaces
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path}: exists (not overwritten)") from None
            except OSError:  # a filesystem without hard links
                if path.exists():
                    raise FileExistsError(f"{path}: exists (not overwritten)") from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: some filesystems refuse fsync on folders)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (``os.kill(pid, 0)``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OSError, OverflowError):
        return False
    return True
