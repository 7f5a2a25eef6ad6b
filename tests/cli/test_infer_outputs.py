"""``basicsr infer`` outputs: --format png|jpg|webp|auto, --quality, --outscale, --alpha
network|bicubic, gray+alpha kept, 16-bit kept where the format allows (else one notice)."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from imdn_plugin import Upscaler
from imdn_plugin.archs import IMDN, IMDN_AS
from imdn_plugin.data.resize import bicubic_downscale, imresize_to
from imdn_plugin.inference import InferenceOptions
from tests.cli.test_infer import error_line, run_cli, snapshot


def _save(net: nn.Module, path: Path) -> Path:
    for p in net.parameters():  # weights that do something: every output differs from a bicubic one
        nn.init.normal_(p, std=0.05)
    torch.save({"params": net.state_dict()}, path)
    return path


@pytest.fixture()
def nets(tmp_path: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    return {
        "x4": _save(IMDN(num_feat=16, num_block=1, upscale=4), tmp_path / "x4.pth"),
        "as": _save(IMDN_AS(num_feat=16, num_block=1), tmp_path / "as.pth"),
    }


def _photo(h: int, w: int, channels: int = 3, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    """Smooth content with edges (JPEG / WebP of it differ visibly between qualities)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    planes = [np.sin(xx / (2 + c) + yy / (3 + c)) * 0.4 + 0.5 + 0.1 * rng.random((h, w)) for c in range(channels)]
    top = 65535 if dtype == np.uint16 else 255
    return np.clip(np.dstack(planes) * top, 0, top).astype(dtype)


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def _infer(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    return run_cli([*args, "-q"], monkeypatch, capsys)


# --------------------------------------------------------------------------- formats and quality


@pytest.mark.parametrize("fmt, flag", [("jpg", cv2.IMWRITE_JPEG_QUALITY), ("webp", cv2.IMWRITE_WEBP_QUALITY)])
def test_lossy_format_is_the_png_result_encoded_at_that_quality(fmt, flag, nets, tmp_path, monkeypatch, capsys) -> None:
    src = tmp_path / "in" / "x.png"
    src.parent.mkdir()
    cv2.imwrite(str(src), _photo(20, 24))
    assert _infer(["-i", str(src), "-o", str(tmp_path / "png"), "--weights", str(nets["x4"])], monkeypatch, capsys)[0] == 0
    exact = _read(tmp_path / "png" / "x.png")
    sizes = {}
    for quality in (30, 90):
        out = tmp_path / f"{fmt}{quality}"
        rc, _ = _infer(["-i", str(src), "-o", str(out), "--weights", str(nets["x4"]), "--format", fmt,
                        "--quality", str(quality)], monkeypatch, capsys)  # fmt: skip
        assert rc == 0 and sorted(p.name for p in out.iterdir()) == [f"x.{fmt}"]
        data = (out / f"x.{fmt}").read_bytes()
        ok, expected = cv2.imencode(f".{fmt}", exact, [flag, quality])
        assert ok and data == expected.tobytes()  # the network's pixels, encoded at the asked quality
        sizes[quality] = len(data)
    assert sizes[30] < sizes[90]


def test_default_quality_is_95(nets, tmp_path, monkeypatch, capsys) -> None:
    src = tmp_path / "x.png"
    cv2.imwrite(str(src), _photo(12, 10))
    _infer(["-i", str(src), "-o", str(tmp_path / "png"), "--weights", str(nets["x4"])], monkeypatch, capsys)
    _infer(["-i", str(src), "-o", str(tmp_path / "jpg"), "--weights", str(nets["x4"]), "--format", "jpg"], monkeypatch, capsys)
    ok, expected = cv2.imencode(".jpg", _read(tmp_path / "png" / "x.png"), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert (tmp_path / "jpg" / "x.jpg").read_bytes() == expected.tobytes()


def test_auto_keeps_the_inputs_format(nets, tmp_path, monkeypatch, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.jpg", "c.webp", "d.JPEG", "e.bmp"):
        assert cv2.imwrite(str(src / name), _photo(8, 9))
    rc, _ = _infer(["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(nets["x4"]), "--format", "auto"],
                   monkeypatch, capsys)  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "b.jpg", "c.webp", "d.jpg", "e.png"]
    assert (tmp_path / "o" / "b.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert (tmp_path / "o" / "c.webp").read_bytes()[8:12] == b"WEBP"
    assert (tmp_path / "o" / "e.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quality", "80"], "--quality 80: PNG is lossless"),
        (["--format", "jpg", "--quality", "0"], "--quality: must be a whole number from 1 to 100, got 0"),
        (["--format", "webp", "--quality", "101"], "--quality: must be a whole number from 1 to 100, got 101"),
        (["--outscale", "0"], "--outscale: must be a finite number > 0, got 0.0"),
        (["--outscale", "nan"], "--outscale: must be a finite number > 0, got nan"),
    ],
)
def test_bad_output_flags_refused_before_any_work(args, message, nets, tmp_path, monkeypatch, capsys) -> None:
    src = tmp_path / "x.png"
    cv2.imwrite(str(src), _photo(8, 8))
    before = snapshot(tmp_path)
    rc, err = _infer(["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(nets["x4"]), *args], monkeypatch, capsys)
    assert rc == 2 and message in error_line(err)
    assert snapshot(tmp_path) == before and not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- outscale


@pytest.mark.parametrize("outscale", [3.0, 2.5, 5.0])
def test_outscale_resizes_the_networks_output(outscale, nets, tmp_path) -> None:
    bgr = _photo(11, 13).astype(np.float32) / 255
    plain = Upscaler(nets["x4"], options=InferenceOptions(), device="cpu")(bgr)
    up = Upscaler(nets["x4"], options=InferenceOptions(), device="cpu", outscale=outscale)
    got = up(bgr)
    size = (round(11 * outscale), round(13 * outscale))
    assert got.shape == (*size, 3)
    expected = np.clip(imresize_to(np.ascontiguousarray(plain), size), 0, 1)  # MATLAB bicubic of the x4 result
    assert np.abs(got - expected).max() <= 1e-6
    # the file path gives the same pixels, quantised
    src = tmp_path / "x.png"
    cv2.imwrite(str(src), (bgr * 255).round().astype(np.uint8))
    png = cv2.imdecode(np.frombuffer(up.upscale_file(src), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.shape == (*size, 3)


def test_outscale_on_the_command_line(nets, tmp_path, monkeypatch, capsys) -> None:
    src = tmp_path / "x.png"
    cv2.imwrite(str(src), _photo(10, 7))
    rc, _ = _infer(["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(nets["x4"]), "--outscale", "3"], monkeypatch, capsys)
    assert rc == 0 and _read(tmp_path / "o" / "x.png").shape == (30, 21, 3)


def test_outscale_of_imdn_as_is_its_scale(nets, tmp_path) -> None:
    bgr = _photo(12, 10).astype(np.float32) / 255
    by_scale = Upscaler(nets["as"], 2.5, InferenceOptions(), "cpu")(bgr)
    by_outscale = Upscaler(nets["as"], options=InferenceOptions(), device="cpu", outscale=2.5)(bgr)
    assert by_outscale.shape == (30, 25, 3) and np.array_equal(by_scale, by_outscale)  # the network at 2.5, no resize
    from imdn_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="--outscale 3 and --scale 2.5"):
        Upscaler(nets["as"], 2.5, InferenceOptions(), "cpu", outscale=3)


# --------------------------------------------------------------------------- alpha, gray, 16 bit


def test_alpha_network_is_the_alpha_plane_through_the_network(nets, tmp_path, monkeypatch, capsys) -> None:
    """``--alpha network``: the alpha plane equals the output of a gray image holding it."""
    rgba = _photo(14, 12, channels=4)
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba[:, :, 3])
    for mode in ("network", "bicubic"):
        out = tmp_path / mode
        for name in ("rgba.png", "alpha.png"):
            rc, _ = _infer(["-i", str(tmp_path / name), "-o", str(out), "--weights", str(nets["x4"]), "--alpha", mode],
                           monkeypatch, capsys)  # fmt: skip
            assert rc == 0
    got = _read(tmp_path / "network" / "rgba.png")
    assert got.shape == (56, 48, 4)
    assert np.array_equal(got[:, :, 3], _read(tmp_path / "network" / "alpha.png"))
    bicubic = _read(tmp_path / "bicubic" / "rgba.png")
    expected = np.clip(imresize_to(rgba[:, :, 3].astype(np.float32) / 255, (56, 48)), 0, 1)
    assert np.array_equal(bicubic[:, :, 3], (expected * 255).round().astype(np.uint8))
    assert np.array_equal(bicubic[:, :, :3], got[:, :, :3])  # the colour does not depend on --alpha
    assert not np.array_equal(bicubic[:, :, 3], got[:, :, 3])


@pytest.mark.parametrize("fmt, depth", [("png", 8), ("png", 16), ("webp", 8)])
def test_gray_alpha_kept(fmt, depth, nets, tmp_path, monkeypatch, capsys) -> None:
    """A gray+alpha PNG (colour type 4; OpenCV reads it as BGRA and writes no such file) comes out
    gray+alpha (PNG, same depth) or gray in BGRA (WebP), alpha as --alpha bicubic says."""
    Image = pytest.importorskip("PIL.Image")  # an independent PNG codec for input and output
    ga = _photo(9, 10, channels=2, dtype=np.uint16 if depth == 16 else np.uint8)
    src = tmp_path / "ga.png"
    if depth == 8:
        Image.fromarray(ga, mode="LA").save(src)
    else:  # PIL writes no 16-bit LA: the plugin's own writer, checked by PIL's reader below
        from imdn_plugin.data.imageio import png_gray_alpha_bytes

        src.write_bytes(png_gray_alpha_bytes(ga))
    rc, _ = _infer(["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(nets["x4"]), "--alpha", "bicubic",
                    "--format", fmt], monkeypatch, capsys)  # fmt: skip
    assert rc == 0
    top = 65535 if depth == 16 else 255
    expected_alpha = (np.clip(imresize_to(ga[:, :, 1].astype(np.float32) / top, (36, 40)), 0, 1) * top).round()
    if fmt == "png":
        head = (tmp_path / "o" / "ga.png").read_bytes()[:26]
        assert head[24:26] == bytes([depth, 4])  # IHDR: bit depth, colour type 4 = gray + alpha
        if depth == 8:  # PIL reads 16-bit LA as RGBA
            with Image.open(tmp_path / "o" / "ga.png") as im:
                assert im.mode == "LA" and im.size == (40, 36)
        out = _read(tmp_path / "o" / "ga.png")  # OpenCV: BGRA with B = G = R
        assert out.dtype == (np.uint16 if depth == 16 else np.uint8)
        assert np.array_equal(out[:, :, 0], out[:, :, 2])
        assert np.array_equal(out[:, :, 3], expected_alpha)
    else:  # WebP has no gray+alpha: gray in three equal channels, alpha kept (lossless in WebP)
        out = _read(tmp_path / "o" / "ga.webp")
        assert out.shape == (36, 40, 4) and np.array_equal(out[:, :, 0], out[:, :, 2])
        assert np.abs(out[:, :, 3].astype(int) - expected_alpha).max() <= 1


def test_16_bit_kept_in_png_and_noticed_once_in_jpg(nets, tmp_path, monkeypatch, capsys, caplog) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(src / name), _photo(8, 9, dtype=np.uint16))
    rc, _ = _infer(["-i", str(src), "-o", str(tmp_path / "png"), "--weights", str(nets["x4"])], monkeypatch, capsys)
    assert rc == 0 and _read(tmp_path / "png" / "a.png").dtype == np.uint16
    with caplog.at_level(logging.WARNING):
        rc, _ = _infer(["-i", str(src), "-o", str(tmp_path / "jpg"), "--weights", str(nets["x4"]), "--format", "jpg"],
                       monkeypatch, capsys)  # fmt: skip
    assert rc == 0 and _read(tmp_path / "jpg" / "a.jpg").dtype == np.uint8
    notes = [r.getMessage() for r in caplog.records if "16-bit input written as 8-bit" in r.getMessage()]
    assert len(notes) == 1, notes


def test_alpha_in_jpeg_is_dropped_with_a_notice(nets, tmp_path, monkeypatch, capsys, caplog) -> None:
    src = tmp_path / "x.png"
    cv2.imwrite(str(src), _photo(8, 9, channels=4))
    with caplog.at_level(logging.WARNING):
        rc, _ = _infer(["-i", str(src), "-o", str(tmp_path / "o"), "--weights", str(nets["x4"]), "--format", "jpg"],
                       monkeypatch, capsys)  # fmt: skip
    assert rc == 0 and _read(tmp_path / "o" / "x.jpg").shape == (32, 36, 3)
    assert any("alpha channel dropped: jpg has none" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- the measured default


def test_network_alpha_beats_bicubic_on_a_detailed_alpha(reference: Path) -> None:
    """The default (``network``): on an alpha with detail (Set5 ``butterfly`` in gray), downscaled
    x4 by MATLAB bicubic, the authors' IMDN x4 restores it better than bicubic (PSNR vs the original)."""
    from imdn_plugin.upscaler import DEFAULT_ALPHA

    assert DEFAULT_ALPHA == "network"
    gray = cv2.cvtColor(cv2.imread(str(reference / "Set5" / "HR" / "butterfly.bmp")), cv2.COLOR_BGR2GRAY)[64:160, 64:160]
    lr = bicubic_downscale(gray, 4).astype(np.float32) / 255
    scores = {}
    for mode in ("network", "bicubic"):
        up = Upscaler(reference / "checkpoints" / "IMDN_x4.pth", options=InferenceOptions(), device="cpu", alpha=mode)
        a = (up.upscale_alpha(lr) * 255).round()
        scores[mode] = 10 * math.log10(255**2 / np.mean((a - gray) ** 2))
    assert scores["network"] >= scores["bicubic"] + 1.0, scores
