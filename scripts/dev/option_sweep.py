"""Wrong-value sweep over every key of every shipped option file (issue 20).

For every key of every file in ``options/`` (nested, as the files spell them),
the key is set in turn to a wrong type, a negative number, zero, a huge
number, ``~``, a list and a map; the other keys point at tiny stand-in data
(so that only the changed key can be wrong).  Each run is one of:

* ``--mode parse`` (default): the command's own code before any work, in this
  process: :func:`imdn_plugin.integration.parse.parse_options` with the
  command's ``sys.argv`` (reading, ``--force_yml``, every check, the process
  set-up and the seed), in an empty working folder;
* ``--mode command``: ``basicsr test|train -opt FILE`` as a subprocess, for a
  sample (``--sample N``), the accepted runs included (2 iterations).

Counted: runs, refusals (one ``ConfigError`` line; exit 2 for the command),
acceptances, raw tracebacks (goal 0) and runs that created anything under
``experiments/``, ``results/`` or ``tb_logger/`` before refusing (goal 0).

    python scripts/dev/option_sweep.py                 # all files, in-process
    python scripts/dev/option_sweep.py --mode command --sample 24
"""
from __future__ import annotations

import argparse
import copy
import random
import subprocess
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
OUTPUT_DIRS = ("experiments", "results", "tb_logger")


# ---------------------------------------------------------------------------- what is changed
def key_paths(opt: Mapping[str, Any], prefix: tuple = ()) -> Iterator[tuple]:
    """Every key of ``opt``, nested mappings included (lists are values)."""
    for key, value in opt.items():
        yield (*prefix, key)
        if isinstance(value, Mapping):
            yield from key_paths(value, (*prefix, key))


def mutations(value: Any) -> list[tuple[str, Any]]:
    """The wrong values tried for a key whose shipped value is ``value``."""
    if isinstance(value, bool):
        wrong = "yes"
    elif isinstance(value, (int, float)):
        wrong = "abc"
    elif isinstance(value, str):
        wrong = 12345
    else:
        wrong = "abc"
    return [("type", wrong), ("negative", -1), ("zero", 0), ("huge", 10**12), ("null", None),
            ("list", [1, 2]), ("map", {"a": 1})]  # fmt: skip


def with_value(opt: dict, path: tuple, value: Any) -> dict:
    opt = copy.deepcopy(opt)
    node = opt
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return opt


