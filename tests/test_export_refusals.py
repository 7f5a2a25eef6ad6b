"""``basicsr export`` refusals before work and exit codes (issue 20): the dynamo exporter's default
opset, an unwritable output folder found before exporting, a failed export is exit 1."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install '.[onnx]')")

import imdn_plugin.export as export
from imdn_plugin.archs import IMDN
from imdn_plugin.errors import ConfigError


def _weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "x2.pth"
    torch.save({"params": IMDN(num_feat=16, num_block=1, upscale=2).state_dict()}, path)
    return path


def _cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    import imdn_plugin.cli as cli

    monkeypatch.setattr(cli, "keep_freed_memory", lambda: False)
    capsys.readouterr()
    rc = cli.main(["export", *args])
    return rc, capsys.readouterr().err


def test_dynamo_default_opset_is_one_it_supports(tmp_path: Path, monkeypatch, capsys) -> None:
    lo, hi = export.OPSET_RANGE["dynamo"]
    assert lo <= export.DEFAULT_OPSETS["dynamo"] <= hi
    assert export.DEFAULT_OPSETS["torchscript"] == export.DEFAULT_OPSET
    seen = []
    monkeypatch.setattr(export, "_need_onnxscript", lambda: None)
    monkeypatch.setattr(export, "_to_onnx", lambda net, ex, opset, exporter, m: seen.append((opset, exporter)) or 1 / 0)
    rc, err = _cli(["--weights", str(_weights(tmp_path)), "-o", str(tmp_path / "m.onnx"), "--exporter", "dynamo"],
                   monkeypatch, capsys)  # fmt: skip
    assert seen == [(export.DEFAULT_OPSETS["dynamo"], "dynamo")]
    assert rc == 1 and "nothing written" in err and not (tmp_path / "m.onnx").exists()  # a failed export: 1


def test_unwritable_folder_refused_before_exporting(tmp_path: Path, monkeypatch, capsys) -> None:
    weights = _weights(tmp_path)
    out = tmp_path / "ro" / "m.onnx"
    out.parent.mkdir()

    def no_write(*args, **kwargs):  # what a read-only folder answers (root ignores mode bits)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(export.tempfile, "mkstemp", no_write)
    exported, loaded = [], []
    real = export._to_onnx
    monkeypatch.setattr(export, "_to_onnx", lambda *a: exported.append(1) or real(*a))
    import imdn_plugin.checkpoint as checkpoint  # the command imports load_network when it runs

    real_load = checkpoint.load_network
    monkeypatch.setattr(checkpoint, "load_network", lambda *a, **k: loaded.append(1) or real_load(*a, **k))
    rc, err = _cli(["--weights", str(weights), "-o", str(out)], monkeypatch, capsys)
    assert rc == 2 and exported == [] and loaded == [], err  # before the checkpoint is even read
    assert err.strip() == f"basicsr: error: {out}: cannot be written (Permission denied); nothing was exported"
    # the library function checks it too, before exporting
    net = IMDN(num_feat=16, num_block=1, upscale=2)
    with pytest.raises(ConfigError, match="cannot be written \\(Permission denied\\)"):
        export.export_onnx(net, out)
    assert exported == []


def test_check_writable_for_a_folder_still_to_create(tmp_path: Path, monkeypatch) -> None:
    export.check_writable(tmp_path / "a" / "b" / "m.onnx")  # creatable: fine, nothing created
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        export.check_writable(tmp_path / "file" / "m.onnx")
    monkeypatch.setattr(export.os, "access", lambda *a: False)
    with pytest.raises(ConfigError, match=f"cannot create folders in {tmp_path}"):
        export.check_writable(tmp_path / "new" / "m.onnx")
