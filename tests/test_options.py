"""Option files as data: the safe loader, ``--force_yml`` values, and the start-up checks."""
from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import imdn_plugin
from imdn_plugin.errors import ConfigError
from imdn_plugin.inference import InferenceOptions
from imdn_plugin.integration import lookup_arch, registered
from imdn_plugin.options import (
    apply_overrides,
    load_option_file,
    parse_yaml,
    validate_options,
)

REPO = Path(__file__).resolve().parents[1]


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


# ---------------------------------------------------------------------------- the checks
BASE: dict = {
    "name": "t", "model_type": "IMDNModel", "scale": 4, "num_gpu": 0, "manual_seed": 0, "is_train": False,
    "datasets": {"test_1": {"name": "s", "type": "PairedImageDataset", "io_backend": {"type": "disk"}}},
    "network_g": {"type": "IMDN", "num_feat": 16, "num_block": 1, "upscale": 4},
    "path": {"pretrain_network_g": None, "strict_load_g": True},
    "val": {"save_img": False},
}  # fmt: skip
TRAIN: dict = {
    **BASE, "is_train": True,
    "datasets": {"train": {"name": "s", "type": "PairedImageDataset", "num_worker_per_gpu": 0, "batch_size_per_gpu": 2}},
    "train": {"total_iter": 4}, "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "use_tb_logger": False},
    "val": None,
}  # fmt: skip


def validate(base: dict, edit: Callable[[dict], Any] = lambda o: None) -> None:
    imdn_plugin.register()
    opt = copy.deepcopy(base)
    edit(opt)
    validate_options(opt, lookup_arch, InferenceOptions.from_dict, registry_names=registered)


def test_the_base_options_pass() -> None:
    validate(BASE)
    validate(TRAIN)


def _set(*path_value: Any) -> Callable[[dict], None]:
    *path, key, value = path_value

    def edit(opt: dict) -> None:
        node = opt
        for p in path:
            node = node[p]
        if value is DELETE:
            del node[key]
        else:
            node[key] = value

    return edit


DELETE = object()


