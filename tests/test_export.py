"""``basicsr export``: ONNX round trips against the torch forward, fp16-safe CCA statistics, file handling, errors."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
import torch

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install '.[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install '.[onnx]')")

from onnx.reference import ReferenceEvaluator  # noqa: E402

from imdn_plugin import export  # noqa: E402
from imdn_plugin.archs import IMDN, IMDN_AS, CCALayer  # noqa: E402
from imdn_plugin.checkpoint import load_network  # noqa: E402
from imdn_plugin.cli import export as export_cli  # noqa: E402
from imdn_plugin.errors import CheckpointError, ConfigError, PluginError  # noqa: E402
from imdn_plugin.export import TOLERANCES, export_onnx  # noqa: E402

SMALL = {"num_feat": 16, "num_block": 1}
NETWORKS = {
    "IMDN_x2": lambda: IMDN(upscale=2, **SMALL),
    "IMDN_x3": lambda: IMDN(upscale=3, **SMALL),
    "IMDN_x4": lambda: IMDN(upscale=4, **SMALL),
    "IMDN_AS": lambda: IMDN_AS(**SMALL),
}
#: Odd sizes for IMDN; IMDN_AS needs sides divisible by 4.
SIZES = {"IMDN": (37, 53), "IMDN_AS": (36, 52)}


def make(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return NETWORKS[name]().eval()


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["output"], {"input": x.numpy()})
    return torch.from_numpy(out)


def max_diff_to_torch(net: torch.nn.Module, path: Path, size: tuple[int, int], fp16: bool, device: torch.device) -> float:
    """Largest |onnxruntime - torch fp32 forward on ``device``| on a fresh random image."""
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(123))
    if fp16:
        x = x.half()
    got = run_onnx(path, x)
    with torch.no_grad():
        expected = net(x.float().to(device)).cpu()
    scale = getattr(net, "upscale", 4) if isinstance(net, IMDN) else 1
    assert got.shape == (1, 3, size[0] * scale, size[1] * scale)
    assert got.dtype == (torch.float16 if fp16 else torch.float32)
    return float((got.double() - expected.double()).abs().max())


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_round_trip_matches_torch_forward(name: str, precision: str, tmp_path: Path, device: torch.device) -> None:
    net = make(name).to(device)
    path = tmp_path / f"{name}.onnx"
    report = export_onnx(net, path, precision=precision)
    param = next(net.parameters())
    assert param.dtype == torch.float32 and param.device.type == device.type  # the caller's network is untouched
    arch = "IMDN_AS" if name == "IMDN_AS" else "IMDN"
    # The built-in check ran at the odd size, batch 2 (not the traced 1x12x16 example).
    assert report.check_shape == (2, 3, *SIZES[arch]) and report.check_skipped is None
    assert report.max_abs_diff is not None and report.max_abs_diff <= TOLERANCES[precision]
    # Independent comparison: our own onnxruntime run vs the network's own forward.
    diff = max_diff_to_torch(net, path, SIZES[arch], precision == "fp16", device)
    assert diff <= TOLERANCES[precision]
    if precision == "fp32":
        assert diff <= 1e-4
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["imdn_plugin.size_multiple"] == ("4" if arch == "IMDN_AS" else "1")
    assert meta["imdn_plugin.precision"] == precision
    elem = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
    assert model.graph.input[0].type.tensor_type.elem_type == elem


def test_axes_are_dynamic(tmp_path: Path) -> None:
    path = tmp_path / "x3.onnx"
    export_onnx(make("IMDN_x3"), path, check=False)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in onnx.load(str(path)).graph.input]
    assert dims == [["batch", 3, "height", "width"]]
    # Sizes and batch far from the traced example's run too.
    assert run_onnx(path, torch.rand(3, 3, 5, 71)).shape == (3, 3, 15, 213)


@pytest.mark.slow
def test_default_size_network_round_trip(tmp_path: Path, device: torch.device) -> None:
    torch.manual_seed(1)
    net = IMDN(upscale=4).eval().to(device)  # paper size: 64 channels, 6 IMDBs
    report = export_onnx(net, tmp_path / "imdn_x4.onnx", check=False)  # the check itself is tested above
    assert max_diff_to_torch(net, report.path, (37, 53), False, device) <= 1e-4


@pytest.mark.slow
def test_authors_weights_export_and_match(reference: Path, tmp_path: Path, device: torch.device) -> None:
    weights = reference / "checkpoints" / "IMDN_x4.pth"
    if not weights.is_file():
        pytest.skip(f"{weights} not found (the authors' weights are not redistributed)")
    out = tmp_path / "authors_x4.onnx"
    assert export_cli.main(["--weights", str(weights), "-o", str(out), "--no-check"]) == 0  # the command line
    net = load_network(weights)[0].eval().to(device)
    assert max_diff_to_torch(net, out, (37, 53), False, device) <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["imdn_plugin.network"].startswith("IMDN x4 (num_feat=64, num_block=6")


def _cca_input(side: int = 300) -> torch.Tensor:
    """A 16-channel map of values around 1: its H×W sum (~90000) exceeds fp16's 65504."""
    return 1 + 0.1 * torch.randn(1, 16, side, side, generator=torch.Generator().manual_seed(7))


def test_fp16_cca_statistics_are_finite_and_close_to_fp32_in_onnx_graph() -> None:
    """Paper Eq. 5 statistics over 300×300 in an fp16 graph, run by ONNX's reference
    evaluator, which reduces in the graph's declared dtype (as fp16 GPU runtimes may)."""
    torch.manual_seed(0)
    layer = CCALayer(16).eval()
    x = _cca_input()
    with torch.no_grad():
        expected = layer(x)  # fp32 torch
        data = export._to_onnx(layer.half(), x[:, :, :12, :16].half(), 17, "torchscript", 1)
    (got,) = ReferenceEvaluator(data).run(None, {"input": x.half().numpy()})
    got = torch.from_numpy(got).float()
    assert torch.isfinite(got).all()
    assert (got - expected).abs().max() < 1e-2


