"""The option schema: every key checked before any work, one line naming key, value and what is allowed."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import imdn_plugin
from imdn_plugin.errors import ConfigError
from imdn_plugin.integration.parse import BASICSR
from imdn_plugin.options import load_option_file, validate_options

REPO = Path(__file__).resolve().parents[2]


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------- the checks
BASE: dict = {
    "name": "t", "model_type": "IMDNModel", "scale": 4, "num_gpu": 0, "manual_seed": 0, "is_train": False,
    "datasets": {"test_1": {"name": "s", "type": "PairedImageDataset", "dataroot_gt": "HR", "dataroot_lq": "LR",
                            "io_backend": {"type": "disk"}}},
    "network_g": {"type": "IMDN", "num_feat": 16, "num_block": 1, "upscale": 4},
    "path": {"pretrain_network_g": None, "strict_load_g": True},
    "val": {"save_img": False},
}  # fmt: skip
TRAIN: dict = {
    **BASE, "is_train": True,
    "datasets": {"train": {"name": "s", "type": "PairedImageDataset", "dataroot_gt": "HR", "dataroot_lq": "LR",
                           "io_backend": {"type": "disk"}, "gt_size": 16, "num_worker_per_gpu": 0,
                           "batch_size_per_gpu": 2}},
    "train": {"total_iter": 4, "optim_g": {"type": "Adam", "lr": 2e-4}, "scheduler": {"type": "MultiStepLR", "milestones": [2]},
              "pixel_opt": {"type": "L1Loss"}},
    "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "use_tb_logger": False},
    "val": None,
}  # fmt: skip


def validate(base: dict, edit: Callable[[dict], Any] = lambda o: None) -> Any:
    imdn_plugin.register()
    opt = copy.deepcopy(base)
    edit(opt)
    return validate_options(opt, BASICSR, check_paths=False)


validate_schema = validate


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
        (BASE, _set("datasets", {}), "datasets: must be a non-empty mapping of phase: dataset options"),
        (BASE, _set("network_g", "type", "IMDM"), "network_g:type: unknown network 'IMDM' (did you mean 'IMDN'?)"),
        (BASE, _set("network_g", "num_feat", 24), "network_g: num_feat must be a multiple of 16 for IMDN"),
        (BASE, _set("network_g", {"type": "IMDN_AS", "num_feat": 40}), "network_g: num_feat must be a multiple of 16 for IMDN_AS"),
        (BASE, _set("scale", 3), "scale: 3 but network_g (IMDN) upscales x4; set scale: 4 or network_g:upscale: 3"),
        # IMDN's default upscale is 4: scale 2 without network_g:upscale is refused too
        (BASE, lambda o: (o["network_g"].pop("upscale"), o.update(scale=2)), "scale: 2 but network_g (IMDN) upscales x4"),
        (BASE, _set("num_gpu", -1), "num_gpu: must be auto or an integer >= 0 (0 = CPU), got -1"),
        (BASE, _set("num_gpu", "all"), "num_gpu: must be auto or an integer >= 0"),
        (BASE, _set("manual_seed", "x"), "manual_seed: must be an integer from 0 to 2147483647 or ~ (a random seed), got 'x'"),
        (BASE, _set("val", DELETE), "missing 'val' block with save_img (BasicSR's test pipeline reads it)"),
        (BASE, _set("path", "pretrain_network_g", 3), "path:pretrain_network_g: must be a file path or ~ (random weights), got 3"),
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
            validate(BASE, edit)  # IMDN's default upscale is BASE's scale 4
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
    from imdn_plugin.options.files import check_pretrained

    def validate(base: dict, edit: Callable[[dict], Any]) -> None:  # the schema, then the file's check
        check_pretrained(validate_schema(base, edit), BASICSR)

    validate(BASE, _set("path", "pretrain_network_g", str(x4)))
    validate(BASE, lambda o: o["path"].update(pretrain_network_g=str(x2), strict_load_g=False))  # warm start
    with pytest.raises(ConfigError) as err:
        validate(BASE, _set("path", "pretrain_network_g", str(x2)))
    assert (
        f"path:pretrain_network_g: {x2}: checkpoint is IMDN x2 (num_feat=16, num_block=1, 3->3 channels) "
        "but network_g is IMDN x4 (num_feat=16, num_block=1, 3->3 channels)"
    ) in one_line(err)
    with pytest.raises(ConfigError, match="checkpoint is IMDN x4 .* but network_g is IMDN_AS"):
        validate(BASE, lambda o: o.update(
            network_g={"type": "IMDN_AS", "num_feat": 16, "num_block": 1}, path={"pretrain_network_g": str(x4)}))  # fmt: skip


@pytest.mark.parametrize("path", sorted((REPO / "options").glob("*.yml")), ids=lambda p: p.name)
def test_shipped_option_files_parse_and_validate(path: Path) -> None:
    imdn_plugin.register()
    opt = load_option_file(path)
    opt["is_train"] = path.name.startswith("train_")
    validate_options(opt, BASICSR, check_paths=False)
    if opt["is_train"]:
        assert isinstance(opt["train"]["optim_g"]["lr"], float)  # the files' `!!float 2e-4`
