"""Out-of-memory recovery of build_predictor: on torch.cuda.OutOfMemoryError the tile is halved
(floor 64) and the run goes on, with the result of a run with that tile from the start.

The error is injected on the CPU (no GPU needed): the fast forward, or the global-statistics
tiling, raises it for inputs larger than a limit, as a GPU with that much memory would.
"""
from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from torch import nn

from imdn_plugin.archs import IMDN
from imdn_plugin.inference import InferenceOptions, build_predictor, tiling
from imdn_plugin.inference import fast as fast_mod
from imdn_plugin.inference import predictor as predictor_mod

H, W = 150, 140


def _net() -> nn.Module:
    torch.manual_seed(3)
    net = IMDN(upscale=2, num_feat=16, num_block=1)
    for p in net.parameters():
        nn.init.normal_(p, std=0.2)  # CCA statistics matter: tiles of another size give other outputs
    return net.eval()


def _image() -> torch.Tensor:
    torch.manual_seed(4)
    return torch.rand(1, 3, H, W)


class Injector:
    """Raise torch.cuda.OutOfMemoryError for inputs whose larger side exceeds ``limit``
    (from call number ``after`` on); records the sides it saw; fails the test on a runaway loop."""

    def __init__(self, limit: int, after: int = 0) -> None:
        self.limit, self.after, self.calls, self.sides, self.raised = limit, after, 0, [], 0

    def check(self, side: int) -> None:
        self.calls += 1
        self.sides.append(side)
        if side > self.limit and self.calls > self.after:
            self.raised += 1
            if self.raised > 20:
                pytest.fail("the tile is not halved: out of memory again and again")
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")


@pytest.fixture()
def inject_forward(monkeypatch: pytest.MonkeyPatch):
    def install(limit: int, after: int = 0) -> Injector:
        inj = Injector(limit, after)
        real = fast_mod.FastForward.__call__

        def call(self: Any, x: torch.Tensor) -> torch.Tensor:
            inj.check(max(x.shape[-2:]))
            return real(self, x)

        monkeypatch.setattr(fast_mod.FastForward, "__call__", call)
        return inj

    return install


LOCAL = dict(tile_stats="local", tile_overlap=8)


def test_whole_image_out_of_memory_goes_on_in_halved_tiles(inject_forward, caplog: pytest.LogCaptureFixture) -> None:
    net, x = _net(), _image()
    expected = build_predictor(net, InferenceOptions(tile=72, **LOCAL))(x)  # 150 // 2 -> 72 (multiple of 4)
    whole = build_predictor(net, InferenceOptions(**LOCAL))(x)
    assert (expected - whole).abs().max() > 1e-3  # the tile changes the result: a wrong tile cannot pass
    inj = inject_forward(limit=100)
    predict = build_predictor(net, InferenceOptions(**LOCAL))
    with caplog.at_level(logging.WARNING):
        got = predict(x)
    assert torch.equal(got, expected)
    assert inj.sides[0] == H and set(inj.sides[1:]) == {72} and inj.raised == 1
    notes = [r.getMessage() for r in caplog.records if "out of GPU memory" in r.getMessage()]
    assert len(notes) == 1 and "tiles of 72 px" in notes[0], notes
    # Later images start from the tile that fitted: no second out-of-memory error, no second notice.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = predict(x)
    assert torch.equal(again, expected) and inj.raised == 1
    assert not [r for r in caplog.records if "out of GPU memory" in r.getMessage()]


def test_tile_halved_twice_down_to_the_floor(inject_forward) -> None:
    net, x = _net(), _image()
    inj = inject_forward(limit=70)
    got = build_predictor(net, InferenceOptions(tile=256, **LOCAL))(x)  # 256 -> 128 -> 64
    assert torch.equal(got, build_predictor(net, InferenceOptions(tile=64, **LOCAL))(x))
    assert inj.raised == 2 and max(inj.sides[2:]) == 64


def test_out_of_memory_at_the_floor_propagates(inject_forward) -> None:
    inj = inject_forward(limit=10)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        build_predictor(_net(), InferenceOptions(**LOCAL))(_image())
    assert [s for s in inj.sides] == [H, 72, 64]  # halved, then the floor (64) tried once


def test_partly_written_output_is_rewritten(inject_forward) -> None:
    """An error after some tiles were written into ``out``: the retry rewrites all of it."""
    net, x = _net(), _image()
    expected = torch.zeros(1, 3, 2 * H, 2 * W, dtype=torch.uint8)
    build_predictor(net, InferenceOptions(tile=64, **LOCAL))(x, out=expected)
    inject_forward(limit=80, after=2)  # tiles of 128: two go through, the third runs out of memory
    out = torch.full((1, 3, 2 * H, 2 * W), 7, dtype=torch.uint8)
    build_predictor(net, InferenceOptions(tile=128, **LOCAL))(x, out=out)
    assert torch.equal(out, expected)


def test_global_statistics_tiles_recover_too(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = _net(), _image()
    whole = build_predictor(net, InferenceOptions())(x)
    tiles: list[int] = []
    real = predictor_mod.global_tiled_forward

    def tiled(*args: Any, tile: int, **kwargs: Any) -> torch.Tensor:
        tiles.append(tile)
        if tile > 90:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(*args, tile=tile, **kwargs)

    monkeypatch.setattr(predictor_mod, "global_tiled_forward", tiled)
    got = build_predictor(net, InferenceOptions(tile=200))(x)
    assert tiles == [200, 100, 64]  # halved (multiples of 4), never below the floor
    assert (got - whole).abs().max() <= 1e-5  # global statistics: the whole-image result, whatever the tile


@pytest.mark.parametrize(
    "tile, floor, expected",
    [(None, 64, 72), (256, 64, 128), (130, 64, 64), (64, 64, None), (100, 68, 68), (66, 64, 64), (60, 64, None)],
)
def test_halved_tile(tile, floor, expected) -> None:
    assert tiling.halved_tile(tile, H, W, floor) == expected
