"""ONNX Runtime / OpenVINO backends: the same whole-image, ACS and tiled results as the torch path.

onnxruntime and openvino are in the ``test`` extra, so these tests run in CI; where a
runtime (or onnx) is not installed, its tests skip with the reason (``-rs``).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.cli.infer import main as infer_main
from imdn_plugin.errors import ConfigError
from imdn_plugin.inference import InferenceOptions, build_predictor, runtimes
from imdn_plugin.inference import onnx as onnx_sessions
from imdn_plugin.inference.runtimes import RuntimeStages, runtime_forward

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny inputs (tests/conftest.py)

def _installed(backend: str) -> object:
    try:
        runtimes.require(backend)
    except ConfigError as exc:
        return pytest.param(backend, marks=pytest.mark.skip(reason=str(exc)))
    return backend


RUNTIMES = [_installed("onnxruntime"), _installed("openvino")]
CASES = {
    "IMDN_x3": (lambda: IMDN(num_feat=16, num_block=2, upscale=3), (37, 53)),
    "IMDN_AS": (lambda: IMDN_AS(num_feat=16, num_block=2), (45, 61)),  # not multiples of 4: ACS / padding
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", RUNTIMES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("how", ["auto", "whole", "tile-global", "tile-local"])
def test_backend_gives_the_torch_result(backend: str, case: str, how: str) -> None:
    make, size = CASES[case]
    torch.manual_seed(0)
    net = make().eval()
    x = torch.rand(2, 3, *size)
    mode, _, stats = how.partition("-")
    kw = dict(mode=mode, tile=16 if mode == "tile" else None, tile_overlap=4, tile_stats=stats or "global")
    expected = build_predictor(net, InferenceOptions(**kw))(x)  # type: ignore[arg-type]
    predict = build_predictor(net, InferenceOptions(**kw, backend=backend, precision="fp32"))  # type: ignore[arg-type]
    got = predict(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("backend", RUNTIMES)
def test_global_tiles_run_their_stages_in_the_runtime(backend: str) -> None:
    """The conv stages of tiles with whole-image statistics are graphs of the runtime, not torch."""
    torch.manual_seed(1)
    net = IMDN(num_feat=16, num_block=2, upscale=2).eval()
    forward = runtime_forward(net, backend, "fp32")
    stages = forward.stages()
    assert isinstance(stages, RuntimeStages)
    x = torch.rand(1, 16, 9, 11)
    with torch.no_grad():
        assert (stages.distill(1, x) - net.blocks()[1].distill(x)).abs().max() <= 1e-5
    assert set(stages._graphs) == {("distill", 1)}
    assert forward.path == f"{backend}-fp32"


def test_missing_runtime_is_one_line_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = onnx_sessions.importlib.import_module  # the one module that imports the runtimes

    def fake(name: str, *a: object) -> object:
        if name == "openvino":
            raise ImportError("No module named 'openvino'", name="openvino")
        if name == "onnx":  # present or not here, the exporter's package is not what this test is about
            return object()
        return real(name, *a)

    monkeypatch.setattr(onnx_sessions.importlib, "import_module", fake)
    net = IMDN(num_feat=16, num_block=1, upscale=2).eval()
    with pytest.raises(ConfigError) as info:
        build_predictor(net, InferenceOptions(backend="openvino"))
    msg = str(info.value)
    assert "\n" not in msg and "openvino package is not installed" in msg and "pip install onnx openvino (the plugin's [openvino] extra)" in msg


def test_bad_backend_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="inference:backend: must be one of torch, onnxruntime, openvino, got 'tensorrt'"):
        InferenceOptions(backend="tensorrt")
    with pytest.raises(ConfigError, match="inference:compile: is a torch option"):
        InferenceOptions(backend="openvino", compile=True)
    net = IMDN(num_feat=16, num_block=1, upscale=2).eval()
    with pytest.raises(ConfigError, match="inference:precision: the onnxruntime backend runs fp32 only .*, got 'bf16'"):
        InferenceOptions(backend="onnxruntime", precision="bf16")  # refused with the options, before any work
    with pytest.raises(ConfigError, match="inference:precision: the onnxruntime backend runs fp32 only .*, got 'fp16'"):
        runtime_forward(net, "onnxruntime", "fp16")
    assert InferenceOptions(backend="openvino", channels_last=False, compile=False).backend == "openvino"


@pytest.mark.slow
@pytest.mark.parametrize("backend", RUNTIMES)
def test_infer_command_with_a_backend(backend: str, tmp_path: Path) -> None:
    torch.manual_seed(2)
    weights = tmp_path / "as.pth"
    torch.save({"params": IMDN_AS(num_feat=16, num_block=1).state_dict()}, weights)
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    assert cv2.imwrite(str(src / "a.png"), rng.integers(0, 256, (30, 21, 3), dtype=np.uint8))
    outs = {}
    for name in ("torch", backend):
        out = tmp_path / name
        assert infer_main(["-i", str(src), "-o", str(out), "--weights", str(weights), "-q", "--backend", name,
                           "--precision", "fp32", "--tile", "16", "--tile-overlap", "4"]) == 0  # fmt: skip
        outs[name] = cv2.imread(str(out / "a.png")).astype(int)
    assert outs[backend].shape == (30, 21, 3)
    assert np.abs(outs[backend] - outs["torch"]).max() <= 1
    with pytest.raises(ConfigError, match=f"--device cuda: the {backend} backend runs on the cpu"):
        infer_main(["-i", str(src), "-o", str(tmp_path / "x"), "--weights", str(weights), "--backend", backend,
                    "--device", "cuda"])  # fmt: skip
