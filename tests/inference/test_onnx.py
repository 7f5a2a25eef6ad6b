"""The one ONNX module (issue 17, item 3): one graph builder, one ONNX Runtime session builder and one
OpenVINO compiled-model builder, used by ``basicsr export``, ``inference: backend`` and the benchmark."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from imdn_plugin import machine
from imdn_plugin.archs import IMDN
from imdn_plugin.errors import ConfigError
from imdn_plugin.inference import onnx as onnx_sessions

REPO = Path(__file__).resolve().parents[2]
ONE_MODULE = REPO / "imdn_plugin" / "inference" / "onnx.py"


def _runtime(backend: str):
    try:
        return onnx_sessions.runtime_module(backend)
    except ConfigError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tiny() -> tuple[IMDN, bytes]:
    """A tiny IMDN with every parameter perturbed (no zero bias, no dead unit), and its graph."""
    torch.manual_seed(0)
    net = IMDN(num_feat=16, num_block=1, upscale=2).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        data = onnx_sessions.module_to_onnx(net, (torch.rand(1, 3, 8, 8),), [onnx_sessions.INPUT_NAME])
    return net, data


def test_ort_session_and_openvino_model_from_the_same_bytes_give_the_torch_forward(tiny) -> None:
    """Both runtimes, fed the same serialized graph, reproduce torch's fp32 forward on a size and
    batch other than the traced example's (the axes are dynamic); OpenVINO's static shape too."""
    _runtime("onnxruntime")
    _runtime("openvino")
    net, data = tiny
    x = torch.rand(2, 3, 11, 7, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = net(x)
    session = onnx_sessions.ort_session(data, threads=1)
    (ort_out,) = session.run(None, {onnx_sessions.INPUT_NAME: x.numpy()})
    compiled = onnx_sessions.ov_compile(data, "fp32", 1)
    ov_out = compiled.create_infer_request().infer({0: x.numpy()})[0]
    static = onnx_sessions.Graph("openvino", data, "fp32", 1, shape=tuple(x.shape))
    for got in (torch.from_numpy(ort_out), torch.from_numpy(ov_out.copy()), static(x)):
        assert got.shape == expected.shape == (2, 3, 22, 14)
        assert (got - expected).abs().max().item() <= 1e-5
    assert static.precision == "fp32"
    assert (onnx_sessions.Graph("onnxruntime", data, "fp32", 1)(x) - expected).abs().max().item() <= 1e-5


def test_thread_counts_reach_both_runtimes(tiny) -> None:
    _runtime("onnxruntime")
    _runtime("openvino")
    _, data = tiny
    assert onnx_sessions.ort_session(data, threads=2).get_session_options().intra_op_num_threads == 2
    assert onnx_sessions.ort_session(data, threads=1).get_session_options().intra_op_num_threads == 1
    assert int(onnx_sessions.ov_compile(data, "fp32", 2).get_property("INFERENCE_NUM_THREADS")) == 2
    assert int(onnx_sessions.ov_compile(data, "fp32", 1).get_property("INFERENCE_NUM_THREADS")) == 1


def test_openvino_shape_is_static_only_when_asked(tiny) -> None:
    _runtime("openvino")
    _, data = tiny
    assert not onnx_sessions.ov_compile(data, "fp32", 1).inputs[0].get_partial_shape().is_static
    fixed = onnx_sessions.ov_compile(data, "fp32", 1, shape=(1, 3, 8, 12)).inputs[0].get_partial_shape()
    assert fixed.is_static and [d.get_length() for d in fixed] == [1, 3, 8, 12]
    with pytest.raises(ValueError, match="static input shape is an OpenVINO option"):
        onnx_sessions.Graph("onnxruntime", data, "fp32", 1, shape=(1, 3, 8, 8))


@pytest.mark.parametrize("precision", [*machine.OV_HINTS, None])
def test_the_precision_hint_reaches_openvino(tiny, monkeypatch: pytest.MonkeyPatch, precision: str | None) -> None:
    """Each word's ``INFERENCE_PRECISION_HINT`` (machine.OV_HINTS) is in the config OpenVINO compiles
    with (None: no hint); what the compiled model reports is what :func:`ov_precision` says."""
    ov = _runtime("openvino")
    _, data = tiny
    configs: list[dict] = []

    class Core:
        def __init__(self) -> None:
            self.real = ov.Core()

        def read_model(self, *args):
            return self.real.read_model(*args)

        def compile_model(self, model, device, config):
            configs.append(dict(config))
            return self.real.compile_model(model, device, config)

    class FakeOpenVINO:
        pass

    fake = FakeOpenVINO()
    fake.Core = Core  # type: ignore[attr-defined]
    monkeypatch.setattr(onnx_sessions, "runtime_module", lambda backend: fake)
    compiled = onnx_sessions.ov_compile(data, precision, 1)
    assert len(configs) == 1 and configs[0]["INFERENCE_NUM_THREADS"] == 1
    assert configs[0].get("INFERENCE_PRECISION_HINT") == (None if precision is None else machine.OV_HINTS[precision])
    reported = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = reported.get_type_name() if hasattr(reported, "get_type_name") else str(reported)
    assert onnx_sessions.ov_precision(compiled) == machine.OV_PRECISIONS.get(name, name)
    if precision == "fp32":  # f32 is always available: the hint is honoured
        assert onnx_sessions.ov_precision(compiled) == "fp32"


def test_a_word_without_an_openvino_hint_is_refused(tiny) -> None:
    """``auto`` is resolved before (one meaning on every backend), never left to OpenVINO."""
    with pytest.raises(ValueError, match="OpenVINO precision must be one of fp32, bf16, fp16 or None, got 'auto'"):
        onnx_sessions.ov_compile(tiny[1], "auto", 1)


def _calls(path: Path) -> set[str]:
    """Names of the attributes / functions called in ``path``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_sessions_are_built_in_one_module_only() -> None:
    """``InferenceSession(``, ``compile_model(`` and ``torch.onnx.export(`` are called in inference/onnx.py
    and nowhere else in the package or the benchmarks (so the benchmark's rows time the path of ``--backend``)."""
    sources = sorted((REPO / "imdn_plugin").rglob("*.py")) + sorted((REPO / "benchmarks").rglob("*.py"))
    assert ONE_MODULE in sources and REPO / "benchmarks" / "benchmark.py" in sources
    builders = {"InferenceSession", "compile_model"}
    found = {path.relative_to(REPO).as_posix(): sorted(_calls(path) & builders) for path in sources}
    assert found.pop("imdn_plugin/inference/onnx.py") == sorted(builders)
    assert {path: calls for path, calls in found.items() if calls} == {}
    exporters = [p.relative_to(REPO).as_posix() for p in sources if "torch.onnx.export(" in p.read_text(encoding="utf-8")]
    assert exporters == ["imdn_plugin/inference/onnx.py"]  # and the graph is built there alone
    bench = (REPO / "benchmarks" / "benchmark.py").read_text(encoding="utf-8")
    assert re.search(r"^from imdn_plugin\.inference\.onnx import .*\bGraph\b", bench, re.MULTILINE)


def test_the_one_module_imports_neither_export_nor_runtimes() -> None:
    """The import direction: export.py and runtimes.py use inference.onnx, never the other way
    (imports inside functions count too)."""
    package = ["imdn_plugin", "inference"]  # the module's own package, for relative imports
    imported = set()
    for node in ast.walk(ast.parse(ONE_MODULE.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            imported.update({module} | {f"{module}.{alias.name}" for alias in node.names})
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert "imdn_plugin.machine.OV_HINTS" in imported  # the resolution works
    assert not {m for m in imported if m.startswith(("imdn_plugin.export", "imdn_plugin.inference.runtimes"))}
