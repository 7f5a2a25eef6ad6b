"""Option files as data: the bounded read, the safe loader and ``--force_yml`` values."""
from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from imdn_plugin.errors import ConfigError
from imdn_plugin.options import MAX_OPTION_BYTES, apply_overrides, load_option_file, parse_yaml


def load_text(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "opt.yml"
    path.write_text(text)
    return load_option_file(path)


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------- the loader
def test_basicsr_conventions_still_parse(tmp_path: Path) -> None:
    opt = load_text(tmp_path, "lr: !!float 2e-4\nplain: 2e-4\nb: [0.9, 0.999]\nz: 1\na: {y: 1, x: 2}\nn: ~\n")
    assert opt["lr"] == 2e-4 and isinstance(opt["lr"], float)
    assert opt["plain"] == "2e-4"  # YAML 1.1, as with BasicSR's loader: write !!float for exponents
    assert opt["b"] == [0.9, 0.999] and opt["n"] is None
    assert isinstance(opt, OrderedDict) and isinstance(opt["a"], OrderedDict)
    assert list(opt) == ["lr", "plain", "b", "z", "a", "n"] and list(opt["a"]) == ["y", "x"]


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch {m}']",
        "!!python/object/new:os.system ['touch {m}']",
        "!!python/name:os.system",
        "!!python/tuple [1, 2]",
        "!custom 1",
    ],
)
def test_tags_that_build_objects_are_refused(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "MARKER"
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, f"name: x\nmanual_seed: {tag.format(m=marker)}\n")
    msg = one_line(err)
    assert msg.startswith(f"{tmp_path / 'opt.yml'}:2:14: tag '") and "refused" in msg
    assert not marker.exists()


@pytest.mark.parametrize(
    "text, where, key",
    [("name: a\nscale: 2\nname: b\n", ":3:1:", "name"), ("train:\n  lr: 1\n  gamma: 2\n  lr: 3\n", ":4:3:", "lr")],
)
def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path, text: str, where: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert one_line(err) == f"{tmp_path / 'opt.yml'}{where} duplicate key '{key}'"


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    opt = load_text(tmp_path, "base: &b {x: 1, y: 2}\nder:\n  <<: *b\n  y: 3\n")
    assert dict(opt["der"]) == {"x": 1, "y": 3}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\n  model_type: y\n", "opt.yml:2:13: YAML syntax error: mapping values are not allowed here"),
        ("a: [1, 2\n", "opt.yml:2:1: YAML syntax error: expected ',' or ']'"),
        ("", "opt.yml: option file is empty"),
        ("# only a comment\n", "opt.yml: option file is empty"),
        ("- a\n- b\n", "opt.yml: expected a mapping of options (key: value lines) at the top, found a list"),
        ("just a string\n", "found a string"),
    ],
)
def test_unreadable_files_give_one_line_with_position(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert expected in one_line(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^-opt: option file not found: .*nope\.yml"):
        load_option_file(tmp_path / "nope.yml")


# ---------------------------------------------------------------------------- --force_yml
def overridden(*entries: str) -> dict:
    opt = OrderedDict(name="x", val=OrderedDict(save_img=True, suffix="s"), train=OrderedDict(lr=1.0, milestones=[1]))
    apply_overrides(opt, entries)
    return opt


@pytest.mark.parametrize(
    "value, expected",
    [
        ("false", False), ("~", None), ("none", None), ("None", None), ("0.5", 0.5), ("12", 12),
        ("!!float 2e-4", 2e-4), ("[100, 200]", [100, 200]), ("a/b c.pth", "a/b c.pth"), ("'{}x4'", "{}x4"),
        ('[__import__("os").system("touch M")]', ['__import__("os").system("touch M")']),
        ("__import__('os').getcwd()", "__import__('os').getcwd()"),
    ],
)  # fmt: skip
def test_force_yml_values_are_yaml_data(value: str, expected: Any) -> None:
    opt = overridden(f"val:suffix={value}")
    assert opt["val"]["suffix"] == expected and type(opt["val"]["suffix"]) is type(expected)
    assert list(opt["val"]) == ["save_img", "suffix"]


def test_force_yml_code_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    with pytest.raises(ConfigError, match=r"tag '!!python/object/apply:os.system' refused"):
        overridden(f"name=!!python/object/apply:os.system ['touch {marker}']")
    opt = overridden(f'train:milestones=[__import__("os").system("touch {marker}")]')
    assert opt["train"]["milestones"] == [f'__import__("os").system("touch {marker}")']
    assert not marker.exists()


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("foo", "--force_yml 'foo': expected KEY:PATH=VALUE with exactly one '='"),
        ("a=b=c", "--force_yml 'a=b=c': expected KEY:PATH=VALUE with exactly one '='"),
        ("=1", "--force_yml '=1': empty key"),
        ("val::suffix=1", "empty key in 'val::suffix'"),
        ("val:sufix=1", "unknown key path 'val:sufix': no key 'sufix' under val (did you mean 'suffix'?)"),
        ("nmae=y", "no key 'nmae' under the top level (did you mean 'name'?)"),
        ("name:x=1", "--force_yml 'name:x=1': name is 'x', not a mapping of keys"),
        ("val:suffix=[1,", "--force_yml 'val:suffix=[1,': value:1:4: YAML syntax error"),
        ("val:suffix={}x4", ("value:1:3: YAML syntax error: expected '<document start>', but found '<scalar>'; "
                             "to pass it as a string, quote it: val:suffix=\"'{}x4'\"")),
    ],
)
def test_force_yml_bad_forms(entry: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        overridden(entry)
    assert expected in one_line(err)


def test_parse_yaml_is_safe_on_its_own() -> None:
    with pytest.raises(ConfigError, match=r"^src:1:1: tag '!!python/object/apply:os.getcwd' refused"):
        parse_yaml("!!python/object/apply:os.getcwd []", "src")


# ---------------------------------------------------------------------------- sizes
def test_dev_zero_is_refused_after_a_bounded_read() -> None:
    import time

    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_option_file("/dev/zero")  # endless: BasicSR (and this loader before) read it without limit
    assert one_line(err) == "/dev/zero: larger than 1 MiB: not an option file (they are a few KB of YAML)"
    assert time.monotonic() - start < 5


def test_the_size_limit_is_exact(tmp_path: Path) -> None:
    body = "a: 1\n"
    path = tmp_path / "opt.yml"
    path.write_text(body + "#" * (MAX_OPTION_BYTES - len(body) - 1) + "\n")
    assert load_option_file(path)["a"] == 1  # exactly the limit: read
    path.write_text(body + "#" * (MAX_OPTION_BYTES - len(body)) + "\n")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):  # one byte more: refused
        load_option_file(path)


def test_an_integer_too_long_to_convert_is_one_line(tmp_path: Path) -> None:
    limit = sys.get_int_max_str_digits()
    assert load_text(tmp_path, f"seed: {'9' * limit}\n")["seed"] == int("9" * limit)
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, f"name: x\nseed: {'9' * (limit + 1)}\n")
    assert one_line(err) == f"{tmp_path / 'opt.yml'}:2:7: an integer of {limit + 1} digits: at most {limit} digits are allowed"


def test_a_folder_is_not_an_option_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r": is a folder, not an option file$"):
        load_option_file(tmp_path)
