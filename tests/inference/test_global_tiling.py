"""Tiles with whole-image CCA statistics reproduce the whole-image forward."""
from __future__ import annotations

import pytest
import torch

from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.inference import (
    InferenceOptions,
    build_predictor,
    pad_forward,
    tiled_forward,
)
from imdn_plugin.inference import predictor as predictor_mod
from imdn_plugin.inference.fast import make_fast_forward
from imdn_plugin.inference.fused_cpu import FusedIMDNPlan
from imdn_plugin.inference.global_tiling import ModuleStages, global_tiled_forward

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny inputs (tests/conftest.py)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "make, size, tile, overlap",
    [
        (lambda: IMDN(num_feat=16, num_block=2, upscale=3), (45, 37), 32, 12),
        # stride-4 trunk: 40 input pixels of context are 10 feature pixels
        (lambda: IMDN_AS(num_feat=16, num_block=2), (150, 133), 96, 40),
    ],
    ids=["IMDN_x3", "IMDN_AS"],
)
def test_global_statistics_match_the_whole_image(make, size, tile: int, overlap: int, seed: int, device) -> None:
    """In float64, so that what is left of the tiling is visible: nothing but rounding at 1e-12."""
    torch.manual_seed(seed)
    net = make().to(device).double().eval()
    with torch.no_grad():  # make the CCA gates depend strongly on the statistics
        for block in net.blocks():
            squeeze, excite = block.cca.conv_du[0], block.cca.conv_du[2]
            squeeze.weight.abs_().mul_(20)  # positive: the ReLU passes the statistics on
            squeeze.bias.zero_()
            excite.weight.mul_(20)
    h, w = size
    x = torch.nn.functional.avg_pool2d(torch.rand(2, 3, h, w, device=device, dtype=torch.float64), 3, 1, 1)
    x[:, :, :, : w // 2] *= 0.2  # tiles with very different statistics
    x[1] = x[1] * 0.3 + 0.6  # and two images with different statistics in one batch
    with torch.no_grad():
        whole = pad_forward(net, x, multiple=net.size_multiple, scale=net.scale)
        local = tiled_forward(net, x, scale=net.scale, tile=tile, overlap=overlap, batch=3, multiple=net.size_multiple)
    tiled = global_tiled_forward(net, x, tile=tile, overlap=overlap, batch=3)
    assert tiled.shape == whole.shape
    err_global = (tiled - whole).abs().max().item()
    err_local = (local - whole).abs().max().item()
    # Per-tile statistics change the output; whole-image ones leave only float rounding.
    assert err_global <= 1e-12 and err_local > 1e-6, (err_global, err_local)


@pytest.mark.parametrize("tile", [4, 8, 12, 20, 64])
@pytest.mark.parametrize("make, size", [(lambda: IMDN(num_feat=16, num_block=2, upscale=2), (23, 30)),
                                        (lambda: IMDN_AS(num_feat=16, num_block=2), (37, 53))],
                         ids=["IMDN_x2", "IMDN_AS"])  # fmt: skip
def test_every_tile_size_gives_the_whole_image(make, size, tile: int) -> None:
    """Tiles smaller than a stage's context, odd sizes, IMDN_AS padding: the exact whole-image result."""
    torch.manual_seed(tile)
    net = make().double().eval()
    x = torch.rand(1, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        whole = pad_forward(net, x, multiple=net.size_multiple, scale=net.scale)
        tiled = global_tiled_forward(net, x, tile=tile, overlap=0)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() <= 1e-12


def test_uint8_output_and_memory_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles written into a uint8 output are the rounded float result; the in-memory store (a GPU's,
    forced here) gives what the file store gives."""
    from imdn_plugin.inference import feature_store

    torch.manual_seed(5)
    net = IMDN(num_feat=16, num_block=2, upscale=2).eval()
    x = torch.rand(1, 3, 30, 26)
    with torch.no_grad():
        ref = global_tiled_forward(net, x, tile=8, overlap=0)
        out = torch.zeros(1, 3, 60, 52, dtype=torch.uint8)
        assert global_tiled_forward(net, x, tile=8, overlap=0, out=out) is out
        monkeypatch.setattr(feature_store.FeatureStores, "plan", lambda self, total: setattr(self, "in_memory", True))
        in_memory = global_tiled_forward(net, x, tile=8, overlap=0)
    assert torch.equal(out, ref.clamp(0, 1).mul(255).round().to(torch.uint8))
    assert torch.equal(in_memory, ref)


def test_no_room_for_the_feature_maps_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from collections import namedtuple

    from imdn_plugin.errors import InferenceError
    from imdn_plugin.inference import feature_store

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(feature_store.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    net = IMDN(num_feat=16, num_block=1, upscale=2).eval()
    with pytest.raises(InferenceError, match=r"needs \d+ MB of temporary space in .* \(1 MB free\): set TMPDIR.*tile_stats: local"):
        global_tiled_forward(net, torch.rand(1, 3, 700, 700), tile=64, overlap=0, temp_dir=str(tmp_path))


def test_predictor_uses_global_statistics_by_default() -> None:
    torch.manual_seed(1)
    net = IMDN(num_feat=16, num_block=1, upscale=2).eval()
    x = torch.rand(1, 3, 40, 40)
    glob = build_predictor(net, InferenceOptions(tile=16, tile_overlap=4))(x)
    direct = global_tiled_forward(net, x, tile=16, overlap=4, batch=1)  # 1 tile per call on CPU
    local = build_predictor(net, InferenceOptions(tile=16, tile_overlap=4, tile_stats="local"))(x)
    assert torch.allclose(glob, direct, atol=1e-6)
    assert not torch.allclose(glob, local, atol=1e-6)


@pytest.mark.parametrize(
    "make, size, tile, overlap",
    [
        (lambda: IMDN(num_feat=16, num_block=3, upscale=2), (41, 50), 24, 8),
        (lambda: IMDN_AS(num_feat=16, num_block=2), (120, 136), 96, 40),
    ],
    ids=["IMDN_x2", "IMDN_AS"],
)
def test_fused_stages_match_the_module_stages(make, size, tile: int, overlap: int) -> None:
    """The fused CPU plan run stage by stage gives what the module's own stages give."""
    torch.manual_seed(3)
    net = make().eval()
    plan = make_fast_forward(net).plan
    assert plan is not None, "the fused CPU plan did not build (see the warning in the log)"
    x = torch.rand(2, 3, *size)
    with torch.inference_mode():
        whole = pad_forward(net, x, multiple=net.size_multiple, scale=net.scale)
        by_module = global_tiled_forward(net, x, tile=tile, overlap=overlap, batch=2, stages=ModuleStages(net))
        fused = global_tiled_forward(net, x, tile=tile, overlap=overlap, batch=2, stages=plan)
    assert fused.shape == whole.shape
    assert (fused - by_module).abs().max().item() < 1e-5
    assert (fused - whole).abs().max().item() < 1e-5


def test_predictor_runs_global_tiles_on_the_fused_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = predictor_mod.global_tiled_forward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("stages"))
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor_mod, "global_tiled_forward", spy)
    net = IMDN(num_feat=16, num_block=1, upscale=2).eval()
    build_predictor(net, InferenceOptions(tile=16, tile_overlap=4))(torch.rand(1, 3, 20, 20))
    # On CPU the fused plan must drive the tiles: a fallback fails here, it does not skip.
    assert make_fast_forward(net).path == "fused-cpu"
    assert len(seen) == 1 and isinstance(seen[0], FusedIMDNPlan)


