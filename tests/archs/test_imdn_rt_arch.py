"""IMDN_RTC / IMDN_RTE against a from-scratch functional forward on the raw state dict.

The reference below is written from the authors' description (Zheng222/IMDN,
``model/architecture.py``: RTC = conv, [5 IMDBs without CCA, 1x1 conv] + skip,
conv + pixel shuffle; RTE = conv, ReLU, stride-2 conv, 6 six-step blocks with ReLU,
1x1 conv + skip, conv + pixel shuffle by 4) with ``F.conv2d`` on the tensors by
key name: it shares no code with the modules. The input range / colour order
conversion is applied by the test, on the reference's side.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from imdn_plugin.archs import IMDN_RTC, IMDN_RTE

Ref = Callable[[dict, Tensor], Tensor]


def conv(sd: dict, name: str, x: Tensor, stride: int = 1) -> Tensor:
    w = sd[f"{name}.weight"]
    return F.conv2d(x, w, sd.get(f"{name}.bias"), stride=stride, padding=w.shape[-1] // 2)


def ref_rtc(sd: dict, x: Tensor) -> Tensor:
    """RTC on the weights' own input domain."""
    fea = conv(sd, "model.0", x)
    h = fea
    n = len({k.split(".")[3] for k in sd if k.startswith("model.1.sub.") and ".c1." in k})
    for i in range(n):
        p = f"model.1.sub.{i}"
        nf = h.shape[1]
        d = nf // 4
        o1 = F.leaky_relu(conv(sd, f"{p}.c1", h), 0.05)
        d1, r1 = torch.split(o1, [d, nf - d], dim=1)
        o2 = F.leaky_relu(conv(sd, f"{p}.c2", r1), 0.05)
        d2, r2 = torch.split(o2, [d, nf - d], dim=1)
        o3 = F.leaky_relu(conv(sd, f"{p}.c3", r2), 0.05)
        d3, r3 = torch.split(o3, [d, nf - d], dim=1)
        o4 = conv(sd, f"{p}.c4", r3)
        h = conv(sd, f"{p}.c5", torch.cat([d1, d2, d3, o4], 1)) + h
    trunk = conv(sd, f"model.1.sub.{n}", h) + fea
    up = conv(sd, "model.2", trunk)
    s = int(round((up.shape[1] / x.shape[1]) ** 0.5))
    return F.pixel_shuffle(up, s)


def ref_rte(sd: dict, x: Tensor) -> Tensor:
    """RTE on the weights' own input domain."""
    fea = conv(sd, "fea_conv.2", F.relu(conv(sd, "fea_conv.0", x)), stride=2)
    h = fea
    n = len({k.split(".")[0] for k in sd if k.startswith("block") and k.endswith(".c1.weight")})
    for i in range(1, n + 1):
        p = f"block{i}"
        nf = h.shape[1]
        d = nf // 4
        o1 = F.relu(conv(sd, f"{p}.c1", h))
        o2 = F.relu(conv(sd, f"{p}.c2", o1[:, d:]))
        o3 = F.relu(conv(sd, f"{p}.c3", o2[:, d:]))
        o4 = F.relu(conv(sd, f"{p}.c4", o3[:, d:]))  # nf-d -> nf-d
        o5 = F.relu(conv(sd, f"{p}.c5", o4[:, d:]))  # nf-2d -> nf-2d
        o6 = F.relu(conv(sd, f"{p}.c6", o5[:, d:]))  # d -> d
        parts = [o1[:, :d], o2[:, :d], o3[:, :d], o4[:, :d], o5[:, :d], o6]
        h = conv(sd, f"{p}.c7", torch.cat(parts, 1)) + h
    up = conv(sd, "upsampler.0", conv(sd, "LR_conv", h) + fea)
    s = int(round((up.shape[1] / x.shape[1]) ** 0.5))
    return F.pixel_shuffle(up, s)


def through_reference(ref: Ref, sd: dict, x01: Tensor, img_range: float, bgr: bool) -> Tensor:
    """RGB [0, 1] -> the weights' domain -> reference -> RGB [0, 1]."""
    x = x01.flip(1) if bgr else x01
    y = ref(sd, x * img_range) / img_range
    return y.flip(1) if bgr else y


def perturbed(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights with non-zero biases (every term of the forward matters)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if name.endswith("bias") else 1.0 / p[0].numel() ** 0.5))
    return net.eval()


def hand_params(kind: str, nf: int, nb: int, s: int, cin: int = 3, cout: int = 3) -> int:
    """Paper Eq. 9 for every conv, k²·Cin·Cout (+ Cout with a bias), summed by hand."""
    d, r = nf // 4, nf - nf // 4
    if kind == "RTC":
        block = (9 * nf * nf + nf) + 2 * (9 * r * nf + nf) + (9 * r * d + d) + (4 * d * nf + nf)
        return (9 * cin * nf + nf) + nb * block + (nf * nf + nf) + (9 * nf * cout * s * s + cout * s * s)
    block = 9 * nf * nf + 2 * 9 * r * nf + 9 * r * r + 9 * (r - d) ** 2 + 9 * d * d + 6 * d * nf
    shuffle = 2 * s
    return (9 * cin * nf + nf) + 9 * nf * nf + nb * block + nf * nf + (9 * nf * cout * shuffle**2 + cout * shuffle**2)


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_released_sizes_and_hand_counts() -> None:
    assert count(IMDN_RTC()) == hand_params("RTC", 12, 5, 2) == 20_190
    assert count(IMDN_RTE()) == hand_params("RTE", 20, 6, 2) == 89_748
    assert count(IMDN_RTC(num_feat=8, num_block=2, upscale=3)) == hand_params("RTC", 8, 2, 3)
    assert count(IMDN_RTE(num_feat=16, num_block=3, upscale=1, num_in_ch=1, num_out_ch=1)) == hand_params(
        "RTE", 16, 3, 1, 1, 1
    )