# ---------------------------------------------------------------------------- tiny data
def make_data(root: Path) -> Path:
    """Tiny stand-ins in the layout the shipped files name (folders, LMDBs, checkpoints)."""
    import cv2
    import numpy as np
    import torch

    from imdn_plugin.archs import IMDN, IMDN_AS
    from imdn_plugin.data.lmdb import LmdbWriter

    rng = np.random.default_rng(0)

    def photo(h: int, w: int) -> np.ndarray:
        return (rng.random((h, w, 3)) * 255).astype(np.uint8)

    (root / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    for s in (2, 3, 4):
        torch.save(IMDN(upscale=s).state_dict(), root / "checkpoints" / f"IMDN_x{s}.pth")
    torch.save(IMDN_AS().state_dict(), root / "checkpoints" / "IMDN_AS.pth")
    for name in ("a", "b"):
        hr = photo(36, 36)
        (root / "Set5/HR").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "Set5/HR" / f"{name}.png"), hr)
        for s in (2, 3, 4):
            (root / f"Set5/LR_bicubic/X{s}").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / f"Set5/LR_bicubic/X{s}/{name}x{s}.png"), cv2.resize(hr, (36 // s, 36 // s)))
        for sub in ("ValidationGT", "ValidationLR"):
            (root / "RealSR" / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "RealSR" / sub / f"{name}.png"), photo(30, 26))
    subs = {f"0001_s{i:03d}": photo(48, 48) for i in range(1, 5)}
    for s in (1, 2, 3, 4):
        target = root / ("DIV2K_train_HR_sub.lmdb" if s == 1 else f"DIV2K_train_LR_bicubic_X{s}_sub.lmdb")
        with LmdbWriter(target) as writer:
            for key, hr in subs.items():
                writer.put(key, hr if s == 1 else cv2.resize(hr, (48 // s, 48 // s)))
            writer.commit()
    return root


def adapt(opt: dict, data: Path) -> dict:
    """The file with its data paths on the stand-ins and a 2-iteration run (no other key changed)."""
    opt = copy.deepcopy(opt)
    opt["num_gpu"] = 0
    for phase, ds in opt["datasets"].items():
        scale = ds.get("scale", opt.get("scale"))
        if ds["type"] == "AnyScalePairedDataset" and "dataroot_lq" in ds:
            gt, lq = data / "RealSR/ValidationGT", data / "RealSR/ValidationLR"
        elif ds["io_backend"]["type"] == "lmdb":
            gt, lq = data / "DIV2K_train_HR_sub.lmdb", data / f"DIV2K_train_LR_bicubic_X{scale}_sub.lmdb"
        else:
            gt, lq = data / "Set5/HR", data / f"Set5/LR_bicubic/X{scale}"
        ds["dataroot_gt"] = str(gt)
        if "dataroot_lq" in ds:
            ds["dataroot_lq"] = str(lq)
        if phase == "train":
            ds.update(gt_size=24, batch_size_per_gpu=2, num_worker_per_gpu=0)
            for key in ("persistent_workers", "pin_memory"):
                if key in ds:
                    ds[key] = False
    if opt.get("path", {}).get("pretrain_network_g") is not None:
        net = opt["network_g"]
        name = "IMDN_AS" if net["type"] == "IMDN_AS" else f"IMDN_x{net['upscale']}"
        opt["path"]["pretrain_network_g"] = str(data / "checkpoints" / f"{name}.pth")
    if "train" in opt:
        opt["train"]["total_iter"] = 2
        opt["logger"].update(print_freq=1, use_tb_logger=False)
    return opt


# ---------------------------------------------------------------------------- one run
@dataclass
class Run:
    file: str
    key: str
    kind: str
    outcome: str = ""  # refused | accepted | traceback
    message: str = ""
    created: list = field(default_factory=list)


def run_parse(opt_file: Path, is_train: bool, cwd: Path) -> tuple[str, str]:
    """The command's code before any work, in this process (``sys.argv`` as the command sets it)."""
    from imdn_plugin.errors import ConfigError
    from imdn_plugin.integration.parse import parse_options

    argv = sys.argv
    sys.argv = ["basicsr " + ("train" if is_train else "test"), "-opt", str(opt_file)]
    try:
        parse_options(str(cwd), is_train=is_train)
        return "accepted", ""
    except ConfigError as exc:
        return "refused", str(exc)
    except Exception:  # noqa: BLE001 (the sweep counts raw tracebacks)
        return "traceback", traceback.format_exc(limit=-3).strip().splitlines()[-1]
    finally:
        sys.argv = argv


def run_command(opt_file: Path, is_train: bool, cwd: Path, timeout: float = 300) -> tuple[str, str]:
    """``basicsr test|train -opt FILE`` as a user runs it."""
    cmd = [sys.executable, "-m", "imdn_plugin", "train" if is_train else "test", "-opt", str(opt_file)]
    proc = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    err = proc.stderr
    if "Traceback (most recent call last)" in err:
        return "traceback", err.strip().splitlines()[-1]
    if proc.returncode == 0:
        return "accepted", ""
    lines = [ln for ln in err.splitlines() if ln.startswith("basicsr: error: ")]
    outcome = "refused" if proc.returncode == 2 else f"failed (exit {proc.returncode})"
    return outcome, lines[-1] if lines else err.strip().splitlines()[-1] if err.strip() else ""


def sweep(files: list[Path], data: Path, work: Path, mode: str = "parse", sample: int | None = None,
          seed: int = 0) -> list[Run]:  # fmt: skip
    """Every (file, key, wrong value) run; ``sample`` picks that many at random."""
    import imdn_plugin
    from imdn_plugin.options import load_option_file

    imdn_plugin.register()
    cases = []
    for path in files:
        opt = adapt(yaml.safe_load(path.read_text()), data)
        assert load_option_file(path) is not None  # the shipped file itself loads
        for key in key_paths(opt):
            node: Any = opt
            for k in key:
                node = node[k]
            for kind, value in mutations(node):
                cases.append((path, key, kind, value, opt))
    if sample is not None:
        cases = random.Random(seed).sample(cases, min(sample, len(cases)))
    runs = []
    for i, (path, key, kind, value, opt) in enumerate(cases):
        cwd = work / f"run{i}"
        cwd.mkdir(parents=True)
        opt_file = cwd.parent / f"run{i}.yml"  # outside the working folder: only outputs are in it
        opt_file.write_text(yaml.safe_dump(with_value(opt, key, value), sort_keys=False))
        is_train = path.name.startswith("train_")
        run = Run(path.name, ":".join(map(str, key)), kind)
        run.outcome, run.message = (run_parse if mode == "parse" else run_command)(opt_file, is_train, cwd)
        run.created = sorted(d for d in OUTPUT_DIRS if (cwd / d).exists())
        runs.append(run)
    return runs


def summary(runs: list[Run]) -> str:
    outcomes = Counter(r.outcome for r in runs)
    early = [r for r in runs if r.outcome != "accepted" and r.created]
    named = sum(1 for r in runs if r.outcome == "refused" and r.key.split(":")[-1] in r.message)
    lines = [
        f"runs: {len(runs)}",
        *(f"{k}: {v}" for k, v in sorted(outcomes.items())),
        f"refusals naming the changed key: {named} of {outcomes['refused']}",
        f"tracebacks: {outcomes['traceback']}",
        f"created experiments/, results/ or tb_logger/ before refusing: {len(early)}",
    ]
    for r in [r for r in runs if r.outcome == "traceback"][:20]:
        lines.append(f"  TRACEBACK {r.file} {r.key}={r.kind}: {r.message}")
    for r in early[:20]:
        lines.append(f"  CREATED {r.file} {r.key}={r.kind}: {r.created} ({r.message})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("parse", "command"), default="parse")
    parser.add_argument("--sample", type=int, default=None, help="runs picked at random (default: all)")
    parser.add_argument("--files", nargs="*", default=None, help="option files (default: options/*.yml)")
    parser.add_argument("--accepted", action="store_true", help="list the accepted (file, key, value) runs")
    args = parser.parse_args(argv)
    files = [Path(f) for f in args.files] if args.files else sorted((REPO / "options").glob("*.yml"))
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data")
        runs = sweep(files, data, Path(tmp) / "work", args.mode, args.sample)
    print(summary(runs))
    if args.accepted:
        for r in runs:
            if r.outcome == "accepted":
                print(f"  accepted {r.file} {r.key}={r.kind}")
    return 0 if not any(r.outcome == "traceback" or (r.outcome != "accepted" and r.created) for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
