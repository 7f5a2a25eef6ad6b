"""Tests of the bf16 fused CPU plan (:class:`imdn_plugin.inference.fused_cpu.FusedIMDNPlanBF16`)
and of ``precision="bf16"`` / ``"auto"`` in :func:`imdn_plugin.inference.fast.make_fast_forward`.

CPU only.  Where oneDNN has no native bf16 convolutions (no AVX-512 / AMX) the
plan runs fp32 kernels on bf16-rounded values — the same numbers — so these
tests check the plan's numerics on any machine; the comparison with the native
kernels runs only where they exist.  Networks and images are tiny.
"""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imdn_plugin import machine
from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.inference import fast as fast_mod
from imdn_plugin.inference import fused_cpu
from imdn_plugin.inference.fast import make_fast_forward
from imdn_plugin.inference.fused_cpu import FusedIMDNPlanBF16
from imdn_plugin.inference.predictor import InferenceOptions, build_predictor
from imdn_plugin.machine import mkldnn_bf16_native

#: bf16 plan vs the fp32 module on noise inputs with random weights: max abs diff relative to the
#: output's largest magnitude.  bf16 keeps 8 significant bits (unit roundoff 2^-9 ≈ 0.002); through
#: the ~10 roundings on any path of these small networks the observed error is 0.002–0.005.
BF16_RTOL = 0.02
#: ... and at least this (so a plan that silently computes in fp32 fails: fp32 gives ~1e-6).
BF16_MIN_RDIFF = 2e-4
#: Set5 x2 Y-PSNR of the authors' IMDN_x2 weights in fp32 (``basicsr test``; paper Table 5: 38.00).
FP32_SET5_X2_PSNR = 37.995976


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny inputs (tests/conftest.py)


@pytest.fixture(autouse=True)
def _no_amx_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(machine.ASSUME_AMX_ENV, raising=False)