def test_rejects_other_networks() -> None:
    with pytest.raises(TypeError, match="needs an IMDN or IMDN_AS network"):
        global_tiled_forward(torch.nn.Identity(), torch.rand(1, 3, 8, 8))  # type: ignore[arg-type]



def test_a_batch_keeps_one_images_maps_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four whole-image maps per image, closed before the next image: the disk use planned for one."""
    from imdn_plugin.inference import feature_store

    real_new, open_counts = feature_store.FeatureStores.new, []

    def new(self, *args):
        store = real_new(self, *args)
        open_counts.append(len(self._open))
        return store

    monkeypatch.setattr(feature_store.FeatureStores, "new", new)
    torch.manual_seed(6)
    net = IMDN(num_feat=16, num_block=3, upscale=2).eval()
    x = torch.rand(3, 3, 20, 18)
    with torch.no_grad():
        tiled = global_tiled_forward(net, x, tile=8, overlap=0)
        whole = net(x)
    assert (tiled - whole).abs().max().item() < 1e-5
    assert len(open_counts) == 3 * 4 and max(open_counts) == 4


def test_an_unusable_tmpdir_is_said(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path) -> None:
    from imdn_plugin.inference.feature_store import FeatureStores

    monkeypatch.setenv("TMPDIR", str(tmp_path / "no-such-folder"))
    with caplog.at_level("WARNING", logger="imdn_plugin.inference.feature_store"):
        FeatureStores(torch.device("cpu"))
    assert f"TMPDIR={tmp_path / 'no-such-folder'} is not a writable folder" in caplog.text
