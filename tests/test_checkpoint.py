"""Checkpoint loading: every accepted form, shape recognition, refusals, atomic saves."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.checkpoint import (
    ArchSpec,
    atomic_torch_save,
    describe,
    load_into,
    load_state_dict,
)
from imdn_plugin.errors import CheckpointError

REFERENCE_FILES = {
    "IMDN_x2.pth": (ArchSpec("IMDN", 3, 3, 64, 6, 2), 694_404),
    "IMDN_x3.pth": (ArchSpec("IMDN", 3, 3, 64, 6, 3), 703_059),
    "IMDN_x4.pth": (ArchSpec("IMDN", 3, 3, 64, 6, 4), 715_176),
    "IMDN_AS.pth": (ArchSpec("IMDN_AS", 3, 3, 64, 6, 4), 752_104),
}


def build(spec: ArchSpec) -> torch.nn.Module:
    opt = spec.network_opt()
    cls = {"IMDN": IMDN, "IMDN_AS": IMDN_AS}[opt.pop("type")]
    return cls(**opt)


@pytest.mark.parametrize("name", sorted(REFERENCE_FILES))
def test_reference_checkpoints_load_strictly(reference: Path, name: str) -> None:
    spec, n_params = REFERENCE_FILES[name]
    state = load_state_dict(reference / "checkpoints" / name)
    assert describe(state) == spec
    assert sum(v.numel() for v in state.values()) == n_params
    net = build(spec)
    load_into(net, state, strict=True, source=name)
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key])


def test_wrong_scale_error_names_both(reference: Path) -> None:
    state = load_state_dict(reference / "checkpoints" / "IMDN_x2.pth")
    with pytest.raises(CheckpointError) as err:
        load_into(IMDN(upscale=4), state, source="IMDN_x2.pth")
    msg = str(err.value)
    assert "\n" not in msg
    assert "checkpoint is IMDN x2" in msg and "network_g is IMDN x4" in msg


@pytest.mark.parametrize("form", ["params", "params_ema", "bare", "module", "params+module"])
def test_all_forms_load(tmp_path: Path, form: str) -> None:
    torch.manual_seed(1)
    net = IMDN(num_feat=16, num_block=2, upscale=3)
    sd = net.state_dict()
    wrapped = {
        "params": {"params": sd},
        "params_ema": {"params_ema": sd},
        "bare": sd,
        "module": {f"module.{k}": v for k, v in sd.items()},
        "params+module": {"params": {f"module.{k}": v for k, v in sd.items()}},
    }[form]
    path = tmp_path / "w.pth"
    torch.save(wrapped, path)
    state = load_state_dict(path, param_key="params")
    assert describe(state) == ArchSpec("IMDN", 3, 3, 16, 2, 3)
    fresh = IMDN(num_feat=16, num_block=2, upscale=3)
    load_into(fresh, state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), sd.values(), strict=True))


def test_requested_param_key_wins(tmp_path: Path) -> None:
    a, b = IMDN(num_feat=16, num_block=1, upscale=2), IMDN(num_feat=16, num_block=1, upscale=2)
    torch.save({"params": a.state_dict(), "params_ema": b.state_dict()}, tmp_path / "w.pth")
    ema = load_state_dict(tmp_path / "w.pth", param_key="params_ema")
    assert torch.equal(ema["fea_conv.weight"], b.state_dict()["fea_conv.weight"])


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_code_executing_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"params": {"w": _Exploit(str(marker))}}, f)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_state_dict(path)
    assert not marker.exists()


def test_truncated_and_missing_files(tmp_path: Path) -> None:
    net = IMDN(num_feat=16, num_block=1, upscale=2)
    good = tmp_path / "good.pth"
    torch.save({"params": net.state_dict()}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth: not a readable PyTorch checkpoint"):
        load_state_dict(cut)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_state_dict(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_state_dict(tmp_path / "junk.pth")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_by_name(tmp_path: Path, value: float) -> None:
    net = IMDN(num_feat=16, num_block=1, upscale=2)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["IMDB1.c4.weight"].view(-1)[[3, 7]] = value
    path = tmp_path / "diverged.pth"
    torch.save({"params": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_state_dict(path)
    assert str(err.value) == (
        f"{path}: tensor 'IMDB1.c4.weight' holds 2 non-finite value(s) (NaN/Inf) of "
        f"{state['IMDB1.c4.weight'].numel()}; the weights are from a diverged training run or the file is corrupt"
    )
    # Integer tensors are not weights (issue 20, bug 6): refused by name, never cast to float.
    torch.save({"params": {**net.state_dict(), "steps": torch.tensor([2**62])}}, path)
    with pytest.raises(CheckpointError, match=r"tensor 'steps' is int64, not floating point"):
        load_state_dict(path)


def test_not_a_network(tmp_path: Path) -> None:
    torch.save({"params": {"a": 1}}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="no network weights found"):
        load_state_dict(tmp_path / "x.pth")


def test_atomic_save_keeps_previous_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "models" / "net.pth"
    atomic_torch_save({"v": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match=r"net\.pth: cannot be written \(No space left on device\)"):
        atomic_torch_save({"v": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.ones(3))
    assert os.listdir(path.parent) == ["net.pth"]  # no temp file left behind


def test_non_strict_warm_start_skips_the_upsampler() -> None:
    x2 = IMDN(num_feat=16, num_block=2, upscale=2)
    x4 = IMDN(num_feat=16, num_block=2, upscale=4)
    before = x4.upsampler[0].weight.clone()
    load_into(x4, x2.state_dict(), strict=False, source="x2")
    assert torch.equal(x4.fea_conv.weight, x2.fea_conv.weight)
    assert torch.equal(x4.upsampler[0].weight, before)


@pytest.mark.slow
def test_convert_script_round_trip(reference: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "convert_official_checkpoint.py"
    out = tmp_path / "x3.pth"
    res = subprocess.run([sys.executable, str(script), str(reference / "checkpoints/IMDN_x3.pth"), str(out)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert list(raw) == ["params"] and not any(k.startswith("module.") for k in raw["params"])
    original = load_state_dict(reference / "checkpoints/IMDN_x3.pth")
    assert raw["params"].keys() == original.keys()
    assert all(torch.equal(raw["params"][k], original[k]) for k in original)
    again = subprocess.run([sys.executable, str(script), str(reference / "checkpoints/IMDN_x3.pth"), str(out)],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.parametrize(
    "head, what",
    [(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "it looks like a PNG image"), (b"", "empty file"), (b"\x00\x01\x02\x03junk", "unknown format")],
)
def test_a_file_that_is_no_checkpoint_is_named_for_what_it_is(tmp_path, head: bytes, what: str) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(head)
    with pytest.raises(CheckpointError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert what in message and "could run code" not in message and "\n" not in message
