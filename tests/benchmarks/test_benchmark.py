"""Tests of ``benchmarks/benchmark.py``: its independent reference network and its options.

The benchmark's speed-ups are only meaningful if its plain reference computes
the same function as the plugin's networks: these tests load one random state
dict into both and compare outputs, and check that the CCA statistic the
reference computes the authors' way equals Eq. 5 written directly.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.inference.fast import make_fast_forward

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "benchmark.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("imdn_benchmark_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _perturbed(net: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict with every parameter nudged (biases are not left at zero)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: v + 0.02 * torch.randn(v.shape, generator=gen) for k, v in net.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_reference_imdn_matches_plugin_network(bench: ModuleType, scale: int) -> None:
    torch.manual_seed(scale)
    net = IMDN(upscale=scale).eval()
    state = _perturbed(net, scale)
    net.load_state_dict(state)
    ref = bench.RefIMDN(scale).eval()
    ref.load_state_dict(state)  # same parameter names as the authors' release: must load strictly
    x = torch.rand(1, 3, 19, 23, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = net(x), ref(x)
    assert got.shape == (1, 3, 19 * scale, 23 * scale)
    assert (got - expected).abs().max().item() < 1e-5


@pytest.mark.slow
def test_reference_imdn_as_matches_plugin_network_and_fast_path(bench: ModuleType) -> None:
    torch.manual_seed(0)
    net = IMDN_AS().eval()
    state = _perturbed(net, 7)
    net.load_state_dict(state)
    ref = bench.RefIMDN(arbitrary=True).eval()
    ref.load_state_dict(state)
    x = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = net(x), ref(x)
    fast = make_fast_forward(net)(x)
    assert (got - expected).abs().max().item() < 1e-5
    assert (fast - got).abs().max().item() < 1e-4


def test_reference_cca_statistic_is_eq5(bench: ModuleType) -> None:
    """The reference's z (authors' sums + average pooling) equals std + mean computed directly."""
    cca = bench.RefCCA(64)
    captured: list[torch.Tensor] = []
    cca.conv_du.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    x = torch.rand(2, 64, 9, 13, generator=torch.Generator().manual_seed(3)) * 3 - 1
    with torch.no_grad():
        cca(x)
    flat = x.double().flatten(2)
    direct = flat.std(dim=2, unbiased=False) + flat.mean(dim=2)
    assert (captured[0].double().flatten(1) - direct).abs().max().item() < 1e-5


def test_bad_options_are_refused(bench: ModuleType, capsys: pytest.CaptureFixture) -> None:
    for argv, needle in [
        (["--cases", "x5"], "unknown case(s) x5"),
        (["--processes", "0"], "--processes must be >= 1"),
        (["--repeats", "0"], "--repeats must be >= 1"),
    ]:
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert needle in capsys.readouterr().err


def test_isolation_defaults_to_fresh_processes_on_cpu(bench: ModuleType) -> None:
    args = bench.parse_args(["--cases", "x2"])
    assert args.isolation == "process" and args.processes >= 1
    assert bench.parse_args(["--isolation", "shared"]).isolation == "shared"


def test_variants_option(bench: ModuleType, capsys: pytest.CaptureFixture) -> None:
    assert bench.parse_args(["--cases", "x2"]).variants == ["fast"]  # the default run is unchanged
    assert bench.parse_args(["--variants", "all"]).variants == list(bench.VARIANTS)
    assert bench.parse_args(["--variants", "bf16-plan,fast,bf16-plan"]).variants == ["bf16-plan", "fast"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--variants", "trt-fp32"])
    assert "--variants: unknown trt-fp32" in capsys.readouterr().err


def test_variants_that_cannot_run_are_skipped_with_a_reason(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    args = bench.parse_args(["--cases", "x2", "--quick"])
    net = IMDN(upscale=2, num_feat=16, num_block=1).eval()
    cpu = torch.device("cpu")
    x4 = bench.CASES["x4"]
    with pytest.raises(bench.Skip, match="no bfloat16"):
        bench.build_variant(x4, "ort-bf16", net, args, cpu, (1, 3, 8, 8), None)
    with pytest.raises(bench.Skip, match="whole-image cases only"):
        bench.build_variant(bench.CASES["as-tiled"], "ov-fp32", net, args, cpu, (1, 3, 8, 8), None)
    real_import = builtins.__import__

    def no_openvino(name, *a, **kw):
        if name == "openvino":
            raise ImportError("No module named 'openvino'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(bench.Skip, match="openvino is not installed"):
        bench.build_variant(x4, "ov-bf16", net, args, cpu, (1, 3, 8, 8), None)
    built = bench.build_variant(x4, "bf16-plan", net, args, cpu, (1, 3, 8, 8), None)
    assert built.path == "fused-cpu-bf16" and built.precision.startswith("bf16") and not built.fp32
    assert bench.build_variant(x4, "fast", net, args, cpu, (1, 3, 8, 8), None).precision == "fp32"


def test_onnx_rows_run_the_sessions_of_backend(bench: ModuleType, tmp_path: Path) -> None:
    """The ONNX Runtime / OpenVINO rows time :class:`imdn_plugin.inference.onnx.Graph` (the sessions of
    ``--backend``) on the graph of :func:`~imdn_plugin.inference.onnx.module_to_onnx`; OpenVINO's timed
    row has the static input shape, its Set5 forward the dynamic one."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from imdn_plugin.inference.onnx import Graph

    args = bench.parse_args(["--cases", "x2", "--quick"])
    torch.manual_seed(0)
    net = IMDN(upscale=2, num_feat=16, num_block=1).eval()
    onnx_file = bench.write_onnx(net, tmp_path, "x2")
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        expected = net(x)
    case, cpu = bench.CASES["x2"], torch.device("cpu")
    ort_row = bench.build_variant(case, "ort-fp32", net, args, cpu, tuple(x.shape), onnx_file)
    ov_row = bench.build_variant(case, "ov-fp32", net, args, cpu, tuple(x.shape), onnx_file)
    assert isinstance(ort_row.forward, Graph) and ort_row.forward.backend == "onnxruntime"
    assert isinstance(ov_row.run, Graph) and isinstance(ov_row.forward, Graph) and ov_row.precision == "fp32"
    for forward in (ort_row.forward, ov_row.run, ov_row.forward):
        assert (forward(x) - expected).abs().max().item() <= 1e-5
    with pytest.raises(Exception):  # noqa: B017 - OpenVINO's own error class: the timed row's shape is static
        ov_row.run(torch.rand(1, 3, 8, 8))
    assert (ov_row.forward(torch.rand(1, 3, 8, 8)).shape) == (1, 3, 16, 16)
