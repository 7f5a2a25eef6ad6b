"""Architecture detection (imdn_plugin.archs.describe): state-dict keys and shapes -> network and sizes."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imdn_plugin.archs import IMDN, IMDN_AS, IMDN_RTC, IMDN_RTE, ArchSpec, build, describe
from imdn_plugin.checkpoint import load_network
from imdn_plugin.errors import CheckpointError

RELEASED = {
    "model_RTC.pth": (ArchSpec("IMDN_RTC", 3, 3, 12, 5, 2), 20_190),
    "model_RTE.pth": (ArchSpec("IMDN_RTE", 3, 3, 20, 6, 2), 89_748),
    "IMDN_AS.pth": (ArchSpec("IMDN_AS", 3, 3, 64, 6, 4), 752_104),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_files_are_recognised(reference: Path, name: str) -> None:
    spec, n_params = RELEASED[name]
    net, got = load_network(reference / "checkpoints" / name)
    assert got == spec and type(net).__name__ == spec.type
    assert sum(p.numel() for p in net.parameters()) == n_params


SYNTHETIC = [
    IMDN(num_in_ch=1, num_out_ch=1, num_feat=32, num_block=2, upscale=3),
    IMDN_AS(num_feat=16, num_block=1),
    IMDN_RTC(num_feat=8, num_block=3, upscale=4),
    IMDN_RTC(num_in_ch=1, num_out_ch=1, num_feat=4, num_block=1, upscale=2),
    IMDN_RTE(num_feat=16, num_block=2, upscale=3),
    IMDN_RTE(num_feat=8, num_block=1, upscale=1),
]


@pytest.mark.parametrize("net", SYNTHETIC, ids=[f"{type(n).__name__}-{i}" for i, n in enumerate(SYNTHETIC)])
def test_round_trip(net: torch.nn.Module) -> None:
    """describe() reads back the constructor's sizes; build() gives a network the weights load into."""
    state = net.state_dict()
    spec = describe(state)
    assert spec is not None and spec.type == type(net).__name__
    assert spec.num_block == net.num_block and spec.scale == net.scale
    rebuilt = build(spec)
    rebuilt.load_state_dict(state, strict=True)
    assert spec.network_opt()["type"] == type(net).__name__


def test_rte_is_not_taken_for_imdn_as() -> None:
    """The old detection read fea_conv.0 as IMDN_AS and failed with 'num_block must be >= 1'."""
    spec = describe(IMDN_RTE().state_dict())
    assert spec == ArchSpec("IMDN_RTE", 3, 3, 20, 6, 2)
    # an IMDN_AS front without IMDB blocks is nothing we know
    as_front = {k: v for k, v in IMDN_AS(num_feat=16, num_block=1).state_dict().items() if not k.startswith("IMDB")}
    assert describe(as_front) is None


def test_rte_with_an_odd_shuffle_is_refused() -> None:
    state = IMDN_RTE(num_feat=8, num_block=1).state_dict()
    state["upsampler.0.weight"] = torch.zeros(27, 8, 3, 3)  # 3 * 3²: a x3 shuffle cannot undo stride 2
    assert describe(state) is None


def test_unknown_checkpoint_is_one_line_naming_what_was_found(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv_first.weight": torch.zeros(8, 3, 3, 3), "conv_first.bias": torch.zeros(8)}, path)
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: not a checkpoint of a network this plugin knows")
    assert "IMDN_RTC" in msg and "IMDN_RTE" in msg
    assert "2 tensors, 224 values, keys conv_first.weight, conv_first.bias" in msg


def test_unbuildable_shapes_are_one_line(tmp_path: Path) -> None:
    state = IMDN_RTE(num_feat=8, num_block=1).state_dict()
    state["fea_conv.0.weight"] = torch.zeros(10, 3, 3, 3)  # width 10: not a multiple of 4
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"looks like IMDN_RTE x2 .* cannot be built: .*multiple of 4, got 10"):
        load_network(path)
