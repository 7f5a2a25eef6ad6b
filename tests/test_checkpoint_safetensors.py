"""safetensors on purpose: explicit reading (never torch.load), atomic saves, the convert script."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.checkpoint import (
    PARAM_KEYS_METADATA,
    ArchSpec,
    atomic_torch_save,
    describe,
    load_checkpoint,
    load_into,
    load_state_dict,
    save_network_file,
    save_safetensors,
)
from imdn_plugin.errors import CheckpointError

safetensors_torch = pytest.importorskip("safetensors.torch")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_official_checkpoint.py"


def convert_script() -> ModuleType:
    """The convert script as a module, run in-process (a subprocess spends seconds importing torch)."""
    spec = importlib.util.spec_from_file_location("convert_official_checkpoint", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_state(seed: int = 0, **opt: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = IMDN(**{"num_feat": 16, "num_block": 2, "upscale": 3, **opt})
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.fixture
def no_torch_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any torch.load fails the test: .safetensors must be read by the safetensors package."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load called for a .safetensors file")

    monkeypatch.setattr(torch, "load", refuse)


def test_round_trip(tmp_path: Path, no_torch_load: None) -> None:
    state = small_state(num_in_ch=1, num_out_ch=1)
    path = tmp_path / "net.safetensors"
    save_safetensors(state, path)
    loaded = load_state_dict(path)
    assert list(loaded) == sorted(state)  # safetensors stores names sorted
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in state.items())
    assert describe(loaded) == describe(state) == ArchSpec("IMDN", 1, 1, 16, 2, 3)
    # an independent reader (the safetensors package alone) sees the same tensors and the header
    raw = safetensors_torch.load_file(str(path), device="cpu")
    assert all(torch.equal(raw[k], v) for k, v in state.items())
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata()
    assert meta["format"] == "pt"
    assert json.loads(meta["imdn_plugin.network_g"]) == describe(state).network_opt()


def test_module_prefixed_keys_load(tmp_path: Path, no_torch_load: None) -> None:
    state = small_state()
    path = tmp_path / "dp.safetensors"
    safetensors_torch.save_file({f"module.{k}": v for k, v in state.items()}, str(path))
    loaded = load_state_dict(path)
    assert loaded.keys() == state.keys()
    net = IMDN(num_feat=16, num_block=2, upscale=3)
    load_into(net, loaded, strict=True)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())


def test_truncated_file_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_safetensors(small_state(), path)
    data = path.read_bytes()
    for size in (len(data) // 2, 40):  # tensor data cut; header cut
        path.write_bytes(data[:size])
        with pytest.raises(CheckpointError) as err:
            load_state_dict(path)
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(f"{path}: truncated safetensors file"), msg


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "too short for a safetensors file"),
        (b"hello, this is text and not tensors", "not a safetensors file (no safetensors header"),
        ("torch", "not a safetensors file (it looks like a PyTorch checkpoint"),
    ],
)
def test_not_a_safetensors_file(tmp_path: Path, content: object, expected: str, no_torch_load: None) -> None:
    path = tmp_path / "w.safetensors"
    if content == "torch":
        with open(path, "wb") as f:  # a real torch.save (torch.load is blocked, torch.save is not)
            torch.save({"params": small_state()}, f)
    else:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{path}: {expected}"), str(err.value)


def test_pth_holding_safetensors_says_so(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(safetensors_torch.save(small_state()))
    with pytest.raises(CheckpointError, match=r"w\.pth: is a safetensors file.*name it \*\.safetensors"):
        load_state_dict(path)


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "net.safetensors"
    first, second = small_state(1), small_state(2)
    save_safetensors(first, path)
    with pytest.raises(CheckpointError, match=r"net\.safetensors: exists; not overwritten"):
        save_safetensors(second, path)
    assert torch.equal(load_state_dict(path)["fea_conv.weight"], first["fea_conv.weight"])
    save_safetensors(second, path, overwrite=True)
    assert torch.equal(load_state_dict(path)["fea_conv.weight"], second["fea_conv.weight"])
    assert os.listdir(tmp_path) == ["net.safetensors"]  # no temporary file left behind


def test_save_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "net.safetensors"
    save_safetensors(small_state(1), path)

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_safetensors(small_state(2), path, overwrite=True)
    monkeypatch.undo()
    assert torch.equal(load_state_dict(path)["fea_conv.weight"], small_state(1)["fea_conv.weight"])
    assert os.listdir(tmp_path) == ["net.safetensors"]


def test_no_overwrite_when_the_file_appears_during_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "net.pth"
    real_save = torch.save

    def racing_save(obj: object, f: object) -> None:
        path.write_bytes(b"someone else's file")  # appears after the up-front exists() check
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", racing_save)
    with pytest.raises(CheckpointError, match=r"net\.pth: exists; not overwritten"):
        atomic_torch_save({"v": torch.ones(1)}, path, overwrite=False)
    assert path.read_bytes() == b"someone else's file"
    assert os.listdir(tmp_path) == ["net.pth"]


def test_no_hard_links_falls_back_to_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    save_safetensors(small_state(1), tmp_path / "a.safetensors")
    assert torch.equal(load_state_dict(tmp_path / "a.safetensors")["c.0.weight"], small_state(1)["c.0.weight"])
    with pytest.raises(CheckpointError, match="exists"):
        save_safetensors(small_state(2), tmp_path / "a.safetensors")
    assert os.listdir(tmp_path) == ["a.safetensors"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_file_mode_follows_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        save_safetensors(small_state(), tmp_path / "a.safetensors")
        atomic_torch_save({"params": small_state()}, tmp_path / "b.pth")
        with open(tmp_path / "plain", "wb"):  # what open() makes under this umask
            pass
    finally:
        os.umask(old)
    expected = (tmp_path / "plain").stat().st_mode & 0o777
    assert expected == 0o666 & ~umask
    assert (tmp_path / "a.safetensors").stat().st_mode & 0o777 == expected
    assert (tmp_path / "b.pth").stat().st_mode & 0o777 == expected


def test_save_network_file_safetensors_groups(tmp_path: Path, no_torch_load: None) -> None:
    params, ema = small_state(1), small_state(2)
    path = tmp_path / "net_g_5.safetensors"
    save_network_file({"params": params, "params_ema": ema}, path)
    raw = safetensors_torch.load_file(str(path))
    assert set(raw) == set(params) | {f"params_ema.{k}" for k in ema}  # params bare, EMA prefixed
    for key, expected in (("params", params), ("params_ema", ema)):
        loaded = load_state_dict(path, param_key=key)
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[k], v) for k, v in expected.items()), key
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        assert json.loads(f.metadata()[PARAM_KEYS_METADATA]) == ["params", "params_ema"]


def test_save_network_file_same_tensors_twice(tmp_path: Path) -> None:
    """params and params_ema sharing storage (e.g. EMA just initialised) still saves."""
    params = small_state(1)
    save_network_file({"params": params, "params_ema": params}, tmp_path / "n.safetensors")
    assert torch.equal(load_state_dict(tmp_path / "n.safetensors", "params_ema")["c.0.weight"], params["c.0.weight"])


def test_save_network_file_pth_is_basicsr(tmp_path: Path) -> None:
    params, ema = small_state(1), small_state(2)
    path = tmp_path / "net_g_5.pth"
    save_network_file({"params": params, "params_ema": ema}, path)
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["params", "params_ema"]
    assert torch.equal(raw["params_ema"]["fea_conv.weight"], ema["fea_conv.weight"])
    with pytest.raises(CheckpointError, match="exists"):
        save_network_file({"params": params}, path)
    save_network_file({"params": ema}, path, overwrite=True)
    assert torch.equal(load_state_dict(path)["fea_conv.weight"], ema["fea_conv.weight"])


@pytest.mark.slow
def test_convert_authors_x4_to_safetensors(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = reference / "checkpoints" / "IMDN_x4.pth"
    out = tmp_path / "IMDN_x4.safetensors"
    script = convert_script()
    assert script.main([str(src), str(out)]) == 0, capsys.readouterr().err
    raw = safetensors_torch.load_file(str(out))
    assert not any(k.startswith("module.") for k in raw)

    original = load_state_dict(src)
    with monkeypatch.context() as m:
        m.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load used for .safetensors"))
        converted = load_state_dict(out)
    assert describe(converted) == describe(original) == ArchSpec("IMDN", 3, 3, 64, 6, 4)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 20, 16)
    outputs = []
    for state in (original, converted):
        net = IMDN(upscale=4).eval()
        load_into(net, state, strict=True)
        with torch.no_grad():
            outputs.append(net(x))
    assert outputs[0].shape == (1, 3, 80, 64)
    assert torch.equal(outputs[0], outputs[1])

    capsys.readouterr()
    assert script.main([str(src), str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_convert_script_writes_safetensors_for_imdn_as(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without the authors' files: a BasicSR .pth of IMDN_AS converts to a bare .safetensors."""
    torch.manual_seed(3)
    net = IMDN_AS(num_feat=16, num_block=1)
    src = tmp_path / "as.pth"
    torch.save({"params_ema": net.state_dict()}, src)
    out = tmp_path / "as.safetensors"
    assert convert_script().main([str(src), str(out), "--param-key", "params_ema"]) == 0, capsys.readouterr().err
    raw = safetensors_torch.load_file(str(out))
    assert raw.keys() == net.state_dict().keys()
    assert all(torch.equal(raw[k], v) for k, v in net.state_dict().items())
