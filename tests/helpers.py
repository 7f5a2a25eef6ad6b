"""Helpers shared by several test files (networks and images that make bugs visible)."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch


def sensitive(make: Callable[[], torch.nn.Module], seed: int = 0) -> torch.nn.Module:
    """Weights whose output depends strongly on the channel order and on the CCA statistics
    (so a wrong channel order, ACS padding or tile overlap shows in the pixels), centred
    in [0, 1] so that little is clipped."""
    torch.manual_seed(seed)
    net = make()
    with torch.no_grad():
        for block in net.blocks():
            squeeze, excite = block.cca.conv_du[0], block.cca.conv_du[2]
            squeeze.weight.abs_().mul_(10)  # positive: the ReLU passes the statistics on
            squeeze.bias.zero_()
            excite.weight.mul_(10)
            block.c5.weight.mul_(10)  # the gated features dominate the block output
        net.upsampler[0].bias.add_(0.5)
    return net.eval()


def banded(h: int, w: int, seed: int, *bands: tuple) -> np.ndarray:
    """A smooth dark 16-bit image with bright bands: windows that include a band and windows
    that do not have very different statistics."""
    img = cv2.GaussianBlur(np.random.default_rng(seed).random((h, w, 3)), (7, 7), 0) * 0.2
    for band in bands:
        img[band] = 1.0
    return (img * 65535).round().astype(np.uint16)
