"""``precision: auto`` means one thing on every backend (issue 20): what the torch backend picks on
this CPU (bf16 with AMX, else fp32), never the runtime's own choice."""
from __future__ import annotations

import pytest
import torch

import imdn_plugin.inference.runtimes as runtimes
from imdn_plugin.archs import IMDN


class _FakeGraph:
    hints: list[str] = []

    def __init__(self, backend: str, data: bytes, precision: str, threads: int) -> None:
        _FakeGraph.hints.append(precision)
        self.precision = {"auto": "whatever the runtime likes"}.get(precision, precision)


@pytest.mark.parametrize("amx, want", [("0", "fp32"), ("1", "bf16")])
def test_openvino_auto_is_the_torch_backends_auto(amx: str, want: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setenv("IMDN_ASSUME_AMX", amx)
    monkeypatch.setattr(runtimes, "Graph", _FakeGraph)
    _FakeGraph.hints.clear()
    torch.manual_seed(0)
    fwd = runtimes.RuntimeForward(IMDN(num_feat=16, num_block=1, upscale=2), "openvino", "auto")
    assert _FakeGraph.hints == [want] and fwd.precision == want and fwd.requested == "auto"


def test_onnxruntime_auto_is_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("IMDN_ASSUME_AMX", "1")
    monkeypatch.setattr(runtimes, "Graph", _FakeGraph)
    _FakeGraph.hints.clear()
    runtimes.RuntimeForward(IMDN(num_feat=16, num_block=1, upscale=2), "onnxruntime", "auto")
    assert _FakeGraph.hints == ["fp32"]
