"""Every loaded tensor is checked before anything is allocated from its declared shape (issue 20,
bugs 6 and 10): integer weights, stride-0 / overlapping tensors, hyper-parameters the
constructor refuses; a file for another network is refused before the network is built."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import imdn_plugin.checkpoint as ckpt
from imdn_plugin.archs import IMDN
from imdn_plugin.checkpoint import load_network, load_state_dict
from imdn_plugin.errors import CheckpointError


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return IMDN(num_feat=16, num_block=1, upscale=2).state_dict()


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool, torch.int8])
def test_integer_weights_are_refused(dtype: torch.dtype, tmp_path: Path) -> None:
    state = _state()
    state["fea_conv.weight"] = (state["fea_conv.weight"] * 100).to(dtype)
    path = tmp_path / "int.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_network(path)
    name = str(dtype).removeprefix("torch.")
    assert str(err.value).startswith(f"{path}: tensor 'fea_conv.weight' is {name}, not floating point")


def test_integer_weights_in_safetensors_are_refused(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors.torch")
    state = _state()
    state["fea_conv.weight"] = (state["fea_conv.weight"] * 100).to(torch.int32)
    path = tmp_path / "int.safetensors"
    safetensors.save_file(state, str(path))
    with pytest.raises(CheckpointError, match="tensor 'fea_conv.weight' is int32, not floating point"):
        load_state_dict(path)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_types_load(dtype: torch.dtype, tmp_path: Path) -> None:
    state = {k: v.to(dtype) for k, v in _state().items()}
    torch.save(state, tmp_path / "f.pth")
    net, spec = load_network(tmp_path / "f.pth")
    assert spec.num_feat == 16 and next(net.parameters()).dtype == torch.float32


def test_stride_zero_tensor_is_refused_before_allocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _state()
    state["fea_conv.weight"] = torch.zeros(1).expand(65536, 3, 3, 3)  # 154 GB of network once built
    state["fea_conv.bias"] = torch.zeros(1).expand(65536)
    path = tmp_path / "crafted.pth"
    torch.save(state, path)
    assert path.stat().st_size < 1_000_000
    built = []
    monkeypatch.setattr(IMDN, "__init__", lambda self, *a, **k: built.append(k) or torch.nn.Module.__init__(self))
    with pytest.raises(CheckpointError) as err:
        load_network(path)
    assert str(err.value) == (
        f"{path}: tensor 'fea_conv.weight' of shape (65536, 3, 3, 3) has overlapping strides (0, 0, 0, 0): "
        "its 1,769,472 values are not stored each once; refused"
    )
    assert built == []


def test_layout_check_accepts_dense_permutations_and_refuses_overlaps() -> None:
    w = torch.randn(8, 4, 3, 3)
    assert ckpt._layout_problem(w) == ""
    assert ckpt._layout_problem(w.to(memory_format=torch.channels_last)) == ""  # dense, other order
    assert ckpt._layout_problem(w.transpose(0, 1)) == ""
    assert ckpt._layout_problem(torch.empty(0, 3)) == ""
    assert "overlapping" in ckpt._layout_problem(torch.randn(5).as_strided((3, 3), (1, 1)))  # sliding window
    assert "overlapping" in ckpt._layout_problem(torch.randn(1, 3).expand(5, 3))
    assert "overlapping" not in ckpt._layout_problem(torch.randn(10)[::2])  # gaps are not overlaps
    ckpt.check_tensors({"a": w})
    with pytest.raises(CheckpointError, match="tensor 'b' of shape \\(5, 3\\) has overlapping strides"):
        ckpt.check_tensors({"a": w, "b": torch.randn(1, 3).expand(5, 3)})


def _big_shapes_state() -> dict[str, torch.Tensor]:
    """Dense tensors declaring num_feat = 512 in fea_conv only: built as declared, IMDN would hold
    num_block × 512² × 9 values; the file has a small fraction of them."""
    state = _state()
    state["fea_conv.weight"] = torch.randn(512, 3, 3, 3)
    state["fea_conv.bias"] = torch.randn(512)
    return state


def test_shapes_checked_on_a_meta_network_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mixed.pth"
    torch.save(_big_shapes_state(), path)
    real_init, devices = IMDN.__init__, []

    def spy(self, *a, **k):
        devices.append(torch.empty(0).device.type)  # the default device the network is built on
        real_init(self, *a, **k)

    monkeypatch.setattr(IMDN, "__init__", spy)
    with pytest.raises(CheckpointError, match=r"checkpoint is IMDN x2 \(num_feat=512"):
        load_network(path)
    assert devices == ["meta"]


@pytest.mark.parametrize(
    "edit, start, end",
    [
        (lambda s: s.update({"fea_conv.weight": torch.randn(20, 3, 3, 3)}),
         "its shapes describe IMDN x2", "which IMDN cannot build: IMDN: num_feat must be a positive multiple of 16, got 20"),
        # no IMDB block at all: no network's detection claims it, the line says what the file holds
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("IMDB")],
         "not a checkpoint of a network this plugin knows", "keys c.0.weight, c.0.bias, LR_conv.weight, LR_conv.bias, ..."),
    ],
)  # fmt: skip
def test_constructor_refusals_are_one_line(edit, start: str, end: str, tmp_path: Path) -> None:
    state = _state()
    edit(state)
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_network(path)
    text = str(err.value)
    assert text.startswith(f"{path}: {start}") and text.endswith(end) and "\n" not in text, text


def test_batchnorm_counter_is_the_one_integer_allowed() -> None:
    ckpt.check_tensors({"bn.num_batches_tracked": torch.tensor(7), "w": torch.randn(2)})
    with pytest.raises(CheckpointError):
        ckpt.check_tensors({"bn.num_batches_tracked": torch.tensor([7, 8])})


def test_spandrel_refuses_the_crafted_file_before_allocating(tmp_path: Path) -> None:
    spandrel = pytest.importorskip("spandrel")
    from imdn_plugin import spandrel as imdn_spandrel

    state = _state()
    state["fea_conv.weight"] = torch.zeros(1).expand(65536, 3, 3, 3)
    state["fea_conv.bias"] = torch.zeros(1).expand(65536)
    path = tmp_path / "crafted.pth"
    torch.save(state, path)
    imdn_spandrel.install()
    with pytest.raises(CheckpointError, match=r"fea_conv.weight' of shape \(65536, 3, 3, 3\) has overlapping strides"):
        spandrel.ModelLoader().load_from_file(path)


def test_convert_script_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "convert_official_checkpoint.py"
    spec = importlib.util.spec_from_file_location("convert_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = _state()
    state["fea_conv.weight"] = torch.randn(20, 3, 3, 3)
    torch.save(state, tmp_path / "nf20.pth")
    assert module.main([str(tmp_path / "nf20.pth"), str(tmp_path / "out.pth")]) == 2
    err = capsys.readouterr().err
    assert "which IMDN cannot build: IMDN: num_feat must be a positive multiple of 16, got 20" in err
    assert not (tmp_path / "out.pth").exists()
