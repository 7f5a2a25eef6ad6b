"""A wrong-value sweep over the shipped option files (scripts/dev/option_sweep.py), in this process.

Every key of every shipped file set to a wrong type, a negative, zero, a huge
number, ``~``, a list or a map — a fixed random sample of those runs here (the
script runs all of them): no raw traceback, and nothing created under
``experiments/``, ``results/`` or ``tb_logger/`` by a refused run.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _sweep_module():
    spec = importlib.util.spec_from_file_location("option_sweep", REPO / "scripts" / "dev" / "option_sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("option_sweep", module)  # dataclasses look their module up
    spec.loader.exec_module(sys.modules["option_sweep"])
    return sys.modules["option_sweep"]


def test_sweep_finds_no_traceback_and_no_early_folder(tiny_sr_data: Path, tmp_path: Path) -> None:
    sweep = _sweep_module()
    files = sorted((REPO / "options").glob("*.yml"))
    runs = sweep.sweep(files, tiny_sr_data, tmp_path, mode="parse", sample=300, seed=20)
    assert len(runs) == 300
    tracebacks = [r for r in runs if r.outcome == "traceback"]
    early = [r for r in runs if r.outcome != "accepted" and r.created]
    assert not tracebacks, sweep.summary(runs)
    assert not early, sweep.summary(runs)
    refused = [r for r in runs if r.outcome == "refused"]
    assert len(refused) > 250  # most wrong values are wrong: the checks ran
    assert all("\n" not in r.message for r in refused)
    # each refusal names the key that was changed (or, for a whole block set wrong, that block)
    assert all(r.key.split(":")[-1] in r.message for r in refused), [r for r in refused if r.key.split(":")[-1] not in r.message]


def test_the_sweep_changes_every_nested_key() -> None:
    sweep = _sweep_module()
    opt = {"a": 1, "b": {"c": True, "d": {"e": "x"}}, "f": [1, 2]}
    assert list(sweep.key_paths(opt)) == [("a",), ("b",), ("b", "c"), ("b", "d"), ("b", "d", "e"), ("f",)]
    kinds = dict(sweep.mutations(1.0))
    assert kinds["type"] == "abc" and kinds["negative"] == -1 and kinds["zero"] == 0 and kinds["huge"] == 10**12
    assert dict(sweep.mutations(True))["type"] == "yes" and dict(sweep.mutations("s"))["type"] == 12345
    assert sweep.with_value(opt, ("b", "d", "e"), 5)["b"]["d"]["e"] == 5 and opt["b"]["d"]["e"] == "x"