def _seeded(net: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in net.parameters():
        nn.init.normal_(p, std=0.1)
    return net.eval()


def _eager(net: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return net.eval()(x)


def _rel_diff(out: Tensor, ref: Tensor) -> float:
    return (out - ref).abs().max().item() / ref.abs().max().item()


NETS = {
    "x2": lambda: IMDN(upscale=2, num_feat=16, num_block=2),
    "x3": lambda: IMDN(upscale=3, num_feat=16, num_block=2),
    "x4": lambda: IMDN(upscale=4, num_feat=16, num_block=2),
    "as": lambda: IMDN_AS(num_feat=16, num_block=2),
}


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("name", list(NETS))
def test_bf16_plan_matches_fp32_module_within_bf16_tolerance(name: str) -> None:
    net = _seeded(NETS[name](), seed=len(name))
    forward = make_fast_forward(net, precision="bf16")
    assert forward.path == "fused-cpu-bf16", repr(forward)  # a fallback fails here
    gen = torch.Generator().manual_seed(2)
    shapes = [(1, 3, 16, 20), (2, 3, 12, 8)] if name == "as" else [(1, 3, 13, 10), (2, 3, 7, 9)]
    for shape in shapes:
        x = torch.rand(*shape, generator=gen)
        out, ref = forward(x), _eager(net, x)
        assert out.dtype == torch.float32 and out.is_contiguous() and out.shape == ref.shape
        rel = _rel_diff(out, ref)
        assert BF16_MIN_RDIFF < rel <= BF16_RTOL, f"{name} {shape}: relative max diff {rel:.2e}"


def test_bf16_plan_weights_are_cast_once() -> None:
    net = _seeded(NETS["x2"]())
    plan = make_fast_forward(net, precision="bf16").plan
    assert isinstance(plan, FusedIMDNPlanBF16)
    block = plan.net.blocks()[0]
    w1, _ = plan._weights(block.c1, "distill")
    assert w1.dtype == torch.bfloat16 and plan._weights(block.c1, "distill")[0] is w1  # cached, not recast
    assert plan._weights(plan.net.upsampler[0], "upsampler")[0].dtype == torch.float32  # fp32 group
    assert plan.dtype("distill") == torch.bfloat16 and plan.dtype("fea_conv") == torch.float32


def test_cca_statistic_of_bf16_features_is_computed_in_fp32(monkeypatch) -> None:
    """Eq. 5 (std + mean over H×W) of a bf16 map, against float64 of the same bf16 values;
    the plan computes it from its bf16 features into fp32."""
    seen = []
    real = fused_cpu._channel_std_plus_mean

    def spy(f: Tensor, scratch: Tensor) -> Tensor:
        seen.append((f.dtype, scratch.dtype))
        return real(f, scratch)

    monkeypatch.setattr(fused_cpu, "_channel_std_plus_mean", spy)
    make_fast_forward(_seeded(NETS["x2"]()), precision="bf16")(torch.rand(1, 3, 6, 5))
    assert seen and set(seen) == {(torch.bfloat16, torch.float32)}

    gen = torch.Generator().manual_seed(4)
    f = (torch.rand(2, 16, 23, 19, generator=gen) * 3 + 5).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    scratch = torch.empty_like(f, dtype=torch.float32)
    z = fused_cpu._channel_std_plus_mean(f, scratch)
    flat = f.double().flatten(2)
    expected = flat.std(dim=2, unbiased=False) + flat.mean(dim=2)
    assert z.dtype == torch.float32
    # A bf16 statistic would be off by ~2^-9 relative (~0.01 here); fp32 by ~1e-7.
    assert (z.double() - expected).abs().max().item() < 1e-5 * expected.abs().max().item()


@pytest.mark.slow
def test_set5_psnr_of_bf16_plan_within_0_01_db_of_fp32(reference) -> None:
    """The accuracy goal on real data: Set5 ×2 (the scale with the highest PSNR, the most
    sensitive) with the authors' weights, Y-PSNR as ``basicsr test`` computes it.  The goal
    is 0.01 dB; the default fp32 layers give -0.0019 dB (README, "bf16 on CPU"), and the
    bound here, 0.004 dB, fails when one of them is left out (first conv and upsampler
    alone: -0.0048 dB)."""
    import cv2
    import numpy as np
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img

    sd = torch.load(reference / "checkpoints" / "IMDN_x2.pth", map_location="cpu", weights_only=True)
    net = IMDN(upscale=2)
    net.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    bf16 = make_fast_forward(net, precision="bf16")
    assert bf16.path == "fused-cpu-bf16"
    psnrs = []
    for name in ("baby", "bird", "butterfly", "head", "woman"):
        hr = cv2.imread(str(reference / "Set5" / "HR" / f"{name}.bmp"), cv2.IMREAD_COLOR)
        lr = cv2.imread(str(reference / "Set5" / "LR_bicubic" / "X2" / f"{name}x2.bmp"), cv2.IMREAD_COLOR)
        x = torch.from_numpy(np.ascontiguousarray(lr[:, :, ::-1].transpose(2, 0, 1))).float().div(255)[None]
        gt = hr[: 2 * lr.shape[0], : 2 * lr.shape[1]]
        psnrs.append(calculate_psnr(tensor2img([bf16(x)]), gt, crop_border=2, test_y_channel=True))
    # against the fp32 value (README table; benchmarks/check_bf16.py measures both side by side)
    delta = sum(psnrs) / len(psnrs) - FP32_SET5_X2_PSNR
    assert abs(delta) <= 0.004, f"bf16 - fp32 = {delta:+.4f} dB"


@pytest.mark.skipif(not mkldnn_bf16_native(), reason="oneDNN has no native bf16 convolutions on this CPU (needs AVX-512 or AMX)")
@pytest.mark.parametrize("name", ["x4", "as"])
def test_native_bf16_kernels_match_the_emulation(name: str) -> None:
    net = _seeded(NETS[name](), seed=3)
    module = make_fast_forward(net).module
    native, emulated = FusedIMDNPlanBF16(module, emulate=False), FusedIMDNPlanBF16(module, emulate=True)
    x = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        a, b = native(x), emulated(x)
    # Same operands and roundings; only the summation order differs (rare 1-ulp flips of bf16 values).
    assert _rel_diff(a, b) <= BF16_RTOL / 2


# --------------------------------------------------------------------------- path choice


def test_bf16_precision_runs_the_bf16_plan_on_cpu(monkeypatch) -> None:
    for net in (IMDN(upscale=2, num_feat=16, num_block=1), IMDN_AS(num_feat=16, num_block=1)):
        forward = make_fast_forward(net, precision="bf16")
        assert forward.path == "fused-cpu-bf16" and forward.precision == "bf16", repr(forward)
    # the plan is channels-last only: autocast otherwise
    assert make_fast_forward(IMDN(upscale=2, num_feat=16, num_block=1), precision="bf16", channels_last=False).path == "eager"
    # fp32 is untouched, AMX or not
    monkeypatch.setenv(machine.ASSUME_AMX_ENV, "1")
    assert make_fast_forward(IMDN(upscale=2, num_feat=16, num_block=1)).path == "fused-cpu"
    assert make_fast_forward(IMDN(upscale=2, num_feat=16, num_block=1), precision="fp32").precision == "fp32"


def test_bf16_plan_self_check_failure_falls_back_to_autocast(monkeypatch, caplog) -> None:
    monkeypatch.setattr(fast_mod, "self_check", lambda plan, net: "simulated mismatch" if plan.name == "fused-cpu-bf16" else None)
    net = _seeded(NETS["x2"]())
    with caplog.at_level(logging.WARNING, logger=fast_mod.__name__):
        forward = make_fast_forward(net, precision="bf16")
    assert forward.path == "eager" and "simulated mismatch" in caplog.text and "fused-cpu-bf16" in caplog.text
    x = torch.rand(1, 3, 8, 6)
    assert _rel_diff(forward(x), _eager(net, x)) <= 0.1  # eager under bf16 autocast: still bf16-close


def test_self_check_catches_a_broken_bf16_plan() -> None:
    net = _seeded(NETS["x3"]())
    module = make_fast_forward(net).module
    plan = FusedIMDNPlanBF16(module)
    assert fused_cpu.self_check(plan, module) is None
    for key, (w, b) in plan._cast.items():  # every bf16 kernel reads its OIHW weights as OHWI
        o, i, kh, kw = w.shape
        plan._cast[key] = (w.contiguous().view(o, kh, kw, i).permute(0, 3, 1, 2), b)
    assert "max abs diff" in (fused_cpu.self_check(plan, module) or "")


@pytest.mark.parametrize("rel_error, passes", [(0.01, True), (0.06, False)])
def test_self_check_bf16_tolerance_sits_between_bf16_noise_and_a_wrong_result(rel_error: float, passes: bool) -> None:
    """The bf16 self-check accepts bf16-sized errors (observed <= 0.004 of the output's range with the
    authors' weights) and refuses a few percent: a plan off by ``rel_error`` × max|output|."""
    net = _seeded(NETS["x2"]())
    module = make_fast_forward(net).module

    class Off(FusedIMDNPlanBF16):
        def __call__(self, x: Tensor) -> Tensor:
            ref = module(x)
            return ref + rel_error * ref.abs().max()

    assert (fused_cpu.self_check(Off(module), module) is None) == passes


@pytest.mark.parametrize("env, path, precision", [("1", "fused-cpu-bf16", "bf16"), ("0", "fused-cpu", "fp32")])
def test_auto_picks_bf16_only_with_amx(monkeypatch, caplog, env: str, path: str, precision: str) -> None:
    monkeypatch.setenv(machine.ASSUME_AMX_ENV, env)
    with caplog.at_level(logging.INFO, logger=fast_mod.__name__):
        forward = make_fast_forward(IMDN(upscale=2, num_feat=16, num_block=1), precision="auto")
    assert (forward.path, forward.precision) == (path, precision)
    assert f"precision {precision} (auto" in caplog.text and f"IMDN_ASSUME_AMX={env}" in caplog.text


def test_auto_without_override_follows_the_cpu_flags() -> None:
    amx, why = machine.amx_detected()
    forward = make_fast_forward(IMDN(upscale=2, num_feat=16, num_block=1), precision="auto")
    assert forward.precision == ("bf16" if amx else "fp32"), why
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    if "amx_bf16" not in flags:
        assert not amx and "no amx_bf16" in why


def test_bad_amx_override_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setenv(machine.ASSUME_AMX_ENV, "yes")
    with pytest.raises(ValueError, match="IMDN_ASSUME_AMX must be 0 or 1") as info:
        make_fast_forward(IMDN(upscale=2, num_feat=16, num_block=1), precision="auto")
    assert "\n" not in str(info.value)


def test_auto_is_an_inference_option_but_not_the_default() -> None:
    assert InferenceOptions().precision == "fp32"  # basicsr test / validation stay exact fp32
    assert InferenceOptions(precision="auto").precision == "auto"
    assert InferenceOptions.from_dict({"precision": "auto"}).precision == "auto"


def test_infer_and_upscaler_default_to_auto(monkeypatch, tmp_path) -> None:
    from imdn_plugin import Upscaler
    from imdn_plugin.cli.infer import build_parser
    from imdn_plugin.inference import predictor

    assert build_parser().parse_args(["-i", "a", "-o", "b", "--weights", "w"]).precision == "auto"
    seen: list[str] = []
    real = predictor.make_fast_forward

    def spy(network, **kw):
        seen.append(kw["precision"])
        return real(network, **kw)

    monkeypatch.setattr(predictor, "make_fast_forward", spy)
    monkeypatch.setenv(machine.ASSUME_AMX_ENV, "1")
    path = tmp_path / "w.pth"
    torch.save(IMDN(upscale=2, num_feat=16, num_block=1).state_dict(), path)
    Upscaler(path, device="cpu")
    assert seen == ["auto"]


# --------------------------------------------------------------------------- tiles on the bf16 plan


def test_global_tiles_run_on_the_bf16_plan(monkeypatch) -> None:
    from imdn_plugin.inference import predictor

    seen = []
    real = predictor.global_tiled_forward

    def spy(network, x, **kw):
        seen.append(kw["stages"])
        return real(network, x, **kw)

    monkeypatch.setattr(predictor, "global_tiled_forward", spy)
    net = _seeded(NETS["x2"]())
    x = torch.rand(1, 3, 20, 18, generator=torch.Generator().manual_seed(6))
    tiled = build_predictor(net, InferenceOptions(precision="bf16", tile=12, tile_overlap=4))(x)
    assert len(seen) == 1 and isinstance(seen[0], FusedIMDNPlanBF16)
    whole = make_fast_forward(net, precision="bf16")(x)
    assert tiled.dtype == torch.float32 and tiled.shape == whole.shape
    # Tiles with whole-image statistics = the whole image, up to bf16 rounding.
    assert _rel_diff(tiled, _eager(net, x)) <= BF16_RTOL
    assert _rel_diff(tiled, whole) <= BF16_RTOL


def test_bf16_plan_ignores_an_enclosing_autocast() -> None:
    net = _seeded(NETS["x2"]())
    forward = make_fast_forward(net, precision="bf16")
    x = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(7))
    plain = forward(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = forward(x)
    assert torch.equal(plain, inside)
    assert F.mse_loss(plain, _eager(net, x)).item() > 0  # bf16, not fp32
