"""IMDNModel: exact output sizes through every inference path, wiring, loading."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import imdn_plugin
from imdn_plugin.archs import IMDN_AS
from imdn_plugin.errors import CheckpointError, ConfigError
from imdn_plugin.inference import acs_forward
from imdn_plugin.inference.fast import make_fast_forward
from tests.helpers import banded, sensitive

SMALL = {"num_feat": 16, "num_block": 1}


def make_model(net_opt: dict, inference: dict | None = None, path: dict | None = None, device: Any = "cpu",
               logger: dict | None = None):
    imdn_plugin.register()
    from basicsr.models import build_model

    opt = {
        "model_type": "IMDNModel",
        "num_gpu": 0 if torch.device(device).type == "cpu" else 1,
        "dist": False,
        "is_train": False,
        "network_g": net_opt,
        "path": path or {},
    }
    if inference is not None:
        opt["inference"] = inference
    if logger is not None:
        opt["logger"] = logger
    torch.manual_seed(0)
    return build_model(opt)


def run(model, lq: torch.Tensor) -> torch.Tensor:
    model.feed_data({"lq": lq})
    model.test()
    return model.output


SIZES = [(n, n) for n in range(1, 65)] + [(1, 64), (64, 1), (2, 300), (300, 2), (5, 7), (97, 131), (255, 253)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "net_opt, scale",
    [({"type": "IMDN", "upscale": 3, **SMALL}, 3), ({"type": "IMDN_AS", **SMALL}, 1)],
    ids=["IMDN_x3", "IMDN_AS"],
)
@pytest.mark.parametrize("inference", [None, {"tile": 48, "tile_overlap": 8}], ids=["auto", "tiled"])
def test_every_size_comes_out_exact(net_opt: dict, scale: int, inference: dict | None, device) -> None:
    model = make_model(net_opt, inference, device=device)
    for h, w in SIZES:
        out = run(model, torch.rand(1, 3, h, w, device=device))
        assert out.shape == (1, 3, h * scale, w * scale), (h, w)
        assert torch.isfinite(out).all()


def test_imdn_as_uses_acs_for_odd_sizes(device) -> None:
    model = make_model({"type": "IMDN_AS", **SMALL}, {"acs_padding": 8}, device=device)
    x = torch.rand(1, 3, 66, 71, device=device)
    with torch.no_grad():
        expected = acs_forward(model.net_g.eval(), x, padding=8)
    model.net_g.train()
    out = run(model, x)
    assert torch.allclose(out, expected, atol=1e-5)
    assert model.net_g.training  # test() restores the training mode


def test_imdn_as_default_acs_padding_is_32(one_thread) -> None:
    """Without an ``inference:`` block, IMDN_AS is tested with the paper's ACS padding 32 (Eq. 8)."""
    model = make_model({"type": "IMDN_AS", **SMALL})
    net = sensitive(lambda: IMDN_AS(**SMALL))
    model.net_g.load_state_dict(net.state_dict())
    # 70x75: not divisible by 4, and rows 58-63 are inside the ACS patches only with padding 32
    x = torch.from_numpy(banded(70, 75, 4, np.s_[58:64, :]).astype(np.float32).transpose(2, 0, 1) / 65535)[None]
    forward = make_fast_forward(net)
    expected = {p: acs_forward(forward, x, padding=p) for p in (32, 28)}
    assert (expected[32] - expected[28]).abs().max().item() > 1e-3
    assert (run(model, x) - expected[32]).abs().max().item() <= 1e-5


def test_unknown_inference_key_and_network_key() -> None:
    with pytest.raises(ConfigError, match="inference: unknown key 'tile_size'"):
        make_model({"type": "IMDN", "upscale": 2, **SMALL}, {"tile_size": 64})
    with pytest.raises(ConfigError, match=r"network_g \(IMDN_AS\): unknown key 'upscale'"):
        make_model({"type": "IMDN_AS", "upscale": 4, **SMALL})


