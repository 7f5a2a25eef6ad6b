"""count_complexity against hand counts (paper Eq. 9 / Eq. 10, NTIRE activations and convs)
on small configurations where every term is written out."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from imdn_plugin.archs import IMDN, IMDN_AS, IMDN_RTC, IMDN_RTE
from imdn_plugin.archs.complexity import count_complexity, round_k


def conv(cin: int, cout: int, k: int, hw: int) -> tuple[int, int, int]:
    """(Mult-Adds, output elements, 1 conv) of a k×k conv producing ``hw`` pixels."""
    return k * k * cin * cout * hw, cout * hw, 1


def total(*convs: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(sum(c[i] for c in convs) for i in range(3))  # type: ignore[return-value]


def hand_imdn(nf: int, nb: int, s: int, h: int, w: int, stride: int = 1) -> tuple[int, int, int]:
    hw = (h // stride) * (w // stride)
    d, r = nf // 4, nf - nf // 4
    if stride == 1:
        front = [conv(3, nf, 3, hw)]
    else:  # IMDN_AS: two stride-2 convs
        front = [conv(3, nf, 3, (h // 2) * (w // 2)), conv(nf, nf, 3, hw)]
    block = [conv(nf, nf, 3, hw), conv(r, nf, 3, hw), conv(r, nf, 3, hw), conv(r, d, 3, hw),
             conv(nf, nf // 16, 1, 1), conv(nf // 16, nf, 1, 1),  # CCA on the 1×1 statistics
             conv(nf, nf, 1, hw)]  # fmt: skip
    tail = [conv(nf * nb, nf, 1, hw), conv(nf, nf, 3, hw), conv(nf, 3 * s * s, 3, hw)]
    return total(*front, *(block * nb), *tail)


def hand_rtc(nf: int, nb: int, s: int, hw: int) -> tuple[int, int, int]:
    d, r = nf // 4, nf - nf // 4
    block = [conv(nf, nf, 3, hw), conv(r, nf, 3, hw), conv(r, nf, 3, hw), conv(r, d, 3, hw), conv(4 * d, nf, 1, hw)]
    return total(conv(3, nf, 3, hw), *(block * nb), conv(nf, nf, 1, hw), conv(nf, 3 * s * s, 3, hw))


def hand_rte(nf: int, nb: int, s: int, h: int, w: int) -> tuple[int, int, int]:
    d, r = nf // 4, nf - nf // 4
    full, half = h * w, (h // 2) * (w // 2)
    block = [conv(nf, nf, 3, half), conv(r, nf, 3, half), conv(r, nf, 3, half), conv(r, r, 3, half),
             conv(r - d, r - d, 3, half), conv(d, d, 3, half), conv(6 * d, nf, 1, half)]  # fmt: skip
    return total(conv(3, nf, 3, full), conv(nf, nf, 3, half), *(block * nb), conv(nf, nf, 1, half),
                 conv(nf, 3 * (2 * s) ** 2, 3, half))  # fmt: skip


CASES = [
    ("IMDN", IMDN(num_feat=16, num_block=2, upscale=3), (5, 7), hand_imdn(16, 2, 3, 5, 7), 3),
    ("IMDN_AS", IMDN_AS(num_feat=32, num_block=1), (8, 12), hand_imdn(32, 1, 4, 8, 12, stride=4), 1),
    ("IMDN_RTC", IMDN_RTC(num_feat=8, num_block=3, upscale=2), (6, 5), hand_rtc(8, 3, 2, 30), 2),
    ("IMDN_RTE", IMDN_RTE(num_feat=12, num_block=2, upscale=2), (6, 10), hand_rte(12, 2, 2, 6, 10), 2),
]


@pytest.mark.parametrize("name, net, size, hand, scale", CASES, ids=[c[0] for c in CASES])
def test_counts_equal_hand_counts(name: str, net: nn.Module, size: tuple, hand: tuple, scale: int) -> None:
    c = count_complexity(net, size)
    macs, acts, convs = hand
    assert (c.macs, c.activations, c.convs) == (macs, acts, convs)
    assert c.params == sum(p.numel() for p in net.parameters())
    assert c.scale == scale and c.architecture == name
    assert c.output_size == (size[0] * scale, size[1] * scale)
    assert c.macs_per_output_pixel == pytest.approx(macs / (size[0] * size[1] * scale * scale))


def test_paper_eq10_per_output_pixel_for_the_paper_network() -> None:
    """IMDN ×s: Mult-Adds per HR pixel = (Σ k²·C_in·C_out of the LR-resolution convs) / s², plus the
    size-independent CCA term divided by the HR pixel count."""
    for s in (2, 3, 4):
        c = count_complexity(IMDN(upscale=s), (32, 32))
        per_lr = 9 * 3 * 64 + 6 * (9 * 64 * 64 + 2 * 9 * 48 * 64 + 9 * 48 * 16 + 64 * 64) + 384 * 64 + 9 * 64 * 64
        per_lr += 9 * 64 * 3 * s * s
        cca = 6 * 2 * 64 * 4
        assert c.macs == per_lr * 32 * 32 + cca
        assert c.macs_per_output_pixel == pytest.approx(per_lr / s**2 + cca / (32 * 32 * s * s))


def test_a_conv_called_twice_counts_twice() -> None:
    """A conv module called twice is two convs (NTIRE counts conv calls)."""

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(self.c(x))

    c = count_complexity(Twice(), (4, 4))
    assert (c.convs, c.macs, c.activations, c.params) == (2, 2 * 27 * 3 * 16, 2 * 48, 84)


def test_the_network_is_not_changed() -> None:
    net = IMDN_RTC(num_feat=8, num_block=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_complexity(net, (4, 4))
    assert all(p.device.type == "cpu" for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(m._forward_hooks for m in net.modules())


def test_round_k_is_half_up() -> None:
    assert [round_k(x) for x in (694_404, 703_499, 703_500, 44_364)] == ["694K", "703K", "704K", "44K"]
