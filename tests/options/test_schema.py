"""The option schema: every key checked before any work, one line naming key, value and what is allowed."""
from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# ---------------------------------------------------------------------------- the shipped files, one key wrong
def shipped(name: str) -> dict:
    opt = load_option_file(REPO / "options" / name)
    opt["is_train"] = name.startswith("train_")
    return opt


def edited(opt: dict, path: tuple, value: Any) -> dict:
    opt = copy.deepcopy(opt)
    node = opt
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return opt


ISSUE_CASES = [
    # (file, key path, value, the line starts with)
    ("train_IMDN_x4_demo.yml", ("train", "optim_g", "lr"), "1e-3",
     "train:optim_g:lr: must be a number > 0 and <= 10 (YAML reads 1e-3 as a string: write 1e-3 as 1.0e-3 or !!float 1e-3), got '1e-3'"),
    ("train_IMDN_x4_demo.yml", ("train", "total_iter"), 0, "train:total_iter: must be a whole number from 1 to"),
    ("train_IMDN_x4_demo.yml", ("train", "total_iter"), -1, "train:total_iter: must be a whole number from 1 to"),
    ("train_IMDN_x4_demo.yml", ("val", "val_freq"), 0, "val:val_freq: must be a whole number from 1"),
    ("train_IMDN_x4_demo.yml", ("logger", "print_freq"), 0, "logger:print_freq: must be a whole number from 1"),
    ("train_IMDN_x4_demo.yml", ("logger", "save_checkpoint_freq"), 0, "logger:save_checkpoint_freq: must be a whole"),
    ("train_IMDN_x4_demo.yml", ("name",), "n" * 256, "name: 256 bytes long; at most 200"),
    ("train_IMDN_x4_demo.yml", ("name",), "é" * 101, "name: 202 bytes long; at most 200"),
    ("train_IMDN_x4_demo.yml", ("network_g", "type"), ["IMDN"], "network_g:type: must be the name of a network, got a list"),
    ("train_IMDN_x4_demo.yml", ("network_g", "type"), {"IMDN": 1}, "network_g:type: must be the name of a network, got a mapping"),
    ("train_IMDN_x4_demo.yml", ("path", "param_key_g"), ["params"], "path:param_key_g: must be a checkpoint key"),
    ("train_IMDN_x4_demo.yml", ("path", "param_key_g"), {"a": 1}, "path:param_key_g: must be a checkpoint key"),
    ("train_IMDN_x4_demo.yml", ("scale",), None, "scale: must be the SR factor"),
    ("train_IMDN_x4_demo.yml", ("manual_seed",), -1, "manual_seed: must be an integer from 0 to 2147483647"),
    ("train_IMDN_x4_demo.yml", ("datasets", "train", "gt_size"), -1, "datasets:train:gt_size: must be an integer from 1"),
    ("train_IMDN_x4_demo.yml", ("datasets", "train", "gt_size"), 98, "datasets:train:gt_size: must be a multiple of scale (4), got 98"),
    ("train_IMDN_AS.yml", ("datasets", "train", "gt_size"), 98, "datasets:train:gt_size: must be a multiple of 4 for IMDN_AS"),
    ("train_IMDN_x4_demo.yml", ("datasets", "train", "io_backend"), "lmdb", "datasets:train:io_backend: must be a mapping"),
    ("train_IMDN_x4_demo.yml", ("datasets", "train", "filename_tmpl"), "{}_{}", "datasets:train:filename_tmpl: must be a file name template with exactly one '{}'"),
    ("train_IMDN_x4_demo.yml", ("datasets", "train", "filename_tmpl"), "{0}{1}", "datasets:train:filename_tmpl: must be"),
    ("train_IMDN_x4_demo.yml", ("datasets", "train", "name"), ["a"], "datasets:train:name: must be the dataset's name"),
    ("train_IMDN_x4_demo.yml", ("datasets", "train", "dataset_enlarge_ratio"), 0, "datasets:train:dataset_enlarge_ratio: must be a number > 0"),
    ("train_IMDN_x4_demo.yml", ("datasets", "train", "prefetch_mode"), "gpu", "datasets:train:prefetch_mode: must be one of cpu, cuda"),
    ("train_IMDN_x4_demo.yml", ("datasets", "train", "prefetch_mode"), "cuda", "datasets:train:prefetch_mode: needs pin_memory: true"),
    ("train_IMDN_x4_demo.yml", ("train", "ema_decay"), 1, "train:ema_decay: must be a number >= 0 and < 1, got 1"),
    ("train_IMDN_x4_demo.yml", ("train", "warmup_iter"), -2, "train:warmup_iter: must be a whole number from -1"),
    ("train_IMDN_x4_demo.yml", ("train", "optim_g", "betas"), [0.9], "train:optim_g:betas: must be a list of 2 values"),
    ("train_IMDN_x4_demo.yml", ("train", "optim_g", "lr"), -1, "train:optim_g:lr: must be a number > 0"),
    ("train_IMDN_x4_demo.yml", ("train", "optim_g", "momentum"), 0.9, "train:optim_g (Adam): unknown key 'momentum'"),
    ("train_IMDN_x4_demo.yml", ("train", "scheduler", "milestones"), [0], "train:scheduler:milestones[0]: must be a whole number from 1"),
    ("train_IMDN_x4_demo.yml", ("train", "scheduler", "gamma"), "0.5", "train:scheduler:gamma: must be a number > 0 and <= 10 (YAML reads '0.5' as a string"),
    ("train_IMDN_x4_demo.yml", ("train", "scheduler", "restart_weights"), [1, 1], "train:scheduler:restart_weights: must have one weight per restart (1)"),
    ("train_IMDN_x4_demo.yml", ("train", "scheduler", "type"), "CosineAnnealing", "train:scheduler:type: unknown learning-rate scheduler 'CosineAnnealing' (did you mean 'CosineAnnealingRestartLR'?)"),
    ("train_IMDN_x4_demo.yml", ("train", "pixel_opt", "reduction"), "avg", "train:pixel_opt:reduction: must be one of none, mean, sum, got 'avg'"),
    ("train_IMDN_x4_demo.yml", ("train", "pixel_opt", "loss_weight"), [1], "train:pixel_opt:loss_weight: must be a number from 0 to"),
    ("train_IMDN_x4_demo.yml", ("train", "pixel_opt", "type"), "L1loss", "train:pixel_opt:type: unknown loss 'L1loss' (did you mean 'L1Loss'?)"),
    ("train_IMDN_x4_demo.yml", ("train", "pixel_opt"), None, "train: missing key 'pixel_opt'"),
    ("train_IMDN_x4_demo.yml", ("val", "metrics", "psnr", "crop_border"), -1, "val:metrics:psnr:crop_border: must be an integer from 0"),
    ("train_IMDN_x4_demo.yml", ("val", "metrics", "psnr", "test_y_channel"), "yes", "val:metrics:psnr:test_y_channel: must be true or false, got 'yes'"),
    ("train_IMDN_x4_demo.yml", ("val", "metrics", "psnr", "crop"), 4, "val:metrics:psnr (calculate_psnr): unknown key 'crop' (did you mean 'crop_border'?)"),
    ("train_IMDN_x4_demo.yml", ("val", "metrics", "psnr", "better"), "more", "val:metrics:psnr:better: must be one of higher, lower"),
    ("train_IMDN_x4_demo.yml", ("logger", "use_tb_logger"), False, None),  # accepted: wandb:project is ~
    ("train_IMDN_x4_demo.yml", ("dist_params", "port"), 0, "dist_params:port: must be an integer from 1 to 65535, got 0"),
    ("train_IMDN_x4_demo.yml", ("train", "amp"), "fp8", "train:amp: must be one of ~, bf16, fp16, got 'fp8'"),
    ("train_IMDN_x4_demo.yml", ("network_g", "num_feat"), 10**9, "network_g:num_feat: must be an integer from 1 to 1024"),
    ("train_IMDN_x4_demo.yml", ("network_g", "num_block"), 0, "network_g:num_block: must be an integer from 1 to 64, got 0"),
    ("train_IMDN_x4_demo.yml", ("num_gpu",), -1, "num_gpu: must be auto or an integer >= 0 (0 = CPU), got -1"),
    ("test_IMDN_x4.yml", ("inference", "tile"), 2, "inference:tile: must be an integer >= 4 or ~ (no tiling), got 2"),
    ("test_IMDN_x4.yml", ("inference", "tiles"), 64, "inference: unknown key 'tiles' (did you mean 'tile'?)"),
    ("test_IMDN_x4.yml", ("val", "save_img"), "yes", "val:save_img: must be true or false, got 'yes'"),
    ("test_IMDN_x4.yml", ("val", "suffix"), 5, "val:suffix: must be an image name suffix or ~ (the experiment name), got 5"),
    ("test_IMDN_x4.yml", ("datasets", "test_1", "dataroot_lq"), ["a"], "datasets:test_1:dataroot_lq: must be a folder path"),
    ("test_IMDN_x4.yml", ("datasets", "test_1", "dataroot_lq"), "a\0b", "datasets:test_1:dataroot_lq: must be a folder path"),
    ("test_IMDN_x4.yml", ("datasets", "test_1", "dataroot_lq"), None, "datasets:test_1: missing key 'dataroot_lq'"),
    ("test_IMDN_AS.yml", ("datasets", "test_1", "scale"), 0.5, "datasets:test_1:scale: must be a number from 1 to 16 or [min, max]"),
]  # fmt: skip