def test_fp16_graph_reduces_in_fp32(tmp_path: Path) -> None:
    """Every reduction of the exported fp16 network reads an fp32 tensor (the CCA upcast is in the graph)."""
    path = tmp_path / "x2_fp16.onnx"
    export_onnx(make("IMDN_x2"), path, precision="fp16", check=False)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input]}
    reductions = [n for n in model.graph.node if n.op_type.startswith("Reduce")]
    assert len(reductions) >= 2  # mean and variance of the one IMDB's CCA
    assert {types[n.input[0]] for n in reductions} == {onnx.TensorProto.FLOAT}


def test_fp16_cca_eager_matches_fp32(device: torch.device) -> None:
    torch.manual_seed(0)
    layer = CCALayer(16).eval().to(device)
    x = _cca_input().to(device)
    with torch.no_grad():
        expected = layer(x)
        mean, std = CCALayer.statistics(x.half())
        got = layer.half()(x.half()).float()
    assert mean.dtype == std.dtype == torch.float16
    assert torch.isfinite(got).all() and (got - expected).abs().max() < 1e-2
    assert torch.allclose(mean.float(), x.mean(dim=(2, 3), keepdim=True), atol=1e-3)
    assert torch.allclose(std.float(), x.std(dim=(2, 3), keepdim=True, correction=0), atol=1e-3)


def test_refuses_to_overwrite_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"keep me")
    net = make("IMDN_x2")
    with pytest.raises(ConfigError, match=r"model\.onnx: already exists \(use --overwrite"):
        export_onnx(net, path, check=False)
    assert path.read_bytes() == b"keep me"
    # The final move itself refuses too (a file that appears while exporting).
    with pytest.raises(ConfigError, match="already exists"):
        export._write_atomic(path, b"new", overwrite=False)
    assert path.read_bytes() == b"keep me"
    export_onnx(net, path, check=False, overwrite=True)
    onnx.checker.check_model(onnx.load(str(path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_new_file_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        export_onnx(make("IMDN_x2"), tmp_path / "m.onnx", check=False)
    finally:
        os.umask(old)
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o640


def test_failed_check_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(export.TOLERANCES, "fp32", 1e-12)  # nothing real is that close
    with pytest.raises(PluginError, match=r"^export check: onnxruntime and torch differ by .*nothing written$"):
        export_onnx(make("IMDN_x2"), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_is_logged_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with caplog.at_level(logging.WARNING, logger="imdn_plugin.export"):
        report = export_onnx(make("IMDN_x2"), tmp_path / "m.onnx")
    assert report.check_skipped == "onnxruntime is not installed (pip install onnxruntime)"
    assert report.max_abs_diff is None and "not checked" in str(report)
    assert "not checked: onnxruntime is not installed" in caplog.text
    assert (tmp_path / "m.onnx").is_file()


def test_cli_exports_a_basicsr_checkpoint(tmp_path: Path) -> None:
    net = make("IMDN_AS")
    ckpt = tmp_path / "net_g.pth"
    torch.save({"params": net.state_dict()}, ckpt)
    out = tmp_path / "as_fp16.onnx"
    assert export_cli.main(["--weights", str(ckpt), "-o", str(out), "--precision", "fp16", "--opset", "18"]) == 0
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 18
    assert {p.key: p.value for p in model.metadata_props}["imdn_plugin.network"].startswith("IMDN_AS (num_feat=16")
    with pytest.raises(ConfigError, match="already exists"):
        export_cli.main(["--weights", str(ckpt), "-o", str(out)])


def test_checkpoint_that_is_not_imdn_is_a_one_line_error(tmp_path: Path) -> None:
    ckpt = tmp_path / "other.pth"
    torch.save({"params": torch.nn.Conv2d(3, 8, 3).state_dict()}, ckpt)
    with pytest.raises(CheckpointError) as info:
        export_cli.main(["--weights", str(ckpt), "-o", str(tmp_path / "x.onnx")])
    assert str(info.value) == (
        f"{ckpt}: not a checkpoint of a network this plugin knows (IMDN, IMDN_AS, IMDN_RTC, IMDN_RTE): "
        "found 2 tensors, 224 values, keys weight, bias"
    )
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"precision": "bf16"}, "precision must be one of fp32, fp16, got 'bf16'"),
        ({"opset": 9}, "opset must be an integer from 11 to"),
        ({"exporter": "jit"}, "exporter must be one of torchscript, dynamo"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        export_onnx(make("IMDN_x2"), tmp_path / "m.onnx", **kwargs)
    assert "\n" not in str(info.value)


def test_not_an_imdn_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected one of IMDN, IMDN_AS, IMDN_RTC, IMDN_RTE, got Conv2d"):
        export_onnx(torch.nn.Conv2d(3, 3, 3), tmp_path / "m.onnx")


@pytest.mark.skipif(
    os.environ.get("IMDN_TEST_DYNAMO") != "1", reason="slow (~15 s per export on CPU); set IMDN_TEST_DYNAMO=1"
)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_dynamo_exporter_round_trip(precision: str, tmp_path: Path, device: torch.device) -> None:
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    net = make("IMDN_AS").to(device)
    report = export_onnx(net, tmp_path / "as.onnx", precision=precision, exporter="dynamo", opset=18)
    assert report.max_abs_diff <= TOLERANCES[precision]
    assert max_diff_to_torch(net, report.path, (28, 44), precision == "fp16", device) <= TOLERANCES[precision]
