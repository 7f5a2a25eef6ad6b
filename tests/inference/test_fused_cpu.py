"""The fused CPU plan's self-check: it must catch a plan that is slightly wrong.

``make_fast_forward`` trusts the fused plan only because :func:`self_check`
compares it with the module's own forward.  These tests feed the real
self-check plans that are off by 1e-3 (10x its tolerance), of the wrong shape,
or that raise, and check that ``make_fast_forward`` then warns and runs eager.
"""
from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor, nn

from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.inference import fast as fast_mod
from imdn_plugin.inference.fast import make_fast_forward
from imdn_plugin.inference.fused_cpu import (
    SELF_CHECK_ATOL,
    FusedIMDNPlan,
    mkldnn_fusion_available,
    self_check,
)

pytestmark = pytest.mark.skipif(not mkldnn_fusion_available(), reason="this PyTorch has no oneDNN fused convolutions")

OFFSET = 1e-3  # 10x SELF_CHECK_ATOL


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny inputs (tests/conftest.py)


class OffsetPlan(FusedIMDNPlan):
    """A plan whose output is off by ``OFFSET`` at one pixel (e.g. a wrong bias or border)."""

    def __call__(self, x: Tensor) -> Tensor:
        out = super().__call__(x).clone()
        out[..., -1, -1] += OFFSET
        return out


class CroppedPlan(FusedIMDNPlan):
    def __call__(self, x: Tensor) -> Tensor:
        return super().__call__(x)[..., :-1, :]


class RaisingPlan(FusedIMDNPlan):
    def __call__(self, x: Tensor) -> Tensor:
        raise RuntimeError("simulated missing oneDNN op\nsecond line")


def networks() -> list[nn.Module]:
    torch.manual_seed(0)
    return [IMDN(num_feat=16, num_block=1, upscale=3).eval(), IMDN_AS(num_feat=16, num_block=1).eval()]


@pytest.mark.parametrize("index", [0, 1], ids=["IMDN", "IMDN_AS"])
def test_a_correct_plan_passes(index: int) -> None:
    net = networks()[index]
    assert self_check(FusedIMDNPlan(net), net) is None


@pytest.mark.parametrize("index", [0, 1], ids=["IMDN", "IMDN_AS"])
def test_a_plan_off_by_1e_3_fails(index: int) -> None:
    net = networks()[index]
    with torch.no_grad():  # the tolerance is relative to max(1, |output|): keep outputs ~1
        assert net(torch.rand(1, 3, 8, 8)).abs().max().item() < 2
    assert OFFSET >= 10 * SELF_CHECK_ATOL  # a loosened tolerance would let such a plan through
    problem = self_check(OffsetPlan(net), net)
    assert problem is not None and problem.startswith("max abs diff 0.001 > 0.0001 on a"), problem


def test_wrong_shape_and_exceptions_are_reported_in_one_line() -> None:
    net = networks()[0]
    assert self_check(CroppedPlan(net), net) == "shape (1, 3, 32, 27) != (1, 3, 33, 27)"
    assert self_check(RaisingPlan(net), net) == "RuntimeError: simulated missing oneDNN op"


@pytest.mark.parametrize("index", [0, 1], ids=["IMDN", "IMDN_AS"])
def test_make_fast_forward_runs_eager_when_the_real_self_check_fails(
    index: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    net = networks()[index]
    monkeypatch.setattr(fast_mod, "FusedIMDNPlan", OffsetPlan)  # the real self_check judges it
    with caplog.at_level(logging.WARNING, logger=fast_mod.__name__):
        forward = make_fast_forward(net)
    assert forward.path == "eager" and forward.plan is None
    assert "does not reproduce" in caplog.text and "max abs diff 0.001" in caplog.text
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        assert torch.allclose(forward(x), net(x), atol=1e-6)  # no offset: the plan is not used


def test_make_fast_forward_keeps_a_plan_that_passes(caplog: pytest.LogCaptureFixture) -> None:
    net = networks()[0]
    with caplog.at_level(logging.WARNING, logger=fast_mod.__name__):
        forward = make_fast_forward(net)
    assert forward.path == "fused-cpu" and "does not reproduce" not in caplog.text