@pytest.mark.parametrize(
    "base, edit, expected",
    [
        (BASE, _set("nmae", "x"), "unknown top-level key 'nmae' (did you mean 'name'?); common keys: name, model_type"),
        (BASE, _set("name", DELETE), "missing top-level key 'name'"),
        (BASE, _set("name", "../../x"), "name: '../../x' must be a plain folder name"),
        (BASE, _set("name", "a/b"), "name: 'a/b' must be a plain folder name"),
        (BASE, _set("name", ".."), "name: '..' must be a plain folder name"),
        (BASE, _set("name", "."), "name: '.' must be a plain folder name"),
        (BASE, _set("name", ""), "name: must be a non-empty folder name"),
        (BASE, _set("name", 7), "name: must be a non-empty folder name (outputs go to experiments/<name>/), got 7"),
        (BASE, _set("model_type", "SRModle"), "model_type: unknown model 'SRModle' (did you mean 'SRModel'?); registered: "),
        (BASE, _set("datasets", "test_1", "type", "PairedImgDataset"),
         "datasets:test_1:type: unknown dataset 'PairedImgDataset' (did you mean 'PairedImageDataset'?)"),
        (BASE, _set("datasets", "test_1", "name", DELETE), "datasets:test_1: missing key 'name'"),
        (BASE, _set("datasets", "foo", {"name": "a", "type": "PairedImageDataset"}), "datasets:foo: unknown phase"),
        (BASE, _set("datasets", {}), "datasets: expected a mapping of phase: dataset options"),
        (BASE, _set("network_g", "type", "IMDM"), "network_g: unknown network type 'IMDM' (did you mean 'IMDN'?)"),
        (BASE, _set("network_g", "num_feat", 24), "network_g: num_feat must be a multiple of 16 for IMDN"),
        (BASE, _set("network_g", {"type": "IMDN_AS", "num_feat": 40}), "network_g: num_feat must be a multiple of 16 for IMDN_AS"),
        (BASE, _set("scale", 3), "scale: 3 but network_g (IMDN) upscales x4; set scale: 4 or network_g:upscale: 3"),
        # IMDN's default upscale is 4: scale 2 without network_g:upscale is refused too
        (BASE, lambda o: (o["network_g"].pop("upscale"), o.update(scale=2)), "scale: 2 but network_g (IMDN) upscales x4"),
        (BASE, _set("num_gpu", -1), "num_gpu: must be auto or an integer >= 0 (0 = CPU), got -1"),
        (BASE, _set("num_gpu", "all"), "num_gpu: must be auto or an integer >= 0"),
        (BASE, _set("manual_seed", "x"), "manual_seed: must be an integer, got 'x'"),
        (BASE, _set("val", DELETE), "missing 'val' block with save_img (BasicSR's test pipeline reads it)"),
        (BASE, _set("path", "pretrain_network_g", 3), "path:pretrain_network_g: must be a file path or ~, got 3"),
        (BASE, _set("datasets", "test_1", "persistent_workers", True),
         "datasets:test_1:persistent_workers: true needs loader workers, but BasicSR loads test sets in the main process"),
        (TRAIN, _set("datasets", "train", "persistent_workers", True),
         "datasets:train:persistent_workers: true needs loader workers, but num_worker_per_gpu is 0"),
        (TRAIN, _set("datasets", "train", "num_worker_per_gpu", DELETE), "datasets:train: missing key 'num_worker_per_gpu'"),
        (TRAIN, _set("datasets", "test_1", {"name": "a", "type": "PairedImageDataset"}), "datasets:test_1: unknown phase for training"),
        (TRAIN, _set("logger", "use_tb_logger", DELETE), "logger: missing key 'use_tb_logger'"),
        (TRAIN, _set("train", DELETE), "missing 'train' block with total_iter"),
        (TRAIN, _set("val", {"save_img": False}), "val: missing key 'val_freq'"),
    ],
)  # fmt: skip
def test_bad_options_give_one_line(base: dict, edit: Callable[[dict], None], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(base, edit)
    assert expected in one_line(err)


def test_persistent_workers_with_workers_is_fine() -> None:
    validate(TRAIN, _set("datasets", "train", "num_worker_per_gpu", 2))
    validate(TRAIN, lambda o: o["datasets"]["train"].update(num_worker_per_gpu=2, persistent_workers=True))


@pytest.mark.parametrize("num_feat", range(8, 73, 4))
def test_num_feat_check_is_the_networks_constraint(num_feat: int) -> None:
    from imdn_plugin.archs import IMDN, IMDN_AS

    for cls in (IMDN, IMDN_AS):
        try:
            cls(num_feat=num_feat, num_block=1)
            builds = True
        except ValueError:
            builds = False
        edit = _set("network_g", {"type": cls.__name__, "num_feat": num_feat, "num_block": 1})
        try:
            validate({**BASE, "scale": None}, edit)
            accepted = True
        except ConfigError:
            accepted = False
        assert accepted == builds, (cls.__name__, num_feat)


def test_num_gpu_against_the_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    validate(BASE, _set("num_gpu", 1))
    validate(BASE, _set("num_gpu", "auto"))
    validate(BASE, _set("num_gpu", DELETE))
    with pytest.raises(ConfigError) as err:
        validate(BASE, _set("num_gpu", 2))
    assert "num_gpu: 2 GPUs asked for but 1 visible" in one_line(err)


def test_pretrained_checkpoint_must_fit_a_strict_load(tmp_path: Path) -> None:
    from imdn_plugin.archs import IMDN
    from imdn_plugin.checkpoint import atomic_torch_save

    x2, x4 = tmp_path / "x2.pth", tmp_path / "x4.pth"
    atomic_torch_save({"params": IMDN(num_feat=16, num_block=1, upscale=2).state_dict()}, x2)
    atomic_torch_save({"params": IMDN(num_feat=16, num_block=1, upscale=4).state_dict()}, x4)
    validate(BASE, _set("path", "pretrain_network_g", str(x4)))
    validate(BASE, lambda o: o["path"].update(pretrain_network_g=str(x2), strict_load_g=False))  # warm start
    with pytest.raises(ConfigError) as err:
        validate(BASE, _set("path", "pretrain_network_g", str(x2)))
    assert (
        f"path:pretrain_network_g: {x2}: checkpoint is IMDN x2 (num_feat=16, num_block=1, 3->3 channels) "
        "but network_g is IMDN x4 (num_feat=16, num_block=1, 3->3 channels)"
    ) in one_line(err)
    with pytest.raises(ConfigError, match="checkpoint is IMDN x4 .* but network_g is IMDN_AS"):
        validate({**BASE, "scale": None}, lambda o: o.update(
            network_g={"type": "IMDN_AS", "num_feat": 16, "num_block": 1}, path={"pretrain_network_g": str(x4)}))  # fmt: skip


@pytest.mark.parametrize("path", sorted((REPO / "options").glob("*.yml")), ids=lambda p: p.name)
def test_shipped_option_files_parse_and_validate(path: Path) -> None:
    imdn_plugin.register()
    opt = load_option_file(path)
    opt["is_train"] = path.name.startswith("train_")
    validate_options(opt, lookup_arch, InferenceOptions.from_dict, registry_names=registered, check_paths=False)
    if opt["is_train"]:
        assert isinstance(opt["train"]["optim_g"]["lr"], float)  # the files' `!!float 2e-4`


def test_parse_yaml_is_safe_on_its_own() -> None:
    with pytest.raises(ConfigError, match=r"^src:1:1: tag '!!python/object/apply:os.getcwd' refused"):
        parse_yaml("!!python/object/apply:os.getcwd []", "src")