@pytest.mark.parametrize("file, path, value, expected", ISSUE_CASES, ids=[":".join(map(str, c[1])) + f"={c[2]!r}"[:30] for c in ISSUE_CASES])
def test_one_wrong_key_of_a_shipped_file_is_one_line(file: str, path: tuple, value: Any, expected: str) -> None:
    imdn_plugin.register()
    opt = edited(shipped(file), path, value)
    if expected is None:
        validate_options(opt, BASICSR, check_paths=False)
        return
    with pytest.raises(ConfigError) as err:
        validate_options(opt, BASICSR, check_paths=False)
    assert one_line(err).startswith(expected), str(err.value)


def test_wandb_needs_tensorboard() -> None:
    imdn_plugin.register()
    opt = edited(edited(shipped("train_IMDN_x4_demo.yml"), ("logger", "wandb", "project"), "p"), ("logger", "use_tb_logger"), False)
    with pytest.raises(ConfigError) as err:
        validate_options(opt, BASICSR, check_paths=False)
    assert one_line(err).startswith("logger:use_tb_logger: must be true with logger:wandb:project set")
    opt["name"] = "debug_x"  # BasicSR runs debug trainings without loggers
    validate_options(opt, BASICSR, check_paths=False)


def test_fp16_inference_needs_cuda() -> None:
    imdn_plugin.register()
    opt = edited(shipped("test_IMDN_x4.yml"), ("inference", "precision"), "fp16")
    with pytest.raises(ConfigError) as err:
        validate_options(opt, BASICSR, check_paths=False, cuda=False)
    assert one_line(err) == "inference:precision: must be fp32, bf16 or auto on cpu (fp16 runs on a CUDA device only), got 'fp16'"
    assert validate_options(opt, BASICSR, check_paths=False, cuda=True).inference.precision == "fp16"


