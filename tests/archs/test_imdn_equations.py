"""IMDN, IMDN_AS, IMDB and CCALayer against an eager implementation of the paper's equations.

The reference below is written from Hui et al., ACM MM 2019 (arXiv:1909.11856) alone:
§3.1 Eqs. 1-4 (progressive refinement, 1/4 of the channels kept at each of four steps),
§3.2 Eq. 5 (contrast-aware channel attention: population std + mean per channel,
1x1 squeeze by 16, ReLU, 1x1 excite, sigmoid), §3 Fig. 2 (feature conv, blocks, 1x1
collection conv + LeakyReLU(0.05), 3x3 conv, global residual, 3x3 conv + pixel shuffle)
and §3.3 Fig. 5 (IMDN_AS: two stride-2 3x3 convs with a LeakyReLU between).  It uses only
``torch.nn.functional`` on the raw state dict (no module of the package), its own pixel
shuffle and its own statistics (explicit sums), in float64.

The weights are random but *live*: the CCA squeeze weights are made positive, so the ReLU
after the squeeze passes the statistics on (with PyTorch's default initialisation on
LeakyReLU features most squeeze outputs are 0 and the gate is the constant sigmoid of the
bias).  Each test checks that this holds (``_assert_gates_live``), so that a wrong mean, a
missing sqrt or a sample std changes the output far beyond the tolerance.  No reference
data (authors' weights, Set5) is needed.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from imdn_plugin.archs import IMDB, IMDN, IMDN_AS, CCALayer

SLOPE = 0.05  # LeakyReLU negative slope of the paper's code
ATOL = 1e-10  # float64: what is left is rounding only


# --------------------------------------------------------------------------- the reference


def conv(x: Tensor, sd: dict[str, Tensor], name: str, stride: int = 1) -> Tensor:
    w = sd[f"{name}.weight"]
    return F.conv2d(x, w, sd[f"{name}.bias"], stride=stride, padding=w.shape[-1] // 2)


def lrelu(x: Tensor) -> Tensor:
    return torch.where(x >= 0, x, SLOPE * x)


def pixel_shuffle(x: Tensor, r: int) -> Tensor:
    """Sub-pixel convolution's rearrangement: channel c*r*r + i*r + j goes to pixel (r*y+i, r*x+j)."""
    n, c, h, w = x.shape
    out = x.new_empty((n, c // (r * r), h * r, w * r))
    for ch in range(c // (r * r)):
        for i in range(r):
            for j in range(r):
                out[:, ch, i::r, j::r] = x[:, ch * r * r + i * r + j]
    return out


def contrast(x: Tensor) -> Tensor:
    """Eq. 5: z_c = sqrt(1/HW sum (x - mean)^2) + 1/HW sum x, shape N x C."""
    n_pix = x.shape[2] * x.shape[3]
    mean = x.sum(dim=(2, 3)) / n_pix
    std = (((x - mean[:, :, None, None]) ** 2).sum(dim=(2, 3)) / n_pix).sqrt()
    return std + mean


def cca_gate(x: Tensor, sd: dict[str, Tensor], prefix: str, stats: Callable[[Tensor], Tensor] = contrast) -> Tensor:
    """Channel weights N x C x 1 x 1 of §3.2 (1x1 convs as matrix products)."""
    z = stats(x)
    w1, b1 = sd[f"{prefix}conv_du.0.weight"][:, :, 0, 0], sd[f"{prefix}conv_du.0.bias"]
    w2, b2 = sd[f"{prefix}conv_du.2.weight"][:, :, 0, 0], sd[f"{prefix}conv_du.2.bias"]
    return torch.sigmoid(torch.relu(z @ w1.T + b1) @ w2.T + b2)[:, :, None, None]


def imdb(x: Tensor, sd: dict[str, Tensor], p: str, stats: Callable[[Tensor], Tensor] = contrast) -> Tensor:
    """§3.1 Eqs. 1-4 + CCA + 1x1 fusion + block residual (Fig. 2b)."""
    d = x.shape[1] // 4  # distillation rate 0.25
    kept = []
    h = x
    for step in ("c1", "c2", "c3"):
        h = lrelu(conv(h, sd, p + step))
        kept.append(h[:, :d])  # distilled (kept) channels
        h = h[:, d:]  # coarse channels, refined further
    kept.append(conv(h, sd, p + "c4"))
    cat = torch.cat(kept, dim=1)
    return conv(cat * cca_gate(cat, sd, p + "cca.", stats), sd, p + "c5") + x


def trunk(fea: Tensor, sd: dict[str, Tensor], num_block: int, r: int, stats=contrast) -> Tensor:
    outs, h = [], fea
    for i in range(1, num_block + 1):
        h = imdb(h, sd, f"IMDB{i}.", stats)
        outs.append(h)
    body = lrelu(conv(torch.cat(outs, dim=1), sd, "c.0"))
    return pixel_shuffle(conv(conv(body, sd, "LR_conv") + fea, sd, "upsampler.0"), r)


def imdn_reference(x: Tensor, sd: dict[str, Tensor], num_block: int, r: int, stats=contrast) -> Tensor:
    return trunk(conv(x, sd, "fea_conv"), sd, num_block, r, stats)


def imdn_as_reference(x: Tensor, sd: dict[str, Tensor], num_block: int, stats=contrast) -> Tensor:
    fea = conv(lrelu(conv(x, sd, "fea_conv.0", stride=2)), sd, "fea_conv.2", stride=2)
    return trunk(fea, sd, num_block, 4, stats)


# --------------------------------------------------------------------------- live weights


def live(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights (seeded) in float64 whose CCA gates depend on the statistics."""
    torch.manual_seed(seed)
    net = net.double().eval()
    layers = [net] if isinstance(net, CCALayer) else [m.cca for m in net.modules() if isinstance(m, IMDB)]
    with torch.no_grad():
        for cca in layers:
            squeeze, excite = cca.conv_du[0], cca.conv_du[2]
            # positive squeeze weights (averaging the C statistics): the ReLU passes them on;
            # where there are several squeeze channels, every second one is negative (the ReLU
            # zeroes it), so that the ReLU itself matters too.
            squeeze.weight.uniform_(0.5, 1.5).div_(squeeze.in_channels)
            squeeze.bias.uniform_(0.1, 0.3)  # a negative mean of c4's output stays above 0
            if squeeze.out_channels > 1:
                squeeze.weight[1::2].neg_()
                squeeze.bias[1::2].neg_()
            excite.weight.normal_(0, 2.0)  # gates spread over (0, 1), few saturated
            excite.bias.normal_(0, 0.2)
    return net


def _assert_gates_live(net: torch.nn.Module, x: Tensor) -> None:
    """Every CCA of ``net`` sees squeeze outputs > 0 after the ReLU and gives gates that vary."""
    seen: list[tuple[Tensor, Tensor]] = []

    def hook(module, inputs, output):
        seen.append((module.conv_du[1](module.conv_du[0](contrast(inputs[0])[:, :, None, None])), output / inputs[0]))

    layers = [m for m in net.modules() if isinstance(m, CCALayer)]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    assert len(seen) == len(layers) > 0
    for squeezed, _ in seen:
        assert (squeezed > 1e-3).float().mean() >= 0.5, "CCA squeeze outputs are (mostly) 0 after the ReLU"


def _image(n: int, h: int, w: int, seed: int) -> Tensor:
    """Smooth image with a dark half and a bright band: channels with different means and stds."""
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.rand(n, 3, h, w, generator=g, dtype=torch.float64), 3, 1, 1, count_include_pad=False)
    x[..., : w // 2] *= 0.3
    x[..., h // 3 : h // 3 + 2, :] += 0.6
    return x


def _variants() -> dict[str, Callable[[Tensor], Tensor]]:
    """Wrong statistics that an implementation might compute instead of Eq. 5."""
    def n(x: Tensor) -> int:
        return x.shape[2] * x.shape[3]

    return {
        "mean only": lambda x: x.mean(dim=(2, 3)),
        "std only": lambda x: x.std(dim=(2, 3), correction=0),
        "variance (no sqrt)": lambda x: x.var(dim=(2, 3), correction=0) + x.mean(dim=(2, 3)),
        "sample std (n-1)": lambda x: x.std(dim=(2, 3), correction=1) + x.mean(dim=(2, 3)),
        "sum instead of mean": lambda x: x.std(dim=(2, 3), correction=0) + x.sum(dim=(2, 3)),
        "std - mean": lambda x: x.std(dim=(2, 3), correction=0) - x.mean(dim=(2, 3)),
        "max instead of mean": lambda x: x.std(dim=(2, 3), correction=0) + x.amax(dim=(2, 3)),
        "std over all channels": lambda x: x.std(dim=(1, 2, 3), correction=0)[:, None].expand(-1, x.shape[1])
        + x.mean(dim=(2, 3)),
        "std of x^2 / n": lambda x: ((x**2).sum(dim=(2, 3)) / n(x)).sqrt() + x.mean(dim=(2, 3)),
    }


# --------------------------------------------------------------------------- CCA


@pytest.mark.parametrize("seed", [0, 1])
def test_cca_matches_eq5_with_live_statistics(seed: int) -> None:
    layer = live(CCALayer(64, reduction=16), seed)
    g = torch.Generator().manual_seed(seed)
    # Channels with very different means and stds (both matter for the gate).
    x = torch.randn(2, 64, 9, 7, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, 64)[:, None, None].double()
    x = x + torch.linspace(-1, 2, 64, dtype=torch.float64)[:, None, None]
    # Squeeze outputs before the ReLU: some positive (passed on), some negative (zeroed).
    pre = layer.conv_du[0](contrast(x)[:, :, None, None])
    assert (pre > 1e-3).any() and (pre < -1e-3).any()
    sd = {k: v for k, v in layer.state_dict().items()}
    with torch.no_grad():
        got = layer(x)
    want = x * cca_gate(x, sd, "")
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    _assert_gates_live(torch.nn.Sequential(layer), x)
    # The gate is not constant over channels, and each wrong statistic moves the output far.
    assert (want / x).std() > 0.05
    for name, stats in _variants().items():
        wrong = x * cca_gate(x, sd, "", stats)
        assert (wrong - want).abs().max() > 1e-3, name  # 10^7 x the tolerance


def test_cca_gate_depends_on_both_mean_and_std() -> None:
    """Two channels layouts with the same std + mean sum give the same gate; changing either alone does not."""
    layer = live(CCALayer(16), 3)
    base = torch.randn(1, 16, 6, 6, dtype=torch.float64)
    base = (base - base.mean(dim=(2, 3), keepdim=True)) / base.std(dim=(2, 3), keepdim=True, correction=0)
    with torch.no_grad():
        g = lambda x: layer(x) / x
        a = g(base * 1.0 + 2.0)  # std 1, mean 2: z = 3
        b = g(base * 2.0 + 1.0)  # std 2, mean 1: z = 3
        c = g(base * 1.0 + 1.0)  # mean changed only
        d = g(base * 2.0 + 2.0)  # std changed only
    torch.testing.assert_close(a, b, atol=1e-9, rtol=0)
    assert (a - c).abs().max() > 1e-3 and (a - d).abs().max() > 1e-3


def test_cca_low_precision_statistics_with_live_gate() -> None:
    """fp32 is one var_mean pass (bit-identical); bf16 / fp16 reduce in fp32 (a sum > 65504 stays
    finite) and give Eq. 5's population std and mean to their own precision."""
    layer = live(CCALayer(16), 4).float()
    x = torch.randn(2, 16, 11, 9) * 2 + 1
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    with torch.no_grad():
        assert torch.equal(layer(x), x * layer.conv_du(var.sqrt() + mean))
        assert (layer(x) / x).std() > 0.05  # a live gate
    # 300x300 maps near 1 (the fp16 sum overflows) with stds from 0.2 to 0.9 (std != var, != var(n-1)).
    big = 1 + torch.randn(1, 16, 300, 300) * torch.linspace(0.2, 0.9, 16)[:, None, None]
    want_m, want_s = big.mean(dim=(2, 3), keepdim=True), big.std(dim=(2, 3), keepdim=True, correction=0)
    for dtype in (torch.float16, torch.bfloat16):
        m, s = CCALayer.statistics(big.to(dtype))
        assert m.dtype == s.dtype == dtype and m.shape == s.shape == (1, 16, 1, 1)
        rel = 2 ** -8 if dtype == torch.bfloat16 else 2 ** -11  # the rounding of the result to the dtype
        torch.testing.assert_close(m.float(), want_m, rtol=2 * rel, atol=2e-3)
        torch.testing.assert_close(s.float(), want_s, rtol=2 * rel, atol=1e-3)
        with torch.no_grad():
            out = layer.to(dtype)(big.to(dtype)).float()
        assert torch.isfinite(out).all()


# --------------------------------------------------------------------------- IMDB


@pytest.mark.parametrize("num_feat", [16, 32])
def test_imdb_matches_eqs_1_to_5(num_feat: int) -> None:
    block = live(IMDB(num_feat), num_feat)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, num_feat, 10, 9, generator=g, dtype=torch.float64) * 0.5 + 0.2
    x[1] = x[1] * 2 - 0.5  # another image, other statistics
    sd = block.state_dict()
    with torch.no_grad():
        got = block(x)
    want = imdb(x, sd, "")
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    _assert_gates_live(block, x)
    for name, stats in _variants().items():
        assert (imdb(x, sd, "", stats) - want).abs().max() > 1e-6, name  # 10^4 x the tolerance
    # distill() + fuse() (the tiling entry points) give the same block output
    with torch.no_grad():
        cat = block.distill(x)
        mean, std = CCALayer.statistics(cat)
        torch.testing.assert_close(block.fuse(x, cat, mean, std), want, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- whole networks


@pytest.mark.parametrize("upscale, num_feat, num_block, size", [(2, 16, 2, (9, 11)), (3, 32, 1, (7, 6)), (4, 16, 3, (6, 8))])
def test_imdn_matches_the_paper_equations(upscale: int, num_feat: int, num_block: int, size: tuple[int, int]) -> None:
    net = live(IMDN(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_block=num_block, upscale=upscale), upscale)
    x = _image(2, *size, seed=upscale)
    with torch.no_grad():
        got = net(x)
    want = imdn_reference(x, net.state_dict(), num_block, upscale)
    assert got.shape == (2, 3, size[0] * upscale, size[1] * upscale)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    _assert_gates_live(net, x)
    wrong = imdn_reference(x, net.state_dict(), num_block, upscale, stats=_variants()["mean only"])
    assert (wrong - want).abs().max() > 1e-6


def test_imdn_other_channel_counts() -> None:
    net = live(IMDN(num_in_ch=1, num_out_ch=2, num_feat=16, num_block=1, upscale=2), 11)
    x = _image(1, 8, 7, seed=2)[:, :1]
    with torch.no_grad():
        got = net(x)
    torch.testing.assert_close(got, imdn_reference(x, net.state_dict(), 1, 2), atol=ATOL, rtol=0)


@pytest.mark.parametrize("num_feat, num_block, size", [(16, 2, (20, 28)), (32, 1, (16, 12))])
def test_imdn_as_matches_the_paper_equations(num_feat: int, num_block: int, size: tuple[int, int]) -> None:
    net = live(IMDN_AS(num_feat=num_feat, num_block=num_block), num_feat + num_block)
    x = _image(2, *size, seed=5)
    with torch.no_grad():
        got = net(x)
    want = imdn_as_reference(x, net.state_dict(), num_block)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    _assert_gates_live(net, x)
    wrong = imdn_as_reference(x, net.state_dict(), num_block, stats=_variants()["sample std (n-1)"])
    assert (wrong - want).abs().max() > 1e-7  # 10^3 x the tolerance


def test_reference_pixel_shuffle_is_torchs() -> None:
    """The test's own pixel shuffle agrees with torch's on a labelled tensor (checks the reference)."""
    x = torch.arange(2 * 18 * 2 * 3, dtype=torch.float64).reshape(2, 18, 2, 3)
    assert torch.equal(pixel_shuffle(x, 3), F.pixel_shuffle(x, 3))


def test_state_dict_names_are_the_authors() -> None:
    """The reference reads the authors' parameter names; every parameter is used by it."""
    keys = set(IMDN(num_feat=16, num_block=2, upscale=2).state_dict())
    per_block = {f"IMDB{i}.{n}.{t}" for i in (1, 2) for n in ("c1", "c2", "c3", "c4", "c5", "cca.conv_du.0", "cca.conv_du.2")
                 for t in ("weight", "bias")}  # fmt: skip
    rest = {f"{n}.{t}" for n in ("fea_conv", "c.0", "LR_conv", "upsampler.0") for t in ("weight", "bias")}
    assert keys == per_block | rest
    keys_as = set(IMDN_AS(num_feat=16, num_block=2).state_dict())
    assert keys_as == per_block | (rest - {"fea_conv.weight", "fea_conv.bias"}) | {
        f"fea_conv.{i}.{t}" for i in (0, 2) for t in ("weight", "bias")
    }
