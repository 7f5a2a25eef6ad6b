"""Tests of :func:`imdn_plugin.inference.fast.make_fast_forward`.

Device from ``IMDN_TEST_DEVICE`` (default ``cpu``).  The real compile path is
slow on a small CPU (10–40 s per graph), so it runs only with
``IMDN_TEST_COMPILE=1``; its fallback is always tested.
"""
from __future__ import annotations

import logging
import os

import pytest
import torch
from torch import Tensor, nn

from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.inference import fast as fast_mod
from imdn_plugin.inference.fast import make_fast_forward

TOL = 1e-4
CL = torch.channels_last


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny inputs (tests/conftest.py)


def _seeded(net: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in net.parameters():  # larger than default init: a stricter comparison
        nn.init.normal_(p, std=0.1)
    return net.eval()


def _eager(net: nn.Module, x: Tensor) -> Tensor:
    training = net.training
    net.eval()
    with torch.no_grad():
        out = net(x)
    net.train(training)
    return out


def _load(reference, name: str, net: nn.Module) -> nn.Module:
    sd = torch.load(reference / "checkpoints" / name, map_location="cpu", weights_only=True)
    net.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    return net.eval()


def _expected_path(net: nn.Module, device: torch.device, **kw) -> str:
    """The path make_fast_forward must take: on CPU in fp32 channels-last, IMDN/IMDN_AS run the
    fused plan (a silent fallback would make these comparisons compare the network with itself)."""
    fused = (
        device.type == "cpu" and isinstance(net, (IMDN, IMDN_AS)) and kw.get("channels_last", True) is not False
        and kw.get("precision", "fp32") == "fp32" and not kw.get("compile", False)
    )  # fmt: skip
    return "fused-cpu" if fused else "eager"


def _check_sequence(net: nn.Module, device: torch.device, shapes, threads: int | None = None, **kw) -> None:
    forward = make_fast_forward(net, **kw)
    assert forward.path == _expected_path(net, device, **kw), repr(forward)
    if threads is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        _compare(forward, net, device, shapes)
    finally:
        if threads is not None:
            torch.set_num_threads(previous)


def _compare(forward, net: nn.Module, device: torch.device, shapes) -> None:
    gen = torch.Generator().manual_seed(1)
    for shape in shapes:
        x = torch.rand(*shape, generator=gen).to(device)
        out = forward(x)
        ref = _eager(net, x)
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert out.is_contiguous() and out.device == ref.device
        diff = (out - ref).abs().max().item()
        assert diff <= TOL, f"{shape}: max abs diff {diff:.3g} ({forward!r})"


# --------------------------------------------------------------------------- equality with eager


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_imdn_random_matches_eager_any_size_and_batch(scale: int, device: torch.device) -> None:
    net = _seeded(IMDN(upscale=scale, num_feat=32, num_block=3), seed=scale).to(device)
    # odd sizes, sizes changing from call to call, batch > 1
    _check_sequence(net, device, [(1, 3, 17, 23), (2, 3, 12, 9), (1, 3, 31, 16), (3, 3, 5, 7)])


def test_imdn_paper_size_random_matches_eager(device: torch.device) -> None:
    net = IMDN(upscale=4).eval().to(device)  # default init, 64 features, 6 blocks
    _check_sequence(net, device, [(1, 3, 21, 19), (2, 3, 16, 16)])


def test_imdn_as_random_matches_eager(device: torch.device) -> None:
    net = _seeded(IMDN_AS(num_feat=32, num_block=2), seed=5).to(device)
    _check_sequence(net, device, [(1, 3, 36, 28), (2, 3, 16, 24), (1, 3, 4, 8)])


def test_imdn_x4_checkpoint_matches_eager(reference, device: torch.device) -> None:
    net = _load(reference, "IMDN_x4.pth", IMDN(upscale=4)).to(device)
    _check_sequence(net, device, [(1, 3, 48, 37), (2, 3, 24, 31)])


def test_imdn_as_checkpoint_matches_eager(reference, device: torch.device) -> None:
    net = _load(reference, "IMDN_AS.pth", IMDN_AS()).to(device)
    _check_sequence(net, device, [(1, 3, 64, 52), (2, 3, 32, 40)])


@pytest.mark.slow
def test_multithreaded_call_matches_eager(device: torch.device) -> None:
    net = _seeded(IMDN(upscale=4, num_feat=32, num_block=2), seed=3).to(device)
    _check_sequence(net, device, [(1, 3, 40, 33), (2, 3, 21, 18)], threads=2)


def test_input_layouts_dtypes_and_devices(device: torch.device) -> None:
    net = _seeded(IMDN(upscale=2, num_feat=32, num_block=2)).to(device)
    forward = make_fast_forward(net)
    x = torch.rand(2, 3, 19, 14, device=device)
    ref = _eager(net, x)
    for variant in (
        x.contiguous(memory_format=CL),  # channels-last input
        x.transpose(2, 3).contiguous().transpose(2, 3),  # non-contiguous view
        x.double(),  # other float dtype
        x.cpu(),  # other device (moved to the network's)
    ):
        out = forward(variant)
        assert out.is_contiguous() and out.dtype == torch.float32 and out.device == ref.device
        assert (out - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("channels_last", [True, False])
def test_explicit_memory_formats_match(channels_last: bool, device: torch.device) -> None:
    net = _seeded(IMDN(upscale=3, num_feat=32, num_block=2)).to(device)
    _check_sequence(net, device, [(1, 3, 13, 11), (2, 3, 8, 10)], channels_last=channels_last)


def test_imdn_as_rejects_sizes_not_divisible_by_4(device: torch.device) -> None:
    forward = make_fast_forward(_seeded(IMDN_AS(num_feat=32, num_block=1)).to(device))
    with pytest.raises(ValueError, match="not divisible by 4"):
        forward(torch.rand(1, 3, 18, 20, device=device))


# --------------------------------------------------------------------------- which path runs


def test_fused_plan_is_used_on_cpu() -> None:
    assert make_fast_forward(IMDN(upscale=2, num_feat=32, num_block=1)).path == "fused-cpu"
    assert make_fast_forward(IMDN_AS(num_feat=32, num_block=1)).path == "fused-cpu"
    # the plan is channels-last only; bf16 has its own plan (tests/inference/test_fused_cpu.py)
    assert make_fast_forward(IMDN(upscale=2, num_feat=32, num_block=1), channels_last=False).path == "eager"
    assert make_fast_forward(IMDN(upscale=2, num_feat=32, num_block=1), precision="bf16").path == "fused-cpu-bf16"


def test_hooked_network_runs_its_own_forward(device: torch.device) -> None:
    net = _seeded(IMDN(upscale=2, num_feat=32, num_block=1)).to(device)
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    forward = make_fast_forward(net)
    assert forward.path == "eager"
    x = torch.rand(1, 3, 9, 9, device=device)
    calls.clear()
    assert (forward(x) - _eager(net, x)).abs().max().item() <= TOL
    assert len(calls) >= 2  # the frozen copy's hook and the reference's


def test_plan_self_check_failure_falls_back(monkeypatch, caplog) -> None:
    monkeypatch.setattr(fast_mod, "self_check", lambda plan, net: "simulated mismatch")
    net = _seeded(IMDN(upscale=2, num_feat=32, num_block=1))
    with caplog.at_level(logging.WARNING, logger=fast_mod.__name__):
        forward = make_fast_forward(net)
    assert forward.path == "eager"
    assert "simulated mismatch" in caplog.text
    x = torch.rand(1, 3, 10, 7)
    assert (forward(x) - _eager(net, x)).abs().max().item() <= TOL


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog, device: torch.device) -> None:
    def broken_compile(module, **kwargs):
        def run(x):
            raise RuntimeError("simulated inductor failure")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    net = _seeded(IMDN(upscale=2, num_feat=32, num_block=1)).to(device)
    forward = make_fast_forward(net, compile=True)
    assert forward.path == "compiled"
    x = torch.rand(1, 3, 11, 6, device=device)
    with caplog.at_level(logging.WARNING, logger=fast_mod.__name__):
        out = forward(x)
    assert "simulated inductor failure" in caplog.text
    assert forward.path != "compiled"
    assert (out - _eager(net, x)).abs().max().item() <= TOL
    # a genuinely bad input is reported as such, not swallowed by the fallback
    with pytest.raises(RuntimeError):
        forward(torch.rand(1, 5, 8, 8, device=device))


@pytest.mark.skipif(os.environ.get("IMDN_TEST_COMPILE") != "1", reason="slow (10-40 s per graph on CPU); set IMDN_TEST_COMPILE=1")
def test_compile_path_matches_eager_without_recompiling_per_size(device: torch.device) -> None:
    from torch._dynamo.utils import counters

    net = _seeded(IMDN(upscale=2, num_feat=16, num_block=1)).to(device)
    forward = make_fast_forward(net, compile=True)
    graphs = []
    for h, w in [(12, 12), (13, 9), (17, 11), (21, 8), (9, 19), (16, 22)]:
        x = torch.rand(1, 3, h, w, device=device)
        assert (forward(x) - _eager(net, x)).abs().max().item() <= TOL
        assert forward.path == "compiled"
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[-1] == graphs[2], f"recompiled for later sizes: {graphs}"


# --------------------------------------------------------------------------- side effects


def test_network_is_not_mutated(device: torch.device) -> None:
    net = _seeded(IMDN(upscale=2, num_feat=32, num_block=2)).to(device)
    net.train()
    before = {k: (v.clone(), v.stride(), v.requires_grad) for k, v in net.named_parameters()}
    forward = make_fast_forward(net)
    forward(torch.rand(2, 3, 10, 9, device=device))
    assert net.training and all(m.training for m in net.modules())
    for k, v in net.named_parameters():
        value, stride, requires_grad = before[k]
        assert torch.equal(v, value) and v.stride() == stride and v.requires_grad == requires_grad, k


def test_forward_snapshots_the_weights(device: torch.device) -> None:
    net = _seeded(IMDN(upscale=2, num_feat=32, num_block=1)).to(device)
    x = torch.rand(1, 3, 8, 8, device=device)
    frozen = make_fast_forward(net)
    before = frozen(x)
    with torch.no_grad():
        net.LR_conv.bias.add_(0.5)
    assert (frozen(x) - before).abs().max().item() == 0  # private copy: unaffected
    assert (make_fast_forward(net)(x) - _eager(net, x)).abs().max().item() <= TOL  # rebuilt: follows


def test_generic_module_output_and_eval_mode(device: torch.device) -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Dropout(0.9)).to(device).train()
    forward = make_fast_forward(net)
    x = torch.rand(2, 3, 5, 6, device=device)
    out = forward(x)
    assert forward.path == "eager" and out.shape == (2, 4, 5, 6)
    assert (out - _eager(net, x)).abs().max().item() <= TOL  # dropout off: eval mode
    assert net.training


