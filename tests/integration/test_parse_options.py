"""The ``basicsr`` command reads option files and ``--force_yml`` as data (in-process ``main``).

BasicSR 1.4.2's own ``parse_options`` runs ``!!python/object/apply`` tags of the
option file and ``eval``/``exec``s ``--force_yml`` entries; each test below
puts a command that creates a marker file on one of those paths.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import imdn_plugin
from imdn_plugin.cli import main

REPO = Path(__file__).resolve().parents[2]

TEST_OPT: dict = {
    "name": "t", "model_type": "IMDNModel", "scale": 4, "num_gpu": 0, "manual_seed": 0,
    "datasets": {"test_1": {"name": "s", "type": "PairedImageDataset", "dataroot_gt": "data/HR",
                            "dataroot_lq": "data/LR", "io_backend": {"type": "disk"}}},
    "network_g": {"type": "IMDN", "num_feat": 16, "num_block": 1, "upscale": 4},
    "path": {"pretrain_network_g": None, "strict_load_g": True},
    "val": {"save_img": False, "suffix": None},
}  # fmt: skip
TRAIN_OPT: dict = {
    **TEST_OPT,
    "datasets": {"train": {**TEST_OPT["datasets"]["test_1"], "gt_size": 32, "num_worker_per_gpu": 0,
                           "batch_size_per_gpu": 2}},
    "train": {"total_iter": 2, "optim_g": {"type": "Adam", "lr": 1e-3}, "scheduler": {"type": "MultiStepLR", "milestones": [9]},
              "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0}},
    "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "use_tb_logger": False},
}  # fmt: skip
del TRAIN_OPT["val"]


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main() sets sys.argv for BasicSR
    (tmp_path / "data/HR").mkdir(parents=True)
    (tmp_path / "data/LR").mkdir(parents=True)
    return tmp_path


def write(cwd: Path, base: dict, edit: Callable[[dict], Any] | None = None, text: str | None = None) -> str:
    if text is None:
        opt = copy.deepcopy(base)
        if edit is not None:
            edit(opt)
        text = yaml.safe_dump(opt, sort_keys=False)
    (cwd / "opt.yml").write_text(text)
    return "opt.yml"


def error_line(capsys: pytest.CaptureFixture, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("basicsr: error: "), err[-2000:]
    return lines[0][len("basicsr: error: "):]


def nothing_created(cwd: Path) -> bool:
    return not any((cwd / d).exists() for d in ("experiments", "results", "tb_logger"))


# ---------------------------------------------------------------------------- code never runs
@pytest.mark.parametrize("command, base", [("test", TEST_OPT), ("train", TRAIN_OPT)])
def test_python_tag_in_option_file_never_runs(cwd: Path, capsys: pytest.CaptureFixture, command: str, base: dict) -> None:
    marker = cwd / "MARKER"
    text = yaml.safe_dump(base, sort_keys=False).replace(
        "manual_seed: 0", f"manual_seed: !!python/object/apply:os.system ['touch {marker}']"
    )  # os.system returns 0: BasicSR's loader would run it and go on with manual_seed 0
    assert "!!python" in text
    line = error_line(capsys, main([command, "-opt", write(cwd, base, text=text)]))
    assert line.startswith("opt.yml:5:14: tag '!!python/object/apply:os.system' refused: option files are data")
    assert not marker.exists() and nothing_created(cwd)


@pytest.mark.parametrize("command, base", [("test", TEST_OPT), ("train", TRAIN_OPT)])
def test_force_yml_value_never_runs(cwd: Path, capsys: pytest.CaptureFixture, command: str, base: dict) -> None:
    marker = cwd / "MARKER"
    entry = f'name=[__import__("os").system("touch {marker}")]'  # BasicSR eval()s values that start with '['
    line = error_line(capsys, main([command, "-opt", write(cwd, base), "--force_yml", entry]))
    assert line.startswith("opt.yml: name: must be a non-empty folder name") and "__import__" in line
    assert not marker.exists() and nothing_created(cwd)


def test_force_yml_key_path_is_never_executed(cwd: Path, capsys: pytest.CaptureFixture) -> None:
    marker = cwd / "MARKER"
    # BasicSR builds 'opt["<key>"]=value' from the key path and exec()s it:
    # opt["name"];__import__("os").system("touch ...");opt["name"]=value
    entry = f'name"];__import__("os").system("touch {marker}");opt["name=x'
    line = error_line(capsys, main(["test", "-opt", write(cwd, TEST_OPT), "--force_yml", entry]))
    assert line.startswith("--force_yml ") and "unknown key path" in line
    assert not marker.exists() and nothing_created(cwd)


# ---------------------------------------------------------------------------- one-line errors
CASES = [
    ("yaml syntax", None, "name: t\n  model_type: x\n", [], "opt.yml:2:13: YAML syntax error: mapping values are not allowed here"),
    ("empty file", None, "", [], "opt.yml: option file is empty"),
    ("list file", None, "- name: t\n", [], "opt.yml: expected a mapping of options (key: value lines) at the top, found a list"),
    ("duplicate key", None, "name: a\nscale: 4\nname: b\n", [], "opt.yml:3:1: duplicate key 'name'"),
    ("model_type", lambda o: o.update(model_type="SRModle"), None, [], "opt.yml: model_type: unknown model 'SRModle' (did you mean 'SRModel'?)"),
    ("dataset type", lambda o: o["datasets"]["test_1"].update(type="PairedImgDataset"), None, [],
     "opt.yml: datasets:test_1:type: unknown dataset 'PairedImgDataset' (did you mean 'PairedImageDataset'?)"),
    ("num_gpu", lambda o: o.update(num_gpu=torch.cuda.device_count() + 1), None, [], f"opt.yml: num_gpu: {torch.cuda.device_count() + 1} GPUs asked for"),
    ("force foo", None, None, ["--force_yml", "foo"], "--force_yml 'foo': expected KEY:PATH=VALUE with exactly one '='"),
    ("force a=b=c", None, None, ["--force_yml", "a=b=c"], "--force_yml 'a=b=c': expected KEY:PATH=VALUE with exactly one '='"),
    ("force unknown path", None, None, ["--force_yml", "path:pretrain_netwrk_g=x.pth"],
     "--force_yml 'path:pretrain_netwrk_g=x.pth': unknown key path 'path:pretrain_netwrk_g': no key 'pretrain_netwrk_g' under path (did you mean 'pretrain_network_g'?)"),
    ("num_feat", lambda o: o["network_g"].update(num_feat=24), None, [], "opt.yml: network_g: num_feat must be a multiple of 16 for IMDN"),
    ("persistent workers", lambda o: o["datasets"]["test_1"].update(persistent_workers=True, num_worker_per_gpu=0), None, [],
     "opt.yml: datasets:test_1:persistent_workers: true needs loader workers"),
    ("top-level key", lambda o: o.update(netwrok_g={}), None, [], "opt.yml: unknown top-level key 'netwrok_g' (did you mean 'network_g'?)"),
    ("scale vs network", lambda o: o.update(scale=3), None, [], "opt.yml: scale: 3 but network_g (IMDN) upscales x4"),
    ("name", lambda o: o.update(name="../../x"), None, [], "opt.yml: name: '../../x' must be a plain folder name"),
    ("no -opt", None, None, ["--no-opt"], "the following arguments are required: -opt"),
]  # fmt: skip


@pytest.mark.parametrize("edit, text, extra, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_before_any_work(
    cwd: Path, capsys: pytest.CaptureFixture, edit: Any, text: str | None, extra: list[str], expected: str
) -> None:
    args = ["test", "-opt", write(cwd, TEST_OPT, edit, text)] if extra != ["--no-opt"] else ["test"]
    line = error_line(capsys, main([*args, *(e for e in extra if e != "--no-opt")]))
    assert expected in line
    assert nothing_created(cwd)


def test_missing_option_file(cwd: Path, capsys: pytest.CaptureFixture) -> None:
    line = error_line(capsys, main(["train", "-opt", "options/nope.yml"]))
    assert line == f"-opt: option file not found: options/nope.yml (cwd: {cwd})"
    assert nothing_created(cwd)


# ---------------------------------------------------------------------------- BasicSR's parse_options, reproduced
def _basicsr_parse_options() -> Callable:
    """BasicSR's own ``parse_options``, from its source file (the module's is replaced)."""
    import basicsr.utils.options

    spec = importlib.util.spec_from_file_location("_basicsr_options_original", basicsr.utils.options.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_options


@pytest.mark.parametrize(
    "file, is_train, extra",
    [
        ("test_IMDN_x4.yml", False, ["--force_yml", "path:pretrain_network_g=~/w.pth", "val:save_img=false",
                                     "datasets:test_1:dataroot_lq=data/LR", "datasets:test_1:dataroot_gt=data/HR"]),
        ("train_IMDN_x4_demo.yml", True, ["--debug", "--auto_resume", "--force_yml", "train:optim_g:lr=!!float 1e-3",
                                          "train:scheduler:milestones=[100, 200]", "manual_seed=5",
                                          "datasets:train:dataroot_gt=data/HR", "datasets:train:dataroot_lq=data/LR",
                                          "datasets:train:io_backend:type=disk", "datasets:val:dataroot_gt=data/HR",
                                          "datasets:val:dataroot_lq=data/LR"]),
    ],
)  # fmt: skip
def test_same_result_as_basicsr_parse_options(
    cwd: Path, monkeypatch: pytest.MonkeyPatch, file: str, is_train: bool, extra: list[str]
) -> None:
    from imdn_plugin.integration.parse import parse_options

    imdn_plugin.register()
    monkeypatch.setenv("HOME", str(cwd))
    from imdn_plugin.archs import IMDN
    from imdn_plugin.checkpoint import atomic_torch_save

    atomic_torch_save({"params": IMDN(upscale=4).state_dict()}, cwd / "w.pth")  # fits network_g
    argv = ["basicsr x", "-opt", str(REPO / "options" / file), *extra]
    monkeypatch.setattr(sys, "argv", argv)
    theirs, their_args = _basicsr_parse_options()(str(cwd), is_train=is_train)
    monkeypatch.setattr(sys, "argv", argv)
    ours, our_args = parse_options(str(cwd), is_train=is_train)
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)
    assert vars(our_args) == vars(their_args)
    assert list(ours["train" if is_train else "val"]) == list(theirs["train" if is_train else "val"])  # order kept
    assert nothing_created(cwd)


def test_num_gpu_defaults_to_auto(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imdn_plugin.integration.parse import parse_options

    imdn_plugin.register()
    monkeypatch.setattr(sys, "argv", ["basicsr test", "-opt", write(cwd, TEST_OPT, lambda o: o.pop("num_gpu"))])
    opt, _ = parse_options(str(cwd), is_train=False)
    assert opt["num_gpu"] == torch.cuda.device_count()
    assert opt["path"]["results_root"] == str(cwd / "results" / "t")


# ---------------------------------------------------------------------------- issue 20: refused before any folder
ISSUE20 = [
    ("test", "fp16 on cpu", lambda o: o.update(inference={"precision": "fp16"}),
     "opt.yml: inference:precision: must be fp32, bf16 or auto on cpu (fp16 runs on a CUDA device only), got 'fp16'"),
    ("test", "name 256", lambda o: o.update(name="n" * 256), "opt.yml: name: 256 bytes long; at most 200"),
    ("train", "name 256", lambda o: o.update(name="n" * 256), "opt.yml: name: 256 bytes long; at most 200"),
    ("train", "total_iter 0", lambda o: o["train"].update(total_iter=0), "opt.yml: train:total_iter: must be a whole number from 1"),
    ("train", "total_iter -1", lambda o: o["train"].update(total_iter=-1), "opt.yml: train:total_iter: must be a whole number from 1"),
    ("train", "lr string", lambda o: o["train"]["optim_g"].update(lr="1e-3"), "write 1e-3 as 1.0e-3 or !!float 1e-3"),
    ("train", "print_freq 0", lambda o: o["logger"].update(print_freq=0), "opt.yml: logger:print_freq: must be a whole number from 1"),
    ("train", "gt_size -1", lambda o: o["datasets"]["train"].update(gt_size=-1), "opt.yml: datasets:train:gt_size: must be an integer from 1"),
    ("train", "wandb without tb", lambda o: o["logger"].update(wandb={"project": "p"}),
     "opt.yml: logger:use_tb_logger: must be true with logger:wandb:project set"),
    ("test", "scale ~", lambda o: o.update(scale=None), "opt.yml: scale: must be the SR factor"),
    ("train", "resume_state", lambda o: o["path"].update(resume_state="nope.state"),
     "opt.yml: path:resume_state: file does not exist: nope.state"),
    ("test", "manual_seed -1", lambda o: o.update(manual_seed=-1), "opt.yml: manual_seed: must be an integer from 0"),
    ("test", "network_g type list", lambda o: o["network_g"].update(type=["IMDN"]), "opt.yml: network_g:type: must be the name of a network, got a list"),
    ("test", "network_g type map", lambda o: o["network_g"].update(type={"IMDN": 1}), "opt.yml: network_g:type: must be the name of a network"),
    ("test", "param_key_g map", lambda o: o["path"].update(param_key_g={"a": 1}), "opt.yml: path:param_key_g: must be a checkpoint key"),
    ("test", "crop_border", lambda o: o["val"].update(metrics={"psnr": {"type": "calculate_psnr", "crop_border": 8}}),
     "opt.yml: val:metrics:psnr:crop_border: must be less than half the smallest image side of datasets:test_1"),
]  # fmt: skip


@pytest.mark.parametrize("command, edit, expected", [c[::2][:1] + c[2:] for c in ISSUE20], ids=[f"{c[0]}-{c[1]}" for c in ISSUE20])
def test_refused_before_any_folder_exists(cwd: Path, capsys: pytest.CaptureFixture, command: str, edit: Any, expected: str) -> None:
    import cv2
    import numpy as np

    for d in ("HR", "LR"):  # one 12x12 image: crop_border 8 leaves nothing
        cv2.imwrite(str(cwd / "data" / d / "a.png"), np.zeros((12, 12, 3), np.uint8))
    line = error_line(capsys, main([command, "-opt", write(cwd, TEST_OPT if command == "test" else TRAIN_OPT, edit)]))
    assert line.startswith(expected) or expected in line, line
    assert nothing_created(cwd)


def test_an_endless_option_file_is_refused_at_once(cwd: Path, capsys: pytest.CaptureFixture) -> None:
    line = error_line(capsys, main(["test", "-opt", "/dev/zero"]))
    assert line == "/dev/zero: larger than 1 MiB: not an option file (they are a few KB of YAML)"
    assert nothing_created(cwd)


def test_the_pipeline_receives_the_parsed_record(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_options returns BasicSR's dict, carrying the one record the checks built."""
    from imdn_plugin.integration.parse import parse_options
    from imdn_plugin.options import OptionDict, Options

    imdn_plugin.register()
    monkeypatch.setattr(sys, "argv", ["basicsr test", "-opt", write(cwd, TEST_OPT, lambda o: o.update(inference={"tile": 64}))])
    opt, _ = parse_options(str(cwd), is_train=False)
    assert isinstance(opt, OptionDict) and isinstance(opt.parsed, Options)
    assert opt.parsed.inference.tile == 64 and opt.parsed.name == opt["name"] == "t"
    assert copy.deepcopy(opt).parsed == opt.parsed  # BasicSR's build_model deep-copies the dict


def test_debug_name_is_checked_with_its_prefix(cwd: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(cwd, TRAIN_OPT, lambda o: o.update(name="n" * 195))
    line = error_line(capsys, main(["train", "-opt", path, "--debug"]))
    assert line.startswith("opt.yml: name: 201 bytes long; at most 200")  # debug_ + 195
    assert nothing_created(cwd)
