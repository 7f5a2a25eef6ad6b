"""Every size / threshold rule of the inference code at its bound, one below and one above;
what ``precision: auto`` and the OpenVINO hints choose, with the CPU and runtime faked;
tiled runs leave their temporary folder as they found it."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from imdn_plugin import machine
from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.inference import fused_cpu
from imdn_plugin.inference.cropping import acs_forward, acs_patch_size, pad_forward
from imdn_plugin.inference.global_tiling import global_tiled_forward
from imdn_plugin.inference.tiling import tiled_forward
from imdn_plugin.machine import resolve_precision
from tests.helpers import sensitive
from tests.inference.test_cropping import Recorder, _conv_stack, acs_reference

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- ACS fallback (§3.3)


@pytest.fixture(scope="module")
def live_as() -> nn.Module:
    """IMDN_AS whose CCA gates depend strongly on the statistics: ACS patches and padding differ."""
    return sensitive(lambda: IMDN_AS(num_feat=16, num_block=1))


@pytest.mark.parametrize(
    "size, patches",
    [
        ((64, 65), True),  # patch side 64 == image side 64: at the bound, ACS (Eqs. 6-8) still applies
        ((65, 64), True),  # the same bound on the other axis
        ((61, 65), True),  # patch side 60 < 61: below the bound
        ((59, 65), False),  # patch side 60 > 59: above the bound, replicate padding instead
        ((65, 59), False),
    ],
)
def test_acs_fallback_bound(live_as: nn.Module, size: tuple[int, int], patches: bool) -> None:
    h, w = size
    ph, pw = acs_patch_size(h), acs_patch_size(w)
    assert (ph <= h and pw <= w) == patches, (ph, pw)  # the geometry this case stands for
    torch.manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h, w), 3, 1, 1)
    x[..., : w // 3] *= 0.2  # patches with different statistics
    rec = Recorder(live_as)
    with torch.no_grad():
        got = acs_forward(rec, x)
        padded = pad_forward(live_as, x, multiple=4, scale=1)
        want = acs_reference(live_as, x, 32) if patches else padded
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    if patches:
        assert rec.shapes == [(4, 3, ph, pw)]
        # Not a vacuous comparison: padding instead of ACS changes this image well beyond the tolerance.
        assert (padded - want).abs().max() > 1e-2
    else:
        assert len(rec.shapes) == 1 and rec.shapes[0][0] == 1


@pytest.mark.parametrize("size, expected", [(64, 64), (63, 60), (65, 64), (59, 60), (60, 60), (1, 32), (8, 36)])
def test_acs_patch_size_eqs_6_7(size: int, expected: int) -> None:
    """⌊size/2⌋ + Δl with Δl = 32 − ((⌊size/2⌋ + 32) mod 4), computed by hand."""
    assert acs_patch_size(size) == expected
    assert acs_patch_size(size) % 4 == 0 and acs_patch_size(size) >= size // 2 + 1


# --------------------------------------------------------------------------- tile sizes


@pytest.mark.parametrize("side, windows", [(15, 1), (16, 1), (17, 2)])
def test_tile_equal_to_the_image_is_one_window(side: int, windows: int) -> None:
    """An image side up to the tile is one window; one pixel more makes two (per axis)."""
    net = _conv_stack()
    rec = Recorder(net)
    x = torch.rand(1, 3, side, 8)
    with torch.no_grad():
        got = tiled_forward(rec, x, scale=1, tile=16, overlap=3, batch=1)
        want = net(x)
    assert len(rec.shapes) == windows
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tile, overlap, ok", [(16, 7, True), (16, 8, False), (17, 8, True), (14, 7, False), (15, 7, True)])
def test_overlap_must_be_less_than_half_the_tile(tile: int, overlap: int, ok: bool) -> None:
    x = torch.rand(1, 3, 40, 40)
    net = _conv_stack()
    if ok:
        with torch.no_grad():
            torch.testing.assert_close(tiled_forward(net, x, scale=1, tile=tile, overlap=overlap), net(x), atol=1e-5, rtol=0)
    else:
        with pytest.raises(ValueError, match=rf"overlap must be less than half the tile \({tile}\), got {overlap}"):
            tiled_forward(net, x, scale=1, tile=tile, overlap=overlap)


@pytest.mark.parametrize("tile, ok", [(3, False), (4, True), (5, True)])
def test_tile_at_least_the_size_multiple(tile: int, ok: bool) -> None:
    x = torch.rand(1, 3, 9, 10)
    net = IMDN_AS(num_feat=16, num_block=1).eval()
    if ok:
        with torch.no_grad():
            out = tiled_forward(net, x, scale=1, tile=tile, overlap=0, multiple=4)
        assert out.shape == x.shape
    else:
        with pytest.raises(ValueError, match=r"tile must be an integer >= 4, got 3"):
            tiled_forward(net, x, scale=1, tile=tile, overlap=0, multiple=4)


@pytest.mark.parametrize("side", [15, 16, 17])
def test_global_tiles_at_the_tile_bound(side: int) -> None:
    """Whole-image statistics: exact for an image side below, at and above the tile."""
    torch.manual_seed(side)
    net = sensitive(lambda: IMDN(num_feat=16, num_block=1, upscale=2)).double()
    x = torch.rand(1, 3, side, 9, dtype=torch.float64)
    with torch.no_grad():
        want = net(x)
    got = global_tiled_forward(net, x, tile=16, overlap=2)
    assert (got - want).abs().max().item() <= 1e-10


# --------------------------------------------------------------------------- temporary files


def test_tiled_run_leaves_its_temporary_folder_as_it_found_it(tmp_path: Path) -> None:
    """The feature maps of global tiling go to unlinked temporary files: nothing is left behind,
    after a run and after a failed run."""
    (tmp_path / "keep.txt").write_text("user file")
    torch.manual_seed(1)
    net = IMDN(num_feat=16, num_block=2, upscale=2).eval()
    x = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        want = net(x)
    got = global_tiled_forward(net, x, tile=16, overlap=4, temp_dir=str(tmp_path))
    assert (got - want).abs().max().item() < 1e-4
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]

    class Boom(RuntimeError):
        pass

    calls = []

    def failing_stage(module, inputs, output):
        calls.append(1)
        if len(calls) == 3:
            raise Boom("stop")

    handle = net.IMDB2.c5.register_forward_hook(failing_stage)  # the tiles' fuse stage
    try:
        with pytest.raises(Boom):
            global_tiled_forward(net, x, tile=16, overlap=4, temp_dir=str(tmp_path))
    finally:
        handle.remove()
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


# --------------------------------------------------------------------------- precision auto (AMX)


def _fake_cpu(monkeypatch: pytest.MonkeyPatch, flags: str | None, bf16_native: bool, fusion: bool,
              cpuid_amx: bool = False) -> None:  # fmt: skip
    """``/proc/cpuinfo`` listing ``flags`` (None: no /proc, PyTorch's CPUID probe answers ``cpuid_amx``)."""
    monkeypatch.delenv(machine.ASSUME_AMX_ENV, raising=False)
    real_open = open

    def fake_open(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            if flags is None:
                raise FileNotFoundError(path)
            return io.StringIO(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 {flags}\n\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(machine, "open", fake_open, raising=False)
    monkeypatch.setattr(machine, "mkldnn_bf16_native", lambda: bf16_native)
    monkeypatch.setattr(fused_cpu, "mkldnn_fusion_available", lambda: fusion)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: cpuid_amx, raising=False)


@pytest.mark.parametrize(
    "flags, bf16_native, fusion, amx, why",
    [
        ("avx512f amx_bf16 amx_tile", True, True, True, "lists amx_bf16"),
        ("avx512f amx_bf16 amx_tile", True, False, True, "lists amx_bf16"),  # fusion is not the question
        ("avx512f amx_bf16 amx_tile", False, True, False, "oneDNN has no bf16 convolutions"),
        ("avx512f amx_tile", True, True, False, "lists no amx_bf16"),
        ("avx512f amx_bf16", True, True, False, "lists no amx_bf16"),
        ("avx2", True, True, False, "lists no amx_bf16"),
        (None, True, True, True, "CPUID reports AMX"),
        (None, False, True, False, "oneDNN has no bf16 convolutions"),
    ],
)
def test_auto_precision_from_the_cpu_flags(monkeypatch, flags, bf16_native: bool, fusion: bool, amx: bool, why: str) -> None:
    _fake_cpu(monkeypatch, flags, bf16_native, fusion, cpuid_amx=True)
    got, reason = machine.amx_detected()
    assert got is amx and why in reason, reason
    precision, reason = resolve_precision("auto", torch.device("cpu"))
    assert precision == ("bf16" if amx else "fp32") and why in reason
    assert resolve_precision("fp32", torch.device("cpu"))[0] == "fp32"
    assert resolve_precision("bf16", torch.device("cpu"))[0] == "bf16"  # asked for: no detection
    monkeypatch.setattr(machine, "cuda_half_fast", lambda device: False)  # no fp16 tensor cores
    assert resolve_precision("auto", torch.device("cuda"))[0] == "fp32"
    monkeypatch.setattr(machine, "cuda_half_fast", lambda device: True)
    assert resolve_precision("auto", torch.device("cuda"))[0] == "fp16"


def test_amx_override_beats_the_flags(monkeypatch) -> None:
    _fake_cpu(monkeypatch, "avx2", bf16_native=False, fusion=True)
    monkeypatch.setenv(machine.ASSUME_AMX_ENV, "1")
    assert machine.amx_detected()[0] is True
    monkeypatch.setenv(machine.ASSUME_AMX_ENV, "0")
    _fake_cpu(monkeypatch, "amx_bf16 amx_tile", bf16_native=True, fusion=True)
    monkeypatch.setenv(machine.ASSUME_AMX_ENV, "0")
    assert machine.amx_detected()[0] is False


# --------------------------------------------------------------------------- OpenVINO precision hints


def _openvino():
    from imdn_plugin.errors import ConfigError
    from imdn_plugin.inference import runtimes

    try:
        return runtimes.require("openvino")
    except ConfigError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("precision, hint", [("fp32", "f32"), ("bf16", "bf16"), ("fp16", "f16"), ("auto", None)])
def test_openvino_gets_the_precision_hint_and_reports_what_ran(monkeypatch, precision: str, hint: str | None) -> None:
    ov = _openvino()
    from imdn_plugin.inference import runtimes

    configs: list[dict] = []
    reported: list[str] = []

    class Compiled:
        def __init__(self, real):
            self.real = real

        def get_property(self, name):
            prop = self.real.get_property(name)
            if name == "INFERENCE_PRECISION_HINT":
                reported.append(prop.get_type_name() if hasattr(prop, "get_type_name") else str(prop))
            return prop

        def create_infer_request(self):
            return self.real.create_infer_request()

    class Core:
        def __init__(self):
            self.real = ov.Core()

        def read_model(self, *args):
            return self.real.read_model(*args)

        def compile_model(self, model, device, config):
            configs.append(dict(config))
            return Compiled(self.real.compile_model(model, device, config))

    class FakeOpenVINO:
        pass

    fake = FakeOpenVINO()
    fake.Core = Core  # type: ignore[attr-defined]
    monkeypatch.setattr(runtimes, "require", lambda backend: fake)
    torch.manual_seed(0)
    net = IMDN(num_feat=16, num_block=1, upscale=2).eval()
    forward = runtimes.runtime_forward(net, "openvino", precision)
    assert configs and all(c.get("INFERENCE_PRECISION_HINT") == hint for c in configs), configs
    names = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
    # What OpenVINO reports it ran is what the forward reports (a CPU without bf16 / f16 runs f32).
    assert forward.precision == names.get(reported[-1], reported[-1])
    assert forward.precision in (("fp32",) if precision == "fp32" else ("fp32", "bf16", "fp16"))
    assert forward.path == f"openvino-{forward.precision}"
    x = torch.rand(1, 3, 12, 8)
    with torch.no_grad():
        tol = 1e-4 if forward.precision == "fp32" else 0.1
        assert (forward(x) - net(x)).abs().max().item() < tol


# --------------------------------------------------------------------------- padding to a multiple


@pytest.mark.parametrize("h, w", [(8, 8), (7, 8), (5, 6), (9, 4), (1, 1)])
def test_pad_forward_replicates_the_edge(h: int, w: int) -> None:
    """Sides already multiples of 4 are not padded; others are padded by repeating the last row /
    column (computed here by index), and the crop is the top-left scale*H x scale*W."""
    net = _conv_stack()
    x = torch.rand(1, 3, h, w) + 0.5  # far from 0: zero padding would show
    hp, wp = -(-h // 4) * 4, -(-w // 4) * 4
    rows = torch.clamp(torch.arange(hp), max=h - 1)
    cols = torch.clamp(torch.arange(wp), max=w - 1)
    padded = x[:, :, rows][:, :, :, cols]
    rec = Recorder(net)
    with torch.no_grad():
        got = pad_forward(rec, x, multiple=4, scale=1)
        want = net(padded)[..., :h, :w]
    assert rec.shapes == [(1, 3, hp, wp)]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
