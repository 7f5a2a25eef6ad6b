"""What the ``basicsr`` subcommands share: the one-line argument parser, plugin loading, error lines.

Light on purpose: this module and every subcommand module import neither torch nor BasicSR
at import time, so that a usage error is answered before they load.  A constant that lives in
a module importing torch reaches a parser through :class:`Deferred` (read only when its flag is
given or the help is shown).
"""
from __future__ import annotations

import argparse
import importlib
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, NoReturn

from ..errors import PluginError

PLUGIN_GROUP = "basicsr.plugins"


def load_plugins() -> list[str]:
    """Call the ``register`` callable of every installed ``basicsr.plugins`` entry point."""
    names = []
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            ep.load()()
        except PluginError:
            raise
        except Exception as exc:  # a broken third-party plugin: say which one
            raise PluginError(f"plugin '{ep.name}' ({ep.value}) failed to register: {exc}") from exc
        names.append(ep.name)
    return names


def plugin_names() -> list[str]:
    """The installed ``basicsr.plugins`` entry points, by name (nothing is loaded)."""
    return [ep.name for ep in entry_points(group=PLUGIN_GROUP)]


class Deferred(Sequence[str]):
    """``module.name`` (a tuple of words) read when first used: an argparse ``choices`` that lives in a
    module importing torch, imported only when its flag is given or ``--help`` lists it."""

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name = module, name
        self._values: tuple[str, ...] | None = None

    def values(self) -> tuple[str, ...]:
        if self._values is None:
            self._values = tuple(getattr(importlib.import_module(self._module), self._name))
        return self._values

    def __getitem__(self, index: Any) -> Any:
        return self.values()[index]

    def __len__(self) -> int:
        return len(self.values())

    def __contains__(self, value: object) -> bool:
        return value in self.values()

    def __iter__(self) -> Iterator[str]:
        return iter(self.values())


_UNLISTED = "WORD"  # the metavar of a Deferred choice until the help lists the words


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``basicsr: error:`` line (not the usage block), exit code 2.

    A help text or epilog given as a callable is made when the help is shown (it may read
    constants of heavy modules); parsing and errors never call it.
    """

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if isinstance(kwargs.get("choices"), Deferred):  # argparse lists choices in the metavar when it is unset
            kwargs.setdefault("metavar", _UNLISTED)
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"basicsr: error: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        for action in self._actions:
            if action.metavar is _UNLISTED:
                action.metavar = None  # {choice,...} in the help
            if callable(action.help):
                action.help = action.help()
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def one_line(exc: BaseException) -> str:
    """The message of a plugin error; one raised in a DataLoader worker arrives wrapped
    with the worker's traceback, whose last line holds the original message."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(exc).__name__
    last = lines[-1]
    name = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    return last[len(name):] if last.startswith(name) else last


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, ``timeout``, ``docker stop``) unwinds like Ctrl-C: the image being written
    leaves no temporary file, and the summary says what is on disk."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (an embedding application): leave its handlers alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