def test_bf16_precision_runs_and_returns_float32(device: torch.device) -> None:
    net = _seeded(IMDN(upscale=2, num_feat=32, num_block=1)).to(device)
    x = torch.rand(1, 3, 12, 10, device=device)
    out = make_fast_forward(net, precision="bf16")(x)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert (out - _eager(net, x)).abs().max().item() < 0.25


# --------------------------------------------------------------------------- option checks


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"channels_last": "yes"}, "channels_last"),
        ({"channels_last": 1}, "channels_last"),
        ({"compile": "no"}, "compile"),
        ({"precision": "fp64"}, "precision"),
        ({"precision": "FP32"}, "precision"),
    ],
)
def test_invalid_options_raise_one_line_value_errors(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError) as info:
        make_fast_forward(IMDN(upscale=2, num_feat=16, num_block=1), **kwargs)
    message = str(info.value)
    assert name in message and "\n" not in message


def test_fp16_needs_cuda() -> None:
    with pytest.raises(ValueError, match="fp16") as info:
        make_fast_forward(IMDN(upscale=2, num_feat=16, num_block=1), precision="fp16")
    assert "\n" not in str(info.value)


def test_non_module_is_rejected() -> None:
    with pytest.raises(TypeError, match="nn.Module"):
        make_fast_forward(lambda x: x)  # type: ignore[arg-type]