def test_loads_bare_and_params_files(tmp_path: Path) -> None:
    src = make_model({"type": "IMDN", "upscale": 2, **SMALL})
    sd = {f"module.{k}": v for k, v in src.net_g.state_dict().items()}
    torch.save(sd, tmp_path / "bare.pth")
    torch.save({"params": src.net_g.state_dict()}, tmp_path / "basicsr.pth")
    for name in ("bare.pth", "basicsr.pth"):
        torch.manual_seed(123)
        model = make_model({"type": "IMDN", "upscale": 2, **SMALL}, path={"pretrain_network_g": str(tmp_path / name)})
        for a, b in zip(model.net_g.state_dict().values(), src.net_g.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="checkpoint is IMDN x2 .* but network_g is IMDN x4"):
        make_model({"type": "IMDN", "upscale": 4, **SMALL}, path={"pretrain_network_g": str(tmp_path / "bare.pth")})


def train_model(**train_extra):
    imdn_plugin.register()
    from basicsr.models import build_model

    opt = {
        "model_type": "IMDNModel", "num_gpu": 0, "dist": False, "is_train": True,
        "network_g": {"type": "IMDN", "upscale": 2, **SMALL}, "path": {},
        "train": {"ema_decay": 0, "optim_g": {"type": "Adam", "lr": 1e-3}, "scheduler": {"type": "MultiStepLR", "milestones": [100], "gamma": 0.5},
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0}, **train_extra},
    }  # fmt: skip
    torch.manual_seed(0)
    return build_model(opt)


@pytest.mark.slow
def test_channels_last_training_step_matches_the_plain_step() -> None:
    torch.manual_seed(5)
    batch = {"lq": torch.rand(2, 3, 12, 12), "gt": torch.rand(2, 3, 24, 24)}
    plain, fast = train_model(), train_model(channels_last=True)
    for it in range(1, 4):
        for m in (plain, fast):
            m.feed_data(batch)
            m.optimize_parameters(it)
        assert abs(plain.log_dict["l_pix"] - fast.log_dict["l_pix"]) < 1e-5
    for a, b in zip(plain.net_g.state_dict().values(), fast.net_g.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_amp_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="train:amp: must be one of ~, bf16, fp16, got 'fp8'"):
        train_model(amp="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
            train_model(amp="fp16")
    model = train_model(amp="bf16")  # runs on CPU too
    model.feed_data({"lq": torch.rand(1, 3, 8, 8), "gt": torch.rand(1, 3, 16, 16)})
    model.optimize_parameters(1)
    assert np.isfinite(model.log_dict["l_pix"])


@pytest.mark.parametrize("enabled", [True, False])
def test_save_network_writes_safetensors_on_request(tmp_path: Path, enabled: bool) -> None:
    from imdn_plugin.checkpoint import load_state_dict

    model = make_model({"type": "IMDN", "upscale": 2, **SMALL}, path={"models": str(tmp_path)},
                       logger={"save_safetensors": enabled})  # read once, when the model is made
    model.save_network(model.net_g, "net_g", 7)
    expected = {k: v.cpu() for k, v in model.get_bare_model(model.net_g).state_dict().items()}
    from_pth = load_state_dict(tmp_path / "net_g_7.pth")
    assert all(torch.equal(from_pth[k], v) for k, v in expected.items())
    st = tmp_path / "net_g_7.safetensors"
    assert st.exists() == enabled
    if enabled:
        from_st = load_state_dict(st)
        assert from_st.keys() == expected.keys() and all(torch.equal(from_st[k], v) for k, v in expected.items())


def test_save_safetensors_option_is_checked() -> None:
    from imdn_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="logger:save_safetensors: must be true or false, got 'yes'"):
        make_model({"type": "IMDN", "upscale": 2, **SMALL}, logger={"save_safetensors": "yes"})
