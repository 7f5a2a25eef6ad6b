"""Option files: reading them as data, and one strict schema for every key.

* :mod:`.loading` — the file (bounded read, safe YAML) and ``--force_yml``.
* :mod:`.fields` — the value rules and :class:`OptionError` (key path, value, what is allowed).
* :mod:`.schema` — the records (:class:`Options` and its blocks), built once by :func:`parse`.
* :mod:`.inference` — the ``inference:`` block (:class:`InferenceOptions`).
* :mod:`.files` — checks of the files the options name (datasets, crop_border, pretrained network).

:func:`validate_options` runs all of them; :func:`attach` keeps the record
with the dict BasicSR's pipelines receive, and :func:`options_of` gives it
back to the plugin's model (parsing a dict built by hand once, if needed).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from .fields import OptionError, check_keys
from .files import check_dataset_paths, check_files, check_lmdb_readable
from .inference import InferenceOptions
from .loading import MAX_OPTION_BYTES, OptionLoader, apply_overrides, load_option_file, parse_yaml
from .schema import Component, Options, Registry, parse


class OptionDict(OrderedDict):
    """The option dict BasicSR's pipelines receive, carrying its parsed record (``parsed``).

    ``copy.deepcopy`` (BasicSR's ``build_model``) keeps the attribute.
    """

    parsed: Options | None = None


def validate_options(
    opt: Mapping[str, Any], registry: Registry, *, check_paths: bool = True, cuda: bool | None = None
) -> Options:
    """Every start-up check on a BasicSR option dict (as read, ``--force_yml`` applied): the parsed record.

    ``check_paths=False`` skips the checks of files on disk (dataset folders,
    image sizes, ``pretrain_network_g``).
    """
    options = parse(opt, registry, cuda=cuda)
    if check_paths:
        check_files(options, registry)
    return options


def attach(opt: Mapping[str, Any], options: Options) -> OptionDict:
    """``opt`` as an :class:`OptionDict` that carries ``options``."""
    result = OptionDict(opt)
    result.parsed = options
    return result


def options_of(opt: Mapping[str, Any], registry: Registry) -> Options:
    """The record :func:`attach` put on ``opt``; for a dict built by hand, the blocks it has, parsed now."""
    parsed = getattr(opt, "parsed", None)
    return parsed if isinstance(parsed, Options) else parse(opt, registry, complete=False)


__all__ = [
    "MAX_OPTION_BYTES", "Component", "InferenceOptions", "OptionDict", "OptionError", "OptionLoader", "Options",
    "Registry", "apply_overrides", "attach", "check_dataset_paths", "check_files", "check_keys",
    "check_lmdb_readable", "load_option_file", "options_of", "parse", "parse_yaml", "validate_options",
]  # fmt: skip
