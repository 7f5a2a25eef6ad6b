"""build_predictor: option problems surface as one-line ConfigErrors."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.errors import ConfigError, NonFiniteError
from imdn_plugin.inference import InferenceOptions, build_predictor
from imdn_plugin.inference import predictor as predictor_mod


def test_fp16_on_cpu_is_an_option_error() -> None:
    with pytest.raises(ConfigError, match="^inference:precision: .*fp16"):
        build_predictor(IMDN(num_feat=16, num_block=1, upscale=2), InferenceOptions(precision="fp16"))


# --------------------------------------------------------------------------- output tensors, memory



OPTIONS = {
    "whole": InferenceOptions(),
    "tile-global": InferenceOptions(tile=24, tile_overlap=8),
    "tile-local": InferenceOptions(tile=24, tile_overlap=8, tile_stats="local"),
    "acs": InferenceOptions(mode="acs", acs_padding=8),
}


def _net(kind: str) -> nn.Module:
    torch.manual_seed(1)
    net = IMDN(upscale=3, num_feat=16, num_block=2) if kind == "IMDN" else IMDN_AS(num_feat=16, num_block=2)
    for p in net.parameters():
        nn.init.normal_(p, std=0.1)
    return net


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["IMDN", "IMDN_AS"])
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_uint8_output_is_the_rounded_float_output(kind: str, name: str) -> None:
    net, x = _net(kind), torch.rand(1, 3, 45, 61)
    predict = build_predictor(net, OPTIONS[name])
    y = predict(x)
    out = torch.empty(y.shape, dtype=torch.uint8)
    assert predict(x, out=out) is out
    expected = torch.round(y.clamp(0, 1) * 255).to(torch.uint8)  # what an 8-bit PNG of y holds
    assert torch.equal(out, expected)
    floats = torch.empty_like(y)
    assert torch.equal(predict(x, out=floats), y)


def test_output_tensor_of_the_wrong_shape_is_refused() -> None:
    predict = build_predictor(_net("IMDN"), OPTIONS["tile-global"])
    with pytest.raises(ValueError, match="shape"):
        predict(torch.rand(1, 3, 30, 30), out=torch.empty((1, 3, 30, 30), dtype=torch.uint8))


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_non_finite_output_is_an_error_not_an_image(name: str) -> None:
    net = _net("IMDN")
    with torch.no_grad():
        net.LR_conv.bias[3] = float("nan")
    predict = build_predictor(net, OPTIONS[name])
    with pytest.raises(NonFiniteError, match="non-finite"):
        predict(torch.rand(1, 3, 40, 40))
    out = torch.zeros((1, 3, 120, 120), dtype=torch.uint8)
    with pytest.raises(NonFiniteError):
        predict(torch.rand(1, 3, 40, 40), out=out)


@pytest.mark.slow
def test_one_tile_per_call_on_cpu_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    real = predictor_mod.tiling.tiled_forward

    def spy(network, x, **kw):
        batches.append(kw["batch"])
        return real(network, x, **kw)

    monkeypatch.setattr(predictor_mod.tiling, "tiled_forward", spy)
    build_predictor(_net("IMDN"), OPTIONS["tile-local"])(torch.rand(1, 3, 40, 40))
    build_predictor(_net("IMDN"), InferenceOptions(tile=24, tile_overlap=8, tile_stats="local", tile_batch=3))(
        torch.rand(1, 3, 40, 40)
    )
    assert batches == [1, 3]


@pytest.mark.slow
def test_auto_tiles_when_the_whole_image_would_not_fit(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    net, x = _net("IMDN"), torch.rand(1, 3, 90, 100)
    need = predictor_mod.whole_image_bytes(net, 1, 90, 100)
    assert need is not None and need > 90 * 100 * 16 * 4 * 4  # at least the trunk's maps
    monkeypatch.setattr(predictor_mod.tiling, "DEFAULT_TILE", 72)
    # per-tile statistics, so that a tiled result differs from the whole-image one
    local = InferenceOptions(tile_stats="local")
    tiled_ref = build_predictor(net, InferenceOptions(tile=72, tile_stats="local"))(x)
    whole_ref = build_predictor(net, local)(x)
    monkeypatch.setattr(predictor_mod, "available_bytes", lambda device: need)  # fits: 70% rule not met
    with caplog.at_level(logging.WARNING, logger=predictor_mod.__name__):
        y = build_predictor(net, local)(x)
    assert "tiling it (tile 72" in caplog.text
    assert torch.equal(y, tiled_ref) and not torch.equal(y, whole_ref)
    monkeypatch.setattr(predictor_mod, "available_bytes", lambda device: 10 * need)
    assert torch.equal(build_predictor(net, local)(x), whole_ref)
