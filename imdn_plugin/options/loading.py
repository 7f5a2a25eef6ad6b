"""Reading option files and ``--force_yml`` entries as data, before any check.

Option files are data, never code: :func:`load_option_file` reads at most
:data:`MAX_OPTION_BYTES` of the file (``-opt /dev/zero`` is refused at once)
and parses them with :class:`OptionLoader`, a ``yaml.SafeLoader`` that keeps
BasicSR's conventions (``!!float 2e-4``, key order) and refuses every tag that
would build a Python object, duplicate keys, and integers too long to convert.
:func:`apply_overrides` applies ``--force_yml key:path=value`` entries, each
value parsed as YAML data (BasicSR passes list values to ``eval`` and the
assignment to ``exec``).  What the values mean is :mod:`.schema`'s job.
"""
from __future__ import annotations

import os
import sys
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import yaml

from ..errors import ConfigError
from .fields import suggest as _suggest

#: Largest option file read (the shipped ones are about 3 KB).
MAX_OPTION_BYTES = 1 << 20

# ---------------------------------------------------------------------------- reading option files
_MERGE_TAG = "tag:yaml.org,2002:merge"


class OptionLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` for option files: ordered mappings, no duplicate keys, no object tags.

    Mappings become ``OrderedDict`` (as with BasicSR's ``ordered_yaml``); the
    standard tags (``!!float 2e-4``, ``!!str``, ...) work; any other tag
    (``!!python/object/apply:...``, ``!custom``) is refused with its position.
    """


def _construct_mapping(loader: OptionLoader, node: yaml.Node) -> OrderedDict[Any, Any]:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(None, None, f"expected a mapping, found {node.id}", node.start_mark)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # '<<: *base' then explicit keys that override it is YAML, not a duplicate
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, found {type(key).__name__}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen.add(key)
    loader.flatten_mapping(node)
    return OrderedDict(loader.construct_pairs(node, deep=True))


def _refuse_tag(loader: OptionLoader, node: yaml.Node) -> None:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    raise yaml.constructor.ConstructorError(
        None, None, f"tag '{tag}' refused: option files are data, tags that build Python objects are not allowed",
        node.start_mark,
    )  # fmt: skip


def _construct_int(loader: OptionLoader, node: yaml.Node) -> int:
    """YAML ints, refusing ones longer than Python converts (``sys.get_int_max_str_digits``)."""
    digits = sum(c.isdigit() for c in str(node.value))
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if limit and digits > limit:
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of {digits} digits: at most {limit} digits are allowed", node.start_mark
        )
    return yaml.SafeLoader.construct_yaml_int(loader, node)


OptionLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
OptionLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
OptionLoader.add_constructor(None, _refuse_tag)  # every tag without a constructor of its own


def _flat(text: Any) -> str:
    return " ".join(str(text).split())


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` with :class:`OptionLoader`; errors become one line ``source:line:column: ...``."""
    try:
        return yaml.load(text, Loader=OptionLoader)  # OptionLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = _flat(exc.problem or exc.context or "invalid YAML")
        kind = "" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error: "
        context = f" ({_flat(exc.context)})" if exc.context and exc.problem and kind else ""
        raise ConfigError(f"{where}: {kind}{problem}{context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {_flat(exc)}") from None


def load_option_file(path: str | os.PathLike[str]) -> OrderedDict[str, Any]:
    """Read a BasicSR option file as data (see :class:`OptionLoader`); one-line errors."""
    try:
        with open(path, "rb") as f:  # a bounded read: /dev/zero, a FIFO or a disk image stop here
            data = f.read(MAX_OPTION_BYTES + 1)
        if len(data) > MAX_OPTION_BYTES:
            raise ConfigError(
                f"{path}: larger than {MAX_OPTION_BYTES >> 20} MiB: not an option file (they are a few KB of YAML)"
            )
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"-opt: option file not found: {path} (cwd: {os.getcwd()})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not an option file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read option file ({exc.strerror or exc})") from None
    opt = parse_yaml(text, str(path))
    if opt is None:
        raise ConfigError(f"{path}: option file is empty")
    if not isinstance(opt, Mapping):
        raise ConfigError(f"{path}: expected a mapping of options (key: value lines) at the top, found a {_yaml_kind(opt)}")
    return opt


def _yaml_kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def apply_overrides(opt: MutableMapping[str, Any], entries: Sequence[str]) -> None:
    """Apply ``--force_yml`` entries ``key:sub:key=value`` to ``opt`` in place.

    The key path must exist in the file (BasicSR: "do not support creating new
    keys"); the value is YAML data (``0.5``, ``true``, ``~``, ``[1, 2]``,
    ``!!float 2e-4``; ``none`` is also ``None`` as in BasicSR), never evaluated.
    """
    for entry in entries:
        if entry.count("=") != 1:
            raise ConfigError(
                f"--force_yml {entry!r}: expected KEY:PATH=VALUE with exactly one '=' "
                "(e.g. path:pretrain_network_g=weights.pth)"
            )
        keys_text, value_text = (part.strip() for part in entry.split("="))
        keys = keys_text.split(":")
        if not all(keys):
            raise ConfigError(f"--force_yml {entry!r}: empty key in '{keys_text}' (keys are joined by ':')")
        try:
            value = None if value_text.lower() == "none" else parse_yaml(value_text, "value")
        except ConfigError as exc:
            hint = "" if "refused" in str(exc) else (
                f"; to pass it as a string, quote it: {keys_text}=\"'{value_text.replace(chr(39), chr(39) * 2)}'\""
            )  # fmt: skip
            raise ConfigError(f"--force_yml {entry!r}: {exc}{hint}") from None
        node: Any = opt
        for depth, key in enumerate(keys):
            here = ":".join(keys[:depth]) or "the top level"
            if not isinstance(node, MutableMapping):
                raise ConfigError(f"--force_yml {entry!r}: {here} is {node!r}, not a mapping of keys")
            if key not in node:
                valid = [str(k) for k in node]
                raise ConfigError(
                    f"--force_yml {entry!r}: unknown key path '{keys_text}': no key '{key}' under {here}"
                    f"{_suggest(key, valid)} (--force_yml only replaces keys the option file has)"
                )
            if depth == len(keys) - 1:
                node[key] = value
            else:
                node = node[key]
