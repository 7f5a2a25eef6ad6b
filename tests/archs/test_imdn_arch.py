"""IMDN / IMDN_AS / CCALayer: shapes, parameter counts, the CCA formula, depth, errors."""
from __future__ import annotations

import pytest
import torch

from imdn_plugin.archs import IMDB, IMDN, IMDN_AS, CCALayer


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("scale, expected", [(2, 694_404), (3, 703_059), (4, 715_176)])
def test_imdn_parameter_count_matches_paper_release(scale: int, expected: int) -> None:
    assert count(IMDN(upscale=scale)) == expected


def test_imdn_as_parameter_count() -> None:
    assert count(IMDN_AS()) == 752_104


@pytest.mark.parametrize("scale", [2, 3, 4, 5])
@pytest.mark.parametrize("size", [(1, 1), (7, 13), (16, 16), (31, 2)])
def test_imdn_output_shape(scale: int, size: tuple[int, int], device: torch.device) -> None:
    net = IMDN(num_feat=16, num_block=2, upscale=scale).to(device).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size, device=device))
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)


def test_imdn_as_keeps_size_and_rejects_bad_sides(device: torch.device) -> None:
    net = IMDN_AS(num_feat=16, num_block=1).to(device).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 20, 36, device=device)).shape == (1, 3, 20, 36)
    with pytest.raises(ValueError, match=r"IMDN_AS: input size 21x36 is not divisible by 4"):
        net(torch.rand(1, 3, 21, 36, device=device))


def test_cca_matches_direct_formula(device: torch.device) -> None:
    """Paper Eq. 5: z_c = sqrt(mean((x - mean x)^2)) + mean x, then conv-ReLU-conv-sigmoid gate."""
    torch.manual_seed(0)
    layer = CCALayer(64, reduction=16).to(device).double()
    x = torch.randn(2, 64, 9, 7, device=device, dtype=torch.float64) * 3 + 1
    n = x.shape[2] * x.shape[3]
    # Direct, loop-free formula with explicit sums (population std, not torch.std's n-1).
    mean = x.sum(dim=(2, 3)) / n
    std = (((x - mean[:, :, None, None]) ** 2).sum(dim=(2, 3)) / n) ** 0.5
    z = std + mean  # (N, C)
    w1, b1 = layer.conv_du[0].weight[:, :, 0, 0], layer.conv_du[0].bias
    w2, b2 = layer.conv_du[2].weight[:, :, 0, 0], layer.conv_du[2].bias
    gate = torch.sigmoid(torch.relu(z @ w1.T + b1) @ w2.T + b2)
    expected = x * gate[:, :, None, None]
    assert torch.allclose(layer(x), expected, atol=1e-12)
    assert layer.conv_du[0].out_channels == 4  # 64 / 16


def test_num_block_changes_depth() -> None:
    nets = {n: IMDN(num_block=n) for n in (1, 3, 6)}
    for n, net in nets.items():
        assert len([m for m in net.modules() if isinstance(m, IMDB)]) == n
        assert net.c[0].in_channels == 64 * n
    assert count(nets[3]) - count(nets[1]) == 2 * (count(IMDB(64)) + 64 * 64)


def test_imdb_split_is_16_kept_48_refined() -> None:
    block = IMDB(64)
    assert (block.distilled, block.remaining) == (16, 48)
    assert block.c2.in_channels == 48 and block.c4.out_channels == 16 and block.c5.in_channels == 64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"upscale": 1}, "upscale must be an integer >= 2"),
        ({"upscale": 2.5}, "upscale must be an integer >= 2"),
        ({"num_block": 0}, "num_block must be >= 1"),
        ({"num_feat": 40}, "num_feat must be a positive multiple of 16"),
    ],
)
def test_bad_constructor_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IMDN(**kwargs)


def test_unknown_argument_is_a_type_error_not_swallowed() -> None:
    with pytest.raises(TypeError):
        IMDN(num_feats=64)  # type: ignore[call-arg]


def test_cca_statistics_fp32_unchanged_and_half_precision_reduced_in_fp32() -> None:
    """Eq. 5 statistics: fp32 bit-identical to one var_mean pass; fp16 over 300×300 (sum > 65504) finite."""
    torch.manual_seed(0)
    layer = CCALayer(16).eval()
    x = torch.randn(2, 16, 11, 9) * 2 + 1
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    with torch.no_grad():
        assert torch.equal(layer(x), x * layer.conv_du(var.sqrt() + mean))
    big = 1 + 0.1 * torch.randn(1, 16, 300, 300)
    for dtype in (torch.float16, torch.bfloat16):
        m, s = CCALayer.statistics(big.to(dtype))
        assert m.dtype == s.dtype == dtype and m.shape == s.shape == (1, 16, 1, 1)
        assert torch.allclose(m.float(), big.mean(dim=(2, 3), keepdim=True), atol=1e-2)
        assert torch.allclose(s.float(), big.std(dim=(2, 3), keepdim=True, correction=0), atol=1e-2)
