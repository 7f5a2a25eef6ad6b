"""IMDN_RTC / IMDN_RTE through everything downstream: ``basicsr infer`` with no architecture
flag, the Upscaler, tiles, the inference path that runs, ONNX export, spandrel."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imdn_plugin import Upscaler
from imdn_plugin.archs import IMDN_RTC, IMDN_RTE
from imdn_plugin.cli import main as basicsr_main
from imdn_plugin.inference import InferenceOptions, build_predictor

NETS = {"rtc": lambda: IMDN_RTC(num_feat=8, num_block=2), "rte": lambda: IMDN_RTE(num_feat=8, num_block=2)}


def random_net(kind: str) -> torch.nn.Module:
    torch.manual_seed(3)
    net = NETS[kind]()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.2, 0.2)
    return net.eval()


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


def expected_uint8(net: torch.nn.Module, rgb: np.ndarray) -> np.ndarray:
    """The network's own forward, the input padded by replication to the size multiple, cropped back."""
    x = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    m = net.size_multiple
    xp = F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")
    with torch.no_grad():
        y = net(xp)[0, :, : h * net.scale, : w * net.scale].clamp(0, 1)
    return (y * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("kind", sorted(NETS))
def test_infer_without_architecture_flag(kind: str, tmp_path: Path) -> None:
    net = random_net(kind)
    weights = tmp_path / "w.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, weights)  # like the authors' RTE file
    rgb = np.random.default_rng(0).integers(0, 256, (15, 21, 3), dtype=np.uint8)  # odd sides
    write_rgb(tmp_path / "in.png", rgb)
    assert basicsr_main(["infer", "-i", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--weights", str(weights), "-q"]) == 0
    got = cv2.imread(str(tmp_path / "out" / "in.png"))[:, :, ::-1]
    want = expected_uint8(net, rgb)
    assert got.shape == (30, 42, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.parametrize("kind", sorted(NETS))
def test_upscaler_says_the_generic_path_runs_and_refuses_other_scales(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights = tmp_path / "w.pth"
    torch.save(random_net(kind).state_dict(), weights)
    with caplog.at_level(logging.INFO):
        up = Upscaler(weights, None, InferenceOptions(precision="fp32"), "cpu")
    assert up.predict.path == "eager (fp32)"  # the fused CPU plan is IMDN / IMDN_AS only
    assert "inference path: eager (fp32)" in caplog.text
    assert up.upscale_uint8(np.zeros((4, 6, 3), np.float32)).shape == (8, 12, 3)
    from imdn_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="only upscales x2"):
        Upscaler(weights, 3.0, InferenceOptions(), "cpu")


def test_tiles_equal_the_whole_image() -> None:
    """No CCA: tiles with context beyond the receptive field are the whole-image result.

    Receptive-field radius of these 2-block nets: RTC 1 + 2·4 + 1 = 10 LR px; RTE
    1 + 2·(1 + 2·6 + 1) = 29 input px (stride-2 trunk). A too-small overlap must differ.
    """
    x = torch.rand(1, 3, 100, 90, generator=torch.Generator().manual_seed(0))
    for kind, overlap, short in (("rtc", 24, 4), ("rte", 40, 8)):
        net = random_net(kind)
        whole = build_predictor(net, InferenceOptions(precision="fp32"))(x)
        tiled = build_predictor(net, InferenceOptions(precision="fp32", tile=2 * overlap + 8, tile_overlap=overlap))(x)
        assert whole.shape == tiled.shape == (1, 3, 200, 180)
        assert (whole - tiled).abs().max().item() <= 1e-5, kind
        cut = build_predictor(net, InferenceOptions(precision="fp32", tile=2 * overlap + 8, tile_overlap=short))(x)
        assert (whole - cut).abs().max().item() > 5e-5, kind  # the tiles really are tiles


@pytest.mark.parametrize("kind", sorted(NETS))
def test_onnx_export_matches_with_onnxruntime(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from imdn_plugin.export import export_onnx

    net = random_net(kind)
    report = export_onnx(net, tmp_path / "m.onnx")
    assert report.check_skipped is None and report.max_abs_diff <= 1e-4
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 10, 14, generator=torch.Generator().manual_seed(5))
    (y,) = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert np.abs(y - net(x).numpy()).max() <= 1e-4


@pytest.mark.parametrize("kind", sorted(NETS))
def test_spandrel_loads(kind: str) -> None:
    spandrel = pytest.importorskip("spandrel")
    import imdn_plugin.spandrel as imdn_spandrel

    imdn_spandrel.install()
    net = random_net(kind)
    model = spandrel.ModelLoader().load_from_state_dict({f"module.{k}": v for k, v in net.state_dict().items()})
    assert model.architecture.id == type(net).__name__
    assert model.scale == 2 and model.size_requirements.multiple_of == net.size_multiple
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        assert (model(x) - net(x).clamp(0, 1)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["model_RTC.pth", "model_RTE.pth"])
def test_released_files_export_and_load_in_spandrel(reference: Path, name: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    spandrel = pytest.importorskip("spandrel")
    import imdn_plugin.spandrel as imdn_spandrel

    imdn_spandrel.install()
    path = reference / "checkpoints" / name
    model = spandrel.ModelLoader().load_from_file(path)
    assert model.architecture.id == name.replace("model_", "IMDN_").removesuffix(".pth")
    assert basicsr_main(["export", "--weights", str(path), "-o", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 10_000
