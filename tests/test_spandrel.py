"""spandrel support: the authors' files and synthetic networks load through spandrel after install()."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

spandrel = pytest.importorskip("spandrel")

from imdn_plugin import spandrel as imdn_spandrel  # noqa: E402
from imdn_plugin.archs import IMDN, IMDN_AS  # noqa: E402
from imdn_plugin.checkpoint import (  # noqa: E402
    describe,
    load_into,
    load_state_dict,
    save_network_file,
    save_safetensors,
)

# name -> (architecture id, scale, multiple_of, input size)
AUTHORS = {
    "IMDN_x2.pth": ("IMDN", 2, 1, (19, 14)),
    "IMDN_x3.pth": ("IMDN", 3, 1, (19, 14)),
    "IMDN_x4.pth": ("IMDN", 4, 1, (19, 14)),
    "IMDN_AS.pth": ("IMDN_AS", 1, 4, (24, 20)),
}
OUR_IDS = {"IMDN", "IMDN_AS", "IMDN_RTC", "IMDN_RTE"}


def project_network(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The independent path: this project's recogniser, network and strict loader."""
    opt = describe(state).network_opt()
    net = {"IMDN": IMDN, "IMDN_AS": IMDN_AS}[opt.pop("type")](**opt)
    load_into(net, state, strict=True)
    return net.eval()


def builtin_only_registry() -> spandrel.ArchRegistry:
    """spandrel's own architectures, whatever install() did to MAIN_REGISTRY earlier in the session."""
    registry = spandrel.ArchRegistry()
    registry.add(*(a for a in spandrel.MAIN_REGISTRY if a.architecture.id not in OUR_IDS))
    return registry


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_builtin_spandrel_does_not_claim_authors_files(reference: Path, name: str) -> None:
    loader = spandrel.ModelLoader(registry=builtin_only_registry())
    assert len(loader.registry) > 30  # really spandrel's built-ins
    with pytest.raises(spandrel.UnsupportedModelError):
        loader.load_from_file(reference / "checkpoints" / name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_authors_files_load_and_match(reference: Path, name: str) -> None:
    imdn_spandrel.install()
    arch_id, scale, multiple, (h, w) = AUTHORS[name]
    path = reference / "checkpoints" / name
    model = spandrel.ModelLoader().load_from_file(path)  # the file as it is: module. prefixes, legacy format

    assert isinstance(model, spandrel.ImageModelDescriptor)
    assert model.architecture.id == arch_id
    assert (model.scale, model.input_channels, model.output_channels) == (scale, 3, 3)
    assert model.size_requirements.multiple_of == multiple
    assert model.tags == ["64nf", "6nb"]
    assert model.supports_half is True and model.supports_bfloat16 is True  # measured: docs/precision-and-outputs.md
    assert model.tiling == spandrel.ModelTiling.DISCOURAGED
    assert model.purpose == ("SR" if scale > 1 else "Restoration")

    net = project_network(load_state_dict(path))
    torch.manual_seed(0)
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        expected = net(x)
    out = model(x)
    assert out.shape == (1, 3, h * scale, w * scale) == expected.shape
    assert out.dtype == torch.float32
    assert (out - expected.clamp(0, 1)).abs().max().item() <= 1e-5  # spandrel clamps to [0, 1]
    with torch.no_grad():
        assert (model.model(x) - expected).abs().max().item() <= 1e-5  # and unclamped


def set5_crop(reference: Path, h: int, w: int) -> torch.Tensor:
    """A real photo: the middle ``h×w`` of Set5 ``baby``, RGB NCHW in [0, 1]."""
    import cv2

    img = cv2.imread(str(reference / "Set5" / "HR" / "baby.bmp"), cv2.IMREAD_COLOR)[:, :, ::-1]
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return torch.from_numpy(img[top : top + h, left : left + w].copy()).permute(2, 0, 1)[None].float() / 255


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a.float() - b.float()) ** 2).mean()))


@pytest.mark.parametrize(
    "name, fp16_db, bf16_db",
    [("IMDN_x4.pth", 60.0, 45.0), ("IMDN_AS.pth", 60.0, 45.0), ("model_RTC.pth", 60.0, 45.0), ("model_RTE.pth", 60.0, 45.0)],
)
def test_half_and_bfloat16_through_spandrels_own_calls(reference: Path, name: str, fp16_db: float, bf16_db: float) -> None:
    """``model.half()`` / ``model.bfloat16()`` (spandrel refuses them unless the flags are set) on a
    real photo: finite, and close to the fp32 output (measured on Set5: ~73 dB fp16, ~54 dB bf16)."""
    imdn_spandrel.install()
    path = reference / "checkpoints" / name
    x = set5_crop(reference, 32, 28)
    ref = spandrel.ModelLoader().load_from_file(path)
    expected = ref(x)
    for method, dtype, floor in (("half", torch.float16, fp16_db), ("bfloat16", torch.bfloat16, bf16_db)):
        model = spandrel.ModelLoader().load_from_file(path)
        getattr(model, method)()  # spandrel's call: raises if the descriptor says it is unsupported
        assert model.dtype == dtype
        out = model(x.to(dtype))
        assert out.dtype == dtype and bool(torch.isfinite(out).all())
        assert psnr(out, expected) >= floor, (method, psnr(out, expected))


