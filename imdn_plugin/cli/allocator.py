"""Process-level glibc malloc settings for the ``basicsr test`` and ``basicsr infer`` commands.

With glibc's default (dynamic) thresholds, memory freed by a PyTorch CPU
forward goes back to the OS (heap trimming, ``munmap``) and is faulted in page
by page when the next forward allocates it again; keeping freed memory in the
process removes those page faults (figures: README, "Measurement history";
``scripts/benchmark.py --allocator no-trim`` measures it).  The price: the
process keeps its peak memory until it exits, which suits a command that runs
one job and ends.

The library itself never changes these settings; only the commands do, and
only when the user has not chosen an allocator already (``LD_PRELOAD``,
``GLIBC_TUNABLES`` or ``MALLOC_*`` malloc settings).  ``IMDN_MALLOC=default``
in the environment turns it off.
"""
from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping

from ..machine import MALLOC_ENV, env

__all__ = ["keep_freed_memory"]

logger = logging.getLogger(__name__)

# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 2**31 - 1  # never give the top of the heap back
_MMAP_THRESHOLDS = (2**30, 32 * 2**20)  # large blocks from the heap; 32 MiB is glibc's cap on older versions


def _user_choice(environ: Mapping[str, str], setting: str | None = None) -> str | None:
    """Why to leave malloc alone (``setting``: the value of ``IMDN_MALLOC``, default: ``environ``'s), or None."""
    setting = environ.get(MALLOC_ENV, "").strip() if setting is None else setting
    if setting.lower() in ("default", "0", "off", "no", "false"):
        return f"{MALLOC_ENV}={setting}"
    if "malloc" in environ.get("LD_PRELOAD", ""):
        return "LD_PRELOAD sets an allocator"
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets malloc tunables"
    preset = sorted(k for k in environ if k.startswith("MALLOC_") and k.endswith("_"))
    if preset:
        return f"{preset[0]} is set"
    return None


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Make glibc keep freed memory in this process; True if it was applied.

    Does nothing (returns False) on a C library other than glibc, or when the
    environment already chooses the allocator or sets ``IMDN_MALLOC=default``.
    """
    setting = env(MALLOC_ENV) if environ is None else environ.get(MALLOC_ENV, "").strip()
    environ = os.environ if environ is None else environ
    reason = _user_choice(environ, setting)
    if reason is None:
        try:
            glibc = os.confstr("CS_GNU_LIBC_VERSION")
        except (AttributeError, ValueError, OSError):
            glibc = None
        if not glibc:
            reason = "not glibc"
    if reason is not None:
        logger.debug("malloc settings left alone (%s)", reason)
        return False
    libc = ctypes.CDLL(None)
    # The mmap threshold first: fixing only the trim threshold would also switch off glibc's
    # dynamic mmap threshold and leave every block above 128 KiB to a fresh mmap (far worse).
    for threshold in _MMAP_THRESHOLDS:
        if libc.mallopt(_M_MMAP_THRESHOLD, threshold):
            break
    else:
        logger.debug("mallopt(M_MMAP_THRESHOLD) refused; malloc settings left alone")
        return False
    libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    logger.debug("malloc keeps freed memory (trim off, mmap threshold %d MiB)", threshold >> 20)
    return True
