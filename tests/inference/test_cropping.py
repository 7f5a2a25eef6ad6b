"""Tests of imdn_plugin.inference.cropping: ACS (paper §3.3, Eqs. 6–8), padding and tiling."""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from imdn_plugin.archs.imdn_arch import IMDN, IMDN_AS
from imdn_plugin.inference.cropping import acs_forward, pad_forward
from imdn_plugin.inference.tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    DEFAULT_TILE_BATCH,
    tiled_forward,
)

DEVICE = torch.device(os.environ.get("IMDN_TEST_DEVICE", "cpu"))
REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


def _need_reference() -> Path:
    if not (REFERENCE / "checkpoints").is_dir() or not (REFERENCE / "Set5").is_dir():
        pytest.skip(f"reference data not found at {REFERENCE} (authors' weights and Set5 are not redistributed)")
    return REFERENCE


def _load(net: nn.Module, path: Path) -> nn.Module:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    return net.to(DEVICE).eval()


def _read_rgb(path: Path) -> Tensor:
    """1×3×H×W float in [0, 1] (BMP via Pillow; no BasicSR)."""
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].to(DEVICE)


def _psnr(a: Tensor, b: Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _tiny_as(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return IMDN_AS(num_feat=16, num_block=1).to(DEVICE).eval()


def _tiny_x3(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return IMDN(num_feat=16, num_block=1, upscale=3).to(DEVICE).eval()


def _conv_stack(seed: int = 0) -> nn.Module:
    """Three 3×3 convs (receptive radius 3), no global statistics."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)
    ).to(DEVICE).eval()


def _stride4_stack(seed: int = 0) -> nn.Module:
    """IMDN_AS-like geometry without CCA: two stride-2 convs, a conv, ×4 pixel shuffle (radius < 16 input px)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 48, 3, padding=1), nn.PixelShuffle(4),
    ).to(DEVICE).eval()


class Recorder:
    """Wraps a network; records input shapes, optionally raises on the n-th call."""

    def __init__(self, net: Callable[[Tensor], Tensor], fail_on_call: int | None = None) -> None:
        self.net = net
        self.shapes: list[tuple[int, ...]] = []
        self.fail_on_call = fail_on_call

    def __call__(self, x: Tensor) -> Tensor:
        self.shapes.append(tuple(x.shape))
        if self.fail_on_call is not None and len(self.shapes) == self.fail_on_call:
            raise RuntimeError(f"boom on call {len(self.shapes)}")
        return self.net(x)


# --------------------------------------------------------------------------- ACS reference implementation


def acs_reference(net: Callable[[Tensor], Tensor], x: Tensor, padding: int) -> Tensor:
    """Independent ACS written straight from Eqs. 6–8: one patch per forward, corner by corner."""
    _, _, H, W = x.shape
    out = x.new_zeros((x.shape[0], 3, H, W))  # zeros: a corner left unfilled would show
    half_h, half_w = math.floor(H / 2), math.floor(W / 2)
    delta_h = padding - math.fmod(half_h + padding, 4)  # Eq. 7
    delta_w = padding - math.fmod(half_w + padding, 4)
    len_h, len_w = int(half_h + delta_h), int(half_w + delta_w)  # Eq. 6: patch = ⌊·/2⌋ + Δl
    for vertical in ("top", "bottom"):
        for horizontal in ("left", "right"):
            # Patch slice in image coordinates, anchored at the corner.
            ys = slice(0, len_h) if vertical == "top" else slice(H - len_h, H)
            xs = slice(0, len_w) if horizontal == "left" else slice(W - len_w, W)
            y = net(x[:, :, ys, xs])
            assert y.shape[-2:] == (len_h, len_w)
            # Region of the image this corner owns, and the same region in patch coordinates.
            if vertical == "top":
                img_rows, pat_rows = slice(0, half_h), slice(0, half_h)
            else:
                img_rows, pat_rows = slice(half_h, H), slice(len_h - (H - half_h), len_h)
            if horizontal == "left":
                img_cols, pat_cols = slice(0, half_w), slice(0, half_w)
            else:
                img_cols, pat_cols = slice(half_w, W), slice(len_w - (W - half_w), len_w)
            out[:, :, img_rows, img_cols] = y[:, :, pat_rows, pat_cols]
    return out


@pytest.mark.parametrize("size", [(255, 253), (97, 131), (66, 70)])
@pytest.mark.parametrize("padding", [32, 8, 16])
def test_acs_matches_equations(size: tuple[int, int], padding: int) -> None:
    net = _tiny_as()
    torch.manual_seed(1)
    x = torch.rand(1, 3, *size, device=DEVICE)
    with torch.no_grad():
        got = acs_forward(net, x, padding=padding)
        want = acs_reference(net, x, padding)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_acs_matches_equations_real_checkpoint() -> None:
    ref = _need_reference()
    net = _load(IMDN_AS(), ref / "checkpoints" / "IMDN_AS.pth")
    x = _read_rgb(ref / "Set5" / "HR" / "baby.bmp")[:, :, 100:197, 150:281]  # 97×131
    with torch.no_grad():
        got = acs_forward(net, x)
        want = acs_reference(net, x, 32)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_acs_one_batch_of_four_divisible_patches() -> None:
    rec = Recorder(_tiny_as())
    x = torch.rand(2, 3, 97, 131, device=DEVICE)
    with torch.no_grad():
        acs_forward(rec, x)
    # ⌊97/2⌋=48: Δl=32-(80 mod 4)=32 → 80;  ⌊131/2⌋=65: Δl=32-(97 mod 4)=31 → 96.
    assert rec.shapes == [(8, 3, 80, 96)]


def test_acs_whole_image_when_divisible() -> None:
    net = _tiny_as()
    rec = Recorder(net)
    x = torch.rand(1, 3, 64, 68, device=DEVICE)
    with torch.no_grad():
        got = acs_forward(rec, x)
        want = net(x)
    assert rec.shapes == [(1, 3, 64, 68)]
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_acs_small_image_falls_back_to_padding() -> None:
    net = _tiny_as()
    x = torch.rand(1, 3, 5, 7, device=DEVICE)
    with torch.no_grad():
        got = acs_forward(net, x)
        want = pad_forward(net, x, multiple=4, scale=1)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


@pytest.mark.parametrize("bad", [0, 6, -4, "a", 4.0, True, None])
def test_acs_padding_validation(bad: object) -> None:
    x = torch.rand(1, 3, 9, 9, device=DEVICE)
    with pytest.raises(ValueError, match=r"padding .*got " + repr(bad).replace("(", r"\(")) as exc:
        acs_forward(_tiny_as(), x, padding=bad)  # type: ignore[arg-type]
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------- output sizes


ODD_SIZES = [(2, 300), (300, 2), (5, 7), (1, 1), (33, 1), (67, 45)]


class _CheapAS(nn.Module):
    """IMDN_AS geometry at almost no cost: sides must be divisible by 4, output size = input size."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 48, 3, stride=4, padding=1), nn.PixelShuffle(4))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"input {tuple(x.shape)} not divisible by 4")
        return self.body(x)


def _check_all_sizes(
    sizes: list[tuple[int, int]], nets: dict[str, tuple[nn.Module, int, int]], tile: int, overlap: int
) -> None:
    for name, (net, scale, multiple) in nets.items():
        rec = Recorder(net)
        for h, w in sizes:
            x = torch.rand(1, 3, h, w, device=DEVICE)
            want = (1, 3, scale * h, scale * w)
            with torch.no_grad():
                assert acs_forward(rec, x).shape == want, (name, "acs", h, w)
                assert pad_forward(rec, x, multiple=multiple, scale=scale).shape == want, (name, "pad", h, w)
                got = tiled_forward(rec, x, scale=scale, tile=tile, overlap=overlap, batch=3, multiple=multiple)
                assert got.shape == want, (name, "tiled", h, w)
        if multiple == 4:
            assert all(s[-2] % 4 == 0 and s[-1] % 4 == 0 for s in rec.shapes), name


@pytest.mark.usefixtures("one_thread")
def test_output_sizes_every_small_size() -> None:
    torch.manual_seed(0)
    cheap = {
        "x3-like": (nn.Sequential(nn.Conv2d(3, 27, 3, padding=1), nn.PixelShuffle(3)).to(DEVICE).eval(), 3, 1),
        "as-like": (_CheapAS().to(DEVICE).eval(), 1, 4),
    }
    _check_all_sizes([(h, w) for h in range(1, 21) for w in range(1, 21)], cheap, tile=8, overlap=2)


@pytest.mark.usefixtures("one_thread")
def test_output_sizes_imdn_networks() -> None:
    sizes = ODD_SIZES + [(k, k) for k in range(1, 21)]
    _check_all_sizes(sizes, {"IMDN x3": (_tiny_x3(), 3, 1), "IMDN_AS": (_tiny_as(), 1, 4)}, tile=16, overlap=4)


# --------------------------------------------------------------------------- tiled_forward


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (40, 40), (61, 97), (130, 33)])
@pytest.mark.parametrize("batch", [1, 3])
def test_tiled_exact_without_global_statistics(size: tuple[int, int], batch: int) -> None:
    net = _conv_stack()
    x = torch.rand(2, 3, *size, device=DEVICE)
    with torch.no_grad():
        got = tiled_forward(net, x, scale=1, tile=16, overlap=3, batch=batch)
        want = net(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("size", [(61, 97), (128, 64), (9, 130)])
def test_tiled_exact_stride4_aligned(size: tuple[int, int]) -> None:
    """Tile origins on the 4-pixel grid: a stride-4 net sees the same sampling as one padded pass."""
    net = _stride4_stack()
    x = torch.rand(1, 3, *size, device=DEVICE)
    with torch.no_grad():
        got = tiled_forward(net, x, scale=1, tile=48, overlap=16, batch=2, multiple=4)
        want = pad_forward(net, x, multiple=4, scale=1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_tiled_nearest_upscale_exact_dtype_device() -> None:
    def nearest3(t: Tensor) -> Tensor:
        return t.repeat_interleave(3, dim=-2).repeat_interleave(3, dim=-1)

    x = torch.rand(1, 2, 37, 29, dtype=torch.float64, device=DEVICE)
    got = tiled_forward(nearest3, x, scale=3, tile=10, overlap=2)
    assert got.dtype == torch.float64 and got.device == x.device
    assert torch.equal(got, nearest3(x))


@pytest.mark.usefixtures("one_thread")
def test_tiled_imdn_close_to_whole() -> None:
    """With CCA (global statistics) tiles are not exact, but close on a smooth image."""
    net = _tiny_x3()
    torch.manual_seed(3)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6), size=(72, 72), mode="bicubic", align_corners=False)
    x = x.clamp(0, 1).to(DEVICE)
    with torch.no_grad():
        got = tiled_forward(net, x, scale=3, tile=40, overlap=8)
        want = net(x)
    assert _psnr(got, want) > 50


@pytest.mark.slow
def test_tiled_imdn_x4_set5_close_to_whole() -> None:
    ref = _need_reference()
    net = _load(IMDN(upscale=4), ref / "checkpoints" / "IMDN_x4.pth")
    x = _read_rgb(ref / "Set5" / "LR_bicubic" / "X4" / "babyx4.bmp")  # 128×128: 3×3 tiles of 64×64
    with torch.no_grad():
        got = tiled_forward(net, x, scale=4, tile=64, overlap=16, batch=4)
        want = net(x)
    assert _psnr(got.clamp(0, 1), want.clamp(0, 1)) > 50


def test_tiled_propagates_network_error() -> None:
    rec = Recorder(_conv_stack(), fail_on_call=3)
    x = torch.rand(1, 3, 40, 40, device=DEVICE)
    with pytest.raises(RuntimeError, match="boom on call 3"):
        tiled_forward(rec, x, scale=1, tile=16, overlap=2, batch=1)
    assert len(rec.shapes) == 3


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    "size, tile, overlap, batch, multiple",
    [((1, 1), 8, 2, 2, 4), ((37, 53), 16, 4, 3, 1), ((37, 53), 18, 4, 3, 4), ((100, 64), 32, 8, 5, 4), ((9, 200), 12, 3, 2, 1)],
)
def test_tiled_batch_and_tile_bounds(size: tuple[int, int], tile: int, overlap: int, batch: int, multiple: int) -> None:
    rec = Recorder(_stride4_stack() if multiple == 4 else _conv_stack())
    x = torch.rand(2, 3, *size, device=DEVICE)
    with torch.no_grad():
        out = tiled_forward(rec, x, scale=1, tile=tile, overlap=overlap, batch=batch, multiple=multiple)
    assert out.shape == x.shape
    assert rec.shapes, "network never called"
    assert max(s[0] for s in rec.shapes) <= batch
    assert all(s[0] == batch for s in rec.shapes[:-1])  # only the last call may be short
    assert len({s[1:] for s in rec.shapes}) == 1  # all tiles the same size
    for s in rec.shapes:
        assert s[-2] <= max(tile, multiple) and s[-1] <= max(tile, multiple)
        assert s[-2] % multiple == 0 and s[-1] % multiple == 0


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"scale": 0}, "scale .* got 0"),
        ({"scale": 1.5}, "scale .* got 1.5"),
        ({"tile": 3, "multiple": 4, "overlap": 0}, "tile .* got 3"),
        ({"tile": 16, "overlap": 8}, "overlap .* got 8"),
        ({"overlap": -1}, "overlap .* got -1"),
        ({"batch": 0}, "batch .* got 0"),
        ({"multiple": 0}, "multiple .* got 0"),
        ({"tile": "64"}, "tile .* got '64'"),
    ],
)
def test_tiled_validation(kwargs: dict, pattern: str) -> None:
    args = {"scale": 1, "tile": 16, "overlap": 2, "batch": 1, "multiple": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern) as exc:
        tiled_forward(_conv_stack(), torch.rand(1, 3, 8, 8, device=DEVICE), **args)
    assert "\n" not in str(exc.value)


def test_tiled_overlap_reduced_when_tile_rounds_down(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(_stride4_stack())
    x = torch.rand(1, 3, 21, 13, device=DEVICE)
    with torch.no_grad(), caplog.at_level("WARNING", logger="imdn_plugin.inference.tiling"):
        out = tiled_forward(rec, x, scale=1, tile=10, overlap=4, multiple=4)  # tile → 8, overlap → 2
    assert out.shape == x.shape
    assert {s[-2:] for s in rec.shapes} == {(8, 8)}
    assert "overlap 4 reduced to 2" in caplog.text


def test_wrong_network_output_is_reported() -> None:
    x = torch.rand(1, 3, 20, 20, device=DEVICE)
    with pytest.raises(ValueError, match="expected network output"):
        tiled_forward(_conv_stack(), x, scale=2, tile=8, overlap=2)
    with pytest.raises(ValueError, match="expected network output"):
        pad_forward(_conv_stack(), x, multiple=4, scale=3)


def test_defaults_and_progress() -> None:
    assert DEFAULT_TILE % 4 == 0 and DEFAULT_OVERLAP % 4 == 0 and DEFAULT_TILE > 2 * DEFAULT_OVERLAP
    assert DEFAULT_TILE_BATCH >= 1
    net = _conv_stack()
    x = torch.rand(1, 3, 30, 30, device=DEVICE)
    with torch.no_grad():
        got = tiled_forward(net, x, scale=1, tile=12, overlap=3, progress=True)
        torch.testing.assert_close(got, net(x), atol=1e-5, rtol=0)
