"""benchmarks/ntire.py: pairing, the challenge's PSNR, and one network's row against an independent computation."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from imdn_plugin.archs import IMDN, IMDN_RTE

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ntire.py"


@pytest.fixture(scope="module")
def ntire():
    spec = importlib.util.spec_from_file_location("imdn_ntire_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_psnr_is_rgb_with_a_4_pixel_border(ntire) -> None:
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    out = hr.copy()
    out[:4] = 0  # inside the border: ignored
    out[10, 10, 2] = np.uint8((int(hr[10, 10, 2]) + 50) % 256)  # one blue value, counted
    diff = (int(out[10, 10, 2]) - int(hr[10, 10, 2])) ** 2
    expected = 10 * np.log10(255**2 / (diff / (12 * 16 * 3)))
    assert ntire.psnr_rgb(out, hr) == pytest.approx(expected)


@pytest.mark.parametrize("make, scale", [(lambda: IMDN(num_feat=16, num_block=1, upscale=4), 4), (lambda: IMDN_RTE(num_feat=8, num_block=1), 2)])
def test_one_row_against_an_independent_forward(ntire, tiny_sr_data: Path, tmp_path: Path, make, scale: int) -> None:
    torch.manual_seed(0)
    net = make().eval()
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    hr_dir, lr_tmpl = tiny_sr_data / "Set5" / "HR", str(tiny_sr_data / "Set5" / "LR_bicubic" / "X{scale}")
    row = ntire.run_one(str(path), {"hr": str(hr_dir), "lr": lr_tmpl, "device": "cpu", "size": [16, 16], "threads": 1})
    assert (row["scale"], row["images"], row["params"]) == (scale, 2, sum(p.numel() for p in net.parameters()))
    assert row["runtime_ms_mean"] > 0 and row["macs"] > 0 and row["convs"] > 0
    psnrs = []
    for name in ("a", "b"):
        lr = cv2.imread(str(tiny_sr_data / f"Set5/LR_bicubic/X{scale}/{name}x{scale}.png"))[:, :, ::-1]
        hr = cv2.imread(str(hr_dir / f"{name}.png"))[:, :, ::-1].astype(np.float64)
        with torch.no_grad():
            y = net(torch.from_numpy(lr.copy()).permute(2, 0, 1)[None].float() / 255)[0]
        out = (y.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
        hr = hr[: out.shape[0], : out.shape[1]]
        mse = np.mean((out[4:-4, 4:-4] - hr[4:-4, 4:-4]) ** 2)
        psnrs.append(10 * np.log10(255**2 / mse))
    assert row["psnr_rgb"] == pytest.approx(np.mean(psnrs), abs=1e-9)


def test_registry_name_has_no_psnr(ntire, tiny_sr_data: Path) -> None:
    row = ntire.run_one("IMDN_RTC", {"hr": str(tiny_sr_data / "Set5/HR"), "lr": str(tiny_sr_data / "Set5/LR_bicubic/X{scale}"),
                                     "device": "cpu", "size": [8, 8], "threads": 1})  # fmt: skip
    assert row["psnr_rgb"] is None and row["scale"] == 4  # a name is built at x4 (upscale=4)
    assert "n/a (random weights)" in ntire.table([row], [8, 8])