def test_whole_floats_become_ints_in_the_record() -> None:
    imdn_plugin.register()
    options = validate_options(shipped("train_IMDN_x4.yml"), BASICSR, check_paths=False)
    assert options.val.val_freq == 5000 and type(options.val.val_freq) is int  # `!!float 5e3` in the file
    assert options.logger.save_checkpoint_freq == 5000 and options.train.total_iter == 1000000
    assert options.train.optim_g.type == "Adam" and options.train.optim_g.args["lr"] == 2e-4
    assert [d.key for d in options.datasets] == ["train", "val"] and options.datasets[0].gt_size == 192
    assert options.inference.precision == "fp32" and options.save_safetensors is False


def test_the_record_is_frozen() -> None:
    import dataclasses

    imdn_plugin.register()
    options = validate_options(shipped("test_IMDN_x4.yml"), BASICSR, check_paths=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.name = "x"  # type: ignore[misc]


def test_crop_border_against_the_image_sizes(tmp_path: Path) -> None:
    import numpy as np

    from imdn_plugin.data.imageio import write_png_atomic
    from imdn_plugin.options.files import check_crop_border

    imdn_plugin.register()
    for name, (h, w) in {"a.png": (30, 40), "b.png": (12, 50)}.items():
        write_png_atomic(tmp_path / name, np.zeros((h, w, 3), np.uint8))
    opt = edited(shipped("test_IMDN_x4.yml"), ("datasets", "test_1", "dataroot_gt"), str(tmp_path))
    check_crop_border(validate_options(edited(opt, ("val", "metrics", "psnr", "crop_border"), 5), BASICSR, check_paths=False))
    with pytest.raises(ConfigError) as err:  # 2 * 6 = 12: nothing of b.png left to compare
        check_crop_border(validate_options(edited(opt, ("val", "metrics", "ssim", "crop_border"), 6), BASICSR, check_paths=False))
    assert one_line(err) == ("val:metrics:ssim:crop_border: must be less than half the smallest image side of "
                             "datasets:test_1 (b.png: 12 pixels), got 6")  # fmt: skip


def test_the_model_takes_the_parsed_record(tmp_path: Path) -> None:
    """IMDNModel uses the record attached by the command, and does not parse the dict again."""
    from basicsr.models import build_model

    from imdn_plugin.options import attach, parse

    imdn_plugin.register()
    opt = {"model_type": "IMDNModel", "num_gpu": 0, "dist": False, "is_train": False, "path": {},
           "network_g": {"type": "IMDN", "upscale": 2, "num_feat": 16, "num_block": 1}, "inference": {"tile": 64}}  # fmt: skip
    record = parse(opt, BASICSR, complete=False)
    opt["inference"] = {"tile": "not checked again"}  # what the model would refuse if it parsed the dict
    model = build_model(attach(opt, record))
    assert model.options is not record and model.options == record  # deep-copied by build_model, the same values
    assert model.inference_opt.tile == 64
    with pytest.raises(ConfigError, match="inference:tile"):
        build_model(opt)  # a dict built by hand is parsed when the model is made


def test_the_reference_lists_every_key() -> None:
    """docs/options.md names every key the schema knows (scripts/dev/options_reference.py writes its tables)."""
    import dataclasses

    from imdn_plugin.options import inference, schema

    text = (REPO / "docs" / "options.md").read_text()
    records = (schema.Options, schema.DatasetOptions, schema.IoBackend, schema.PathOptions, schema.TrainOptions,
               schema.ValOptions, schema.LoggerOptions, schema.WandbOptions, schema.DistParams)  # fmt: skip
    keys = [f.name for cls in records for f in dataclasses.fields(cls) if "rule" in f.metadata]
    keys += list(inference.RULES) + list(schema.ARG_RULES)
    missing = [k for k in keys if f"| `{k}` |" not in text]
    assert not missing