CASES = [
    (IMDN_RTC, ref_rtc, dict(), (13, 17)),
    (IMDN_RTC, ref_rtc, dict(num_feat=8, num_block=2, upscale=3), (9, 10)),
    (IMDN_RTC, ref_rtc, dict(img_range=255.0, bgr=True), (8, 11)),
    (IMDN_RTE, ref_rte, dict(), (14, 18)),
    (IMDN_RTE, ref_rte, dict(num_feat=16, num_block=2, upscale=3), (10, 12)),
    (IMDN_RTE, ref_rte, dict(img_range=1.0, bgr=True), (6, 8)),
]


@pytest.mark.parametrize("cls, ref, opt, size", CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_module_equals_functional_reference(cls: type, ref: Ref, opt: dict, size: tuple[int, int]) -> None:
    net = perturbed(cls(**opt), seed=len(opt))
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = net(x)
        sd64 = {k: v.double() for k, v in net.state_dict().items()}
        want = through_reference(ref, sd64, x.double(), net.img_range, net.bgr)
    assert got.shape == (2, 3, size[0] * net.scale, size[1] * net.scale)
    scale = float(want.abs().max())
    assert scale > 0.1
    assert (got.double() - want).abs().max().item() <= 1e-5 * max(1.0, scale)


def _released(reference: Path, name: str) -> dict:
    sd = torch.load(reference / "checkpoints" / name, map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v for k, v in sd.items()}


@pytest.mark.parametrize("cls, ref, name", [(IMDN_RTC, ref_rtc, "model_RTC.pth"), (IMDN_RTE, ref_rte, "model_RTE.pth")])
def test_released_weights_equal_reference(reference: Path, cls: type, ref: Ref, name: str) -> None:
    sd = _released(reference, name)
    net = cls().eval()
    net.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = net(x)
    want = through_reference(ref, sd, x, net.img_range, net.bgr)
    assert (got - want).abs().max().item() <= 1e-4


def _y_psnr(out: np.ndarray, gt: np.ndarray, crop: int) -> float:
    """Y of ITU-R BT.601 (as BasicSR / MATLAB), crop border, uint8-rounded RGB inputs."""
    w = np.array([65.481, 128.553, 24.966]) / 255.0
    y1 = (out.astype(np.float64) @ w + 16)[crop:-crop, crop:-crop]
    y2 = (gt.astype(np.float64) @ w + 16)[crop:-crop, crop:-crop]
    return float(10 * np.log10(255.0**2 / np.mean((y1 - y2) ** 2)))


@pytest.mark.parametrize("cls, name", [(IMDN_RTC, "model_RTC.pth"), (IMDN_RTE, "model_RTE.pth")])
def test_default_range_and_order_are_the_releases(reference: Path, cls: type, name: str) -> None:
    """The defaults (img_range, bgr) score best of the four conventions on Set5 bird x2, by a margin for the range."""
    sd = _released(reference, name)
    lr = cv2.imread(str(reference / "Set5/LR_bicubic/X2/birdx2.bmp"))[:, :, ::-1]
    gt = cv2.imread(str(reference / "Set5/HR/bird.bmp"))[:, :, ::-1]
    x = torch.from_numpy(lr.astype(np.float32) / 255).permute(2, 0, 1)[None]
    scores = {}
    for img_range in (1.0, 255.0):
        for bgr in (False, True):
            net = cls(img_range=img_range, bgr=bgr).eval()
            net.load_state_dict(sd)
            with torch.no_grad():
                y = net(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
            out = (y * 255).round()
            scores[img_range, bgr] = _y_psnr(out, gt[: out.shape[0], : out.shape[1]], 2)
    default = cls()
    best = max(scores, key=scores.get)
    assert best == (default.img_range, default.bgr), scores
    other_range = 255.0 if default.img_range == 1.0 else 1.0
    assert scores[best] - scores[other_range, default.bgr] > 1.0, scores  # a wrong range costs dB


def test_rte_size_requirement_and_errors() -> None:
    net = IMDN_RTE(num_feat=8, num_block=1).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 6, 4)).shape == (1, 3, 12, 8)
    with pytest.raises(ValueError, match=r"^IMDN_RTE: input size 7x4 is not even"):
        net(torch.rand(1, 3, 7, 4))
    with pytest.raises(ValueError, match="num_feat must be a positive multiple of 4, got 10"):
        IMDN_RTE(num_feat=10)
    with pytest.raises(ValueError, match="upscale must be an integer >= 2"):
        IMDN_RTC(upscale=1)
    with pytest.raises(ValueError, match="img_range must be a positive number"):
        IMDN_RTC(img_range=0)
    with pytest.raises(ValueError, match="bgr=True needs 3 input and 3 output channels"):
        IMDN_RTE(num_in_ch=1, num_out_ch=1, bgr=True)
    assert (IMDN_RTE.size_multiple, IMDN_RTC.size_multiple) == (2, 1)
