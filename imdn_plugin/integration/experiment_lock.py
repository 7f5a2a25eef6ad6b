"""One run per experiment folder: an exclusive lock on ``<folder>/.imdn_lock``.

BasicSR archives an existing ``experiments/<name>/`` (or ``results/<name>/``)
by renaming it, even while another run is writing into it; the two runs then
mix their checkpoints.  :class:`ExperimentLock` prevents that:

* the lock is ``fcntl.flock`` on ``<folder>/.imdn_lock``, opened for the whole
  run: the kernel releases it when the process ends, however it ends (SIGKILL
  included), so a lock is never left behind by a dead run;
* the file holds a one-line JSON record (pid, host, start time, command) so
  that a refused run can say who holds the folder, and a run that takes over
  the lock of a dead one can say whose it was;
* processes forked from the run (DataLoader workers) close their copy of the
  lock file at once, so that they cannot keep the lock alive after the run
  itself is killed;
* where ``flock`` is unavailable (no ``fcntl``, or a filesystem that refuses
  it), the record alone decides: a live process on this host, or any record
  from another host, holds the folder (best effort, not atomic).

No torch, no BasicSR: cheap to import from a helper process.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Union

from ..atomic import pid_alive
from ..errors import ExperimentInUseError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Name of the lock file inside the experiment / results folder.
LOCK_NAME = ".imdn_lock"

# flock's "someone else holds it" answers; anything else means "flock does not work here".
_HELD_ERRNOS = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


#: Lock file descriptors held by this process (closed in forked children, see below).
_HELD_FDS: set[int] = set()


def _close_in_forked_child() -> None:
    # A fork shares the open file, and with it the flock: a DataLoader worker that
    # outlives a SIGKILLed run would hold the folder. The child drops its copy (no
    # truncation: the record is the parent's); the parent's lock is unaffected.
    for fd in list(_HELD_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_forked_child)



def _describe(record: dict) -> str:
    started = record.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"PID {record.get('pid', '?')} on {record.get('host', '?')}, started {when}"


def _takeover_message(record: dict) -> str:
    """What a run taking over a left lock says about the run that left it.

    The flock being free proves only that no process holds the lock; the PID of
    the record may be in use by another process now (PIDs are reused, and a
    container's first process is always PID 1), so it is never called "no
    longer running" when a process with that PID exists.
    """
    text = (f"taking over the lock left by a {record.get('command', 'previous')} run ({_describe(record)}), "
            "which ended without releasing it")  # fmt: skip
    pid = record.get("pid")
    if isinstance(pid, int) and record.get("host") == socket.gethostname() and pid != os.getpid() and pid_alive(pid):
        text += f"; PID {pid} now belongs to another process (PIDs are reused; in a container PID 1 is the first one)"
    return text


class ExperimentLock:
    """Exclusive use of ``folder`` by this process (see the module docstring).

    Args:
        folder: The experiment or results folder; created if absent.
        command: What holds it, for the messages (``"training"``, ``"test"``).
    """

    def __init__(self, folder: PathLike, command: str = "training") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> ExperimentLock:
        """Take the lock or raise :class:`ExperimentInUseError` naming the folder and the holder's PID.

        A lock left by a run that is gone is taken over with a warning.
        """
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                flocked = self._flock(fd)
                if flocked and not self._still_at_path(fd):
                    os.close(fd)  # the file was replaced between open and flock: lock the new one
                    continue
                previous = _read_record(fd)
                if not flocked:
                    self._check_record(previous)
                if previous:
                    logger.warning("%s: %s", self.folder, _takeover_message(previous))
                _write_record(fd, {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                                   "command": self.command, "argv": sys.argv[:8]})
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            _HELD_FDS.add(fd)
            return self

    def _flock(self, fd: int) -> bool:
        """True if flocked; raises if another process holds it; False if flock does not work here."""
        if fcntl is None:  # pragma: no cover - Windows
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in _HELD_ERRNOS:
                raise self._in_use(_read_record(fd)) from None
            logger.warning("%s: flock not supported here (%s); relying on the PID record", self.path, exc.strerror)
            return False
        return True

    def _still_at_path(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _check_record(self, record: dict) -> None:
        """The record-only decision, where flock is unavailable."""
        if not record or record.get("pid") == os.getpid() and record.get("host") == socket.gethostname():
            return
        if record.get("host") != socket.gethostname():
            raise self._in_use(record, f"; if no run uses it, delete {self.path}")
        if isinstance(record.get("pid"), int) and pid_alive(record["pid"]):
            raise self._in_use(record)

    def _in_use(self, record: dict, hint: str = "") -> ExperimentInUseError:
        who = f"{record.get('command', 'run')} run ({_describe(record)})" if record else "run (PID unknown)"
        return ExperimentInUseError(
            f"{self.folder}: in use by a {who}; wait for it to end or give this run another 'name'{hint}"
        )

    def release(self) -> None:
        """Empty the record and release the lock (the file stays: deleting it would race with a new run)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _HELD_FDS.discard(fd)
        try:
            os.ftruncate(fd, 0)
        except OSError:  # pragma: no cover - the folder went away
            pass
        finally:
            os.close(fd)  # releases the flock

    def __enter__(self) -> ExperimentLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_lock_record(folder: PathLike) -> dict:
    """The record in ``folder``'s lock file (``{}`` when none or empty)."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    try:
        return _read_record(fd)
    finally:
        os.close(fd)


def _read_record(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        record = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        return {"pid": "?"}  # unreadable: someone wrote it, say so
    return record if isinstance(record, dict) else {"pid": "?"}


def _write_record(fd: int, record: dict) -> None:
    data = (json.dumps(record) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