def test_imdn_as_padding_for_other_sizes(reference: Path) -> None:
    """spandrel pads IMDN_AS inputs to a multiple of 4 and crops the output back."""
    imdn_spandrel.install()
    model = spandrel.ModelLoader().load_from_file(reference / "checkpoints" / "IMDN_AS.pth")
    x = torch.rand(1, 3, 18, 13)
    assert model(x).shape == (1, 3, 18, 13)
    with pytest.raises(ValueError, match="not divisible by 4"):
        model.model(x)


def test_install_is_idempotent() -> None:
    registry = builtin_only_registry()
    before = len(registry)
    imdn_spandrel.install(registry)
    imdn_spandrel.install(registry)
    assert len(registry) == before + 4
    assert {registry[a].architecture for a in ("IMDN", "IMDN_AS", "IMDN_RTC", "IMDN_RTE")} == set(imdn_spandrel.ARCHITECTURES)
    imdn_spandrel.install()
    imdn_spandrel.install()
    assert sum(a.architecture.id in OUR_IDS for a in spandrel.MAIN_REGISTRY) == len(OUR_IDS)


@pytest.mark.parametrize(
    "cls, opt, spec",
    [
        # (scale, in, out, num_feat, num_block, multiple_of)
        (IMDN, dict(num_in_ch=1, num_out_ch=1, num_feat=32, num_block=3, upscale=3), (3, 1, 1, 32, 3, 1)),
        (IMDN, dict(num_feat=16, num_block=1, upscale=2), (2, 3, 3, 16, 1, 1)),
        (IMDN_AS, dict(num_feat=48, num_block=2), (1, 3, 3, 48, 2, 4)),
    ],
)
def test_synthetic_networks_detected(cls: type, opt: dict, spec: tuple) -> None:
    torch.manual_seed(1)
    net = cls(**opt).eval()
    registry = builtin_only_registry()
    imdn_spandrel.install(registry)
    model = spandrel.ModelLoader(registry=registry).load_from_state_dict(
        {f"module.{k}": v for k, v in net.state_dict().items()}
    )
    scale, in_ch, out_ch, feat, blocks, multiple = spec
    assert model.architecture.id == cls.__name__
    assert (model.scale, model.input_channels, model.output_channels) == (scale, in_ch, out_ch)
    assert model.tags == [f"{feat}nf", f"{blocks}nb"]
    assert model.size_requirements.multiple_of == multiple
    assert type(model.model) is cls and model.model.num_block == blocks
    x = torch.rand(1, in_ch, 12, 8)
    with torch.no_grad():
        expected = net(x).clamp(0, 1)
    assert (model(x) - expected).abs().max().item() <= 1e-5


def test_detect_on_raw_and_foreign_state_dicts() -> None:
    imdn_arch, as_arch = imdn_spandrel.ARCHITECTURES[:2]
    imdn = IMDN(num_feat=16, num_block=2, upscale=4).state_dict()
    imdn_as = IMDN_AS(num_feat=16, num_block=2).state_dict()
    assert imdn_arch.detect({f"module.{k}": v for k, v in imdn.items()})  # not canonicalised by spandrel
    assert not imdn_arch.detect(imdn_as) and as_arch.detect(imdn_as) and not as_arch.detect(imdn)
    no_cca = {k: v for k, v in imdn.items() if ".cca." not in k}
    assert not imdn_arch.detect(no_cca)
    # spandrel's own SPAN is not claimed, and still loads as SPAN after install()
    from spandrel.architectures.SPAN import SPAN

    span = SPAN(num_in_ch=3, num_out_ch=3, upscale=4).state_dict()
    assert not imdn_arch.detect(span) and not as_arch.detect(span)
    registry = builtin_only_registry()
    imdn_spandrel.install(registry)
    assert spandrel.ModelLoader(registry=registry).load_from_state_dict(span).architecture.id == "SPAN"


def test_safetensors_files_load(tmp_path: Path) -> None:
    """A bare .safetensors, and a save_network_file one with EMA (spandrel picks the EMA, as for .pth)."""
    imdn_spandrel.install()
    torch.manual_seed(2)
    params, ema = IMDN(num_feat=16, num_block=2, upscale=2).eval(), IMDN(num_feat=16, num_block=2, upscale=2).eval()
    save_safetensors(params.state_dict(), tmp_path / "bare.safetensors")
    save_network_file({"params": params.state_dict(), "params_ema": ema.state_dict()}, tmp_path / "ema.safetensors")
    save_network_file({"params": params.state_dict(), "params_ema": ema.state_dict()}, tmp_path / "ema.pth")
    x = torch.rand(1, 3, 10, 9)
    with torch.no_grad():
        want_params, want_ema = params(x).clamp(0, 1), ema(x).clamp(0, 1)
    assert not torch.allclose(want_params, want_ema)
    loader = spandrel.ModelLoader()
    assert (loader.load_from_file(tmp_path / "bare.safetensors")(x) - want_params).abs().max() <= 1e-5
    assert (loader.load_from_file(tmp_path / "ema.safetensors")(x) - want_ema).abs().max() <= 1e-5
    assert (loader.load_from_file(tmp_path / "ema.pth")(x) - want_ema).abs().max() <= 1e-5


def test_missing_spandrel_gives_one_line_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spandrel", None)  # import of spandrel fails
    monkeypatch.delitem(sys.modules, "imdn_plugin.spandrel")
    with pytest.raises(ImportError) as err:
        importlib.import_module("imdn_plugin.spandrel")
    assert str(err.value) == 'imdn_plugin.spandrel needs spandrel: pip install "imdn-plugin[spandrel]"'
