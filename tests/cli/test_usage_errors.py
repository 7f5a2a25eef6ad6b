"""A usage error of every subcommand is answered before torch or BasicSR load (a thin CLI, issue 17).

Each case runs the command in a fresh interpreter and reads ``sys.modules`` at the moment of the
error: a heavy import slipped back in front of argument parsing fails here, whatever the machine's
speed (timings are measured for the docs, not asserted).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "imdn_plugin" / "cli"

#: Runs ``main(argv)`` and reports its exit status and which heavy modules were loaded when it returned.
PROBE = """
import json, sys
from imdn_plugin.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:  # argparse's own exit (infer, export, info, --help)
    rc = exc.code
print(json.dumps({"rc": rc, "loaded": sorted(m for m in ("torch", "basicsr", "tqdm") if m in sys.modules)}))
"""


def probe(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    """``basicsr ARGS`` in a fresh interpreter (this checkout first on the path): exit status, heavy
    modules loaded at that moment, stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert res.stdout.strip(), res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return out["rc"], out["loaded"], res.stderr


CASES = [
    ("train without -opt", ["train"], "basicsr: error: the following arguments are required: -opt (see basicsr train --help)"),
    ("train, missing file", ["train", "-opt", "nope.yml"], "basicsr: error: -opt: option file not found: nope.yml (cwd: {cwd})"),
    ("test, missing file", ["test", "-opt", "nope.yml"], "basicsr: error: -opt: option file not found: nope.yml (cwd: {cwd})"),
    ("test, folder", ["test", "-opt", "."], "basicsr: error: .: is a folder, not an option file"),
    ("train, bad launcher", ["train", "-opt", "x.yml", "--launcher", "mpi"],
     "basicsr: error: argument --launcher: invalid choice: 'mpi' (choose from 'none', 'pytorch', 'slurm') (see basicsr train --help)"),
    ("infer --tile x", ["infer", "-i", "a", "-o", "b", "--weights", "w.pth", "--tile", "x"],
     "basicsr: error: argument --tile: invalid int value: 'x' (see basicsr infer --help)"),
    ("infer --mode", ["infer", "-i", "a", "-o", "b", "--weights", "w.pth", "--mode", "tiles"],
     "basicsr: error: argument --mode: invalid choice: 'tiles' (choose from 'auto', 'whole', 'acs', 'tile') (see basicsr infer --help)"),
    ("export without --weights", ["export", "-o", "m.onnx"],
     "basicsr: error: the following arguments are required: --weights (see basicsr export --help)"),
    ("info, bad flag", ["info", "--network", "IMDN", "--bad"], "basicsr: error: unrecognized arguments: --bad (see basicsr info --help)"),
    ("unknown command", ["tran"], "basicsr: error: unknown command 'tran' (train, test, infer, export, info)"),
]  # fmt: skip


