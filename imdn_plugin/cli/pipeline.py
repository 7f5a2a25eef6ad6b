"""``basicsr train`` / ``basicsr test``: their flags and option file checked before torch or BasicSR load.

The flags are BasicSR's own, defined once in :mod:`imdn_plugin.options.flags`; BasicSR's
pipeline parses them again from ``sys.argv`` after the plugins are loaded; this parser
answers a usage error first, before any heavy import.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from ..errors import ConfigError
from ..options.flags import add_pipeline_arguments
from .common import OneLineParser


class PipelineParser(OneLineParser):
    """A usage error is a :class:`ConfigError` (``main`` prints its one line and returns 2), as the
    pipeline's own parser does."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise ConfigError(f"{message} (see {self.prog} --help)")


def build_parser(command: str) -> PipelineParser:
    """BasicSR's flags of ``basicsr train`` / ``basicsr test``."""
    p = PipelineParser(prog=f"basicsr {command}", description=f"BasicSR's {command} pipeline with every installed plugin; "
                      "outputs go under the current directory (experiments/, results/, tb_logger/).")  # fmt: skip
    return add_pipeline_arguments(p)


def check_option_file(path: str) -> None:
    """Refuse (:class:`ConfigError`, one line) an ``-opt`` that is missing, a folder, unreadable, endless
    (``/dev/zero``) or not a YAML mapping, with the pipeline's own messages: it is read by the same
    torch-free :func:`imdn_plugin.options.load_option_file` (a few KB, read again by the pipeline)."""
    from ..options.loading import load_option_file

    load_option_file(path)


def check_arguments(command: str, args: Sequence[str]) -> None:
    """Parse ``args`` as BasicSR would (exit 2 with one line on a usage error) and check the option file."""
    parsed = build_parser(command).parse_args(list(args))
    check_option_file(parsed.opt)