@pytest.mark.parametrize("args, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_usage_error_before_torch_loads(args: list[str], expected: str, tmp_path: Path) -> None:
    rc, loaded, err = probe(args, tmp_path)
    assert err.strip() == expected.format(cwd=tmp_path)
    assert rc == 2
    assert loaded == [], f"loaded before the usage error: {loaded}"


def test_a_good_option_file_gets_past_the_check(tmp_path: Path) -> None:
    """The early check refuses only what the pipeline refuses: a readable file goes on to BasicSR
    (here its own option check: an unknown model type), which loads torch."""
    (tmp_path / "o.yml").write_text("name: t\nmodel_type: NoSuchModel\n")
    rc, loaded, err = probe(["test", "-opt", "o.yml"], tmp_path)
    assert rc == 2 and "torch" in loaded, err
    assert err.startswith("basicsr: error: o.yml: ") and "Traceback" not in err


@pytest.mark.parametrize("command", ["train", "test", "infer", "export", "info"])
def test_help_before_torch_loads_except_listed_choices(command: str, tmp_path: Path) -> None:
    rc, loaded, err = probe([command, "--help"], tmp_path)
    assert rc == 0, err
    # infer and export list choices that live beside torch code (backends, alpha modes, exporters)
    assert ("torch" in loaded) == (command in ("infer", "export"))


def test_the_console_script_answers_the_same(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("basicsr")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "imdn_plugin"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([*cmd, "train", "-opt", "nope.yml"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert res.returncode == 2
    assert res.stderr == f"basicsr: error: -opt: option file not found: nope.yml (cwd: {tmp_path})\n"


def test_usage_lists_every_command_and_the_force_yml_form(capsys: pytest.CaptureFixture) -> None:
    from imdn_plugin.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train", "test", "infer", "export", "info"):
        assert f"  basicsr {command} " in out, command
    assert "KEY:PATH=VALUE" in out and "KEY=VALUE" not in out.replace("KEY:PATH=VALUE", "")


# --------------------------------------------------------------------------- choices read late
def test_deferred_choices_are_the_real_ones(capsys: pytest.CaptureFixture) -> None:
    from imdn_plugin.cli.export import build_parser as export_parser
    from imdn_plugin.cli.infer import build_parser as infer_parser
    from imdn_plugin.export import EXPORTERS, PRECISIONS
    from imdn_plugin.inference.runtimes import BACKENDS
    from imdn_plugin.upscaler import ALPHA_MODES, DEFAULT_ALPHA

    base = ["-i", "a", "-o", "b", "--weights", "w"]
    for backend in BACKENDS:
        assert infer_parser().parse_args([*base, "--backend", backend]).backend == backend
    with pytest.raises(SystemExit):
        infer_parser().parse_args([*base, "--backend", "tensorrt"])
    assert f"(choose from {', '.join(map(repr, BACKENDS))})" in capsys.readouterr().err
    for mode in ALPHA_MODES:
        assert infer_parser().parse_args([*base, "--alpha", mode]).alpha == mode
    assert infer_parser().parse_args(base).alpha is None  # main() fills in DEFAULT_ALPHA
    shown = " ".join(infer_parser().format_help().split())
    assert "{" + ",".join(ALPHA_MODES) + "}" in shown and f"(default {DEFAULT_ALPHA})" in shown
    for precision in PRECISIONS:
        assert export_parser().parse_args(["--weights", "w", "-o", "m", "--precision", precision]).precision == precision
    for exporter in EXPORTERS:
        assert export_parser().parse_args(["--weights", "w", "-o", "m", "--exporter", exporter]).exporter == exporter
    assert "{" + ",".join(EXPORTERS) + "}" in " ".join(export_parser().format_help().split())


# --------------------------------------------------------------------------- one flag list
@pytest.mark.parametrize(
    "argv",
    [
        ["-opt", "x.yml"],
        ["-opt", "x.yml", "--launcher", "pytorch", "--auto_resume", "--debug", "--local_rank", "3",
         "--force_yml", "a:b=1", "c=[1, 2]"],
    ],
)  # fmt: skip
def test_train_test_flags_are_basicsrs(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The early parser reads the same flags, into the same values, as the pipeline's own parser."""
    from imdn_plugin.cli.pipeline import build_parser
    from imdn_plugin.integration.parse import _arguments

    monkeypatch.setattr(sys, "argv", ["basicsr train", *argv])
    assert vars(build_parser("train").parse_args(argv)) == vars(_arguments())


# --------------------------------------------------------------------------- no import cycle
def test_subcommand_modules_never_import_the_package() -> None:
    """``cli/__init__`` imports the subcommands; they import what they share from ``cli/common``."""
    submodules = {p.stem for p in CLI.glob("*.py")} - {"__init__"}
    for path in sorted(CLI.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module:
                names = {a.name for a in node.names}
                assert names <= submodules, f"{path.name}: from . import {', '.join(sorted(names - submodules))}"
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module != "imdn_plugin.cli", f"{path.name}: from imdn_plugin.cli import ..."
            if isinstance(node, ast.Import):
                assert all(a.name != "imdn_plugin.cli" for a in node.names), f"{path.name}: import imdn_plugin.cli"
