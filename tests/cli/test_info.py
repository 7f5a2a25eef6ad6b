"""``basicsr info``: JSON keys and values from the network, text output, one-line errors with exit 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imdn_plugin.archs import IMDN_RTE
from imdn_plugin.cli import main as basicsr_main

KEYS = {"architecture", "scale", "params", "macs_per_output_pixel", "macs", "activations", "convs"}


def run_json(capsys: pytest.CaptureFixture, *args: str) -> dict:
    assert basicsr_main(["info", *args, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])


def test_network_by_name_json(capsys: pytest.CaptureFixture) -> None:
    d = run_json(capsys, "--network", "IMDN", "--scale", "4", "--size", "8x6")
    assert KEYS <= set(d)
    assert (d["architecture"], d["scale"], d["params"], d["convs"]) == ("IMDN", 4, 715_176, 46)
    # Eq. 10 by hand for IMDN x4 (64 features, 6 blocks): Σ k²·Cin·Cout at LR size + the CCA 1x1 convs
    per_lr = 9 * 3 * 64 + 6 * (9 * 64 * 64 + 2 * 9 * 48 * 64 + 9 * 48 * 16 + 64 * 64) + 384 * 64 + 9 * 64 * 64 + 9 * 64 * 48
    assert d["macs"] == per_lr * 48 + 6 * 2 * 64 * 4
    assert d["macs_per_output_pixel"] == pytest.approx(d["macs"] / (48 * 16))


def test_weights_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "rte.pth"
    torch.save({"params": IMDN_RTE().state_dict()}, path)
    d = run_json(capsys, "--weights", str(path))
    assert (d["architecture"], d["scale"], d["params"], d["input_size"], d["output_size"]) == (
        "IMDN_RTE", 2, 89_748, [256, 256], [512, 512]
    )
    assert basicsr_main(["info", "--weights", str(path), "--size", "16"]) == 0
    text = capsys.readouterr().out
    assert "architecture: IMDN_RTE x2 (num_feat=20, num_block=6" in text and "params: 89,748 (90K" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--network", "Nope"], "--network: unknown architecture 'Nope'"),
        (["--network", "IMDN_RTE", "--size", "7x8"], "--size 7x8: IMDN_RTE cannot run it: IMDN_RTE: input size 7x8 is not even"),
        (["--network", "IMDN", "--size", "0x3"], "--size: expected HxW with positive integers"),
        (["--network", "IMDN_AS", "--scale", "2"], "--scale 2: IMDN_AS takes no upscale/scale argument"),
    ],
)
def test_errors_are_one_line_exit_2(args: list, message: str, capsys: pytest.CaptureFixture) -> None:
    assert basicsr_main(["info", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"basicsr: error: {message}") and captured.err.count("\n") == 1


def test_authors_files_beside_the_paper(reference: Path, capsys: pytest.CaptureFixture) -> None:
    """Table 5 parameters (694K / 703K / 715K) from the files; Mult-Adds per HR pixel from the network."""
    for s, params_k in ((2, 694), (3, 703), (4, 715)):
        d = run_json(capsys, "--weights", str(reference / "checkpoints" / f"IMDN_x{s}.pth"))
        assert round(d["params"] / 1000) == params_k and d["scale"] == s
        # all convs run at LR size except the CCA's 1x1 ones: Mult-Adds ≈ weights · LR pixels
        biases = 64 + 6 * (3 * 64 + 16 + 64 + 4 + 64) + 64 + 64 + 3 * s * s  # fea, 6 x (c1-c5, CCA), c, LR_conv, up
        weights_lr = d["params"] - biases - 6 * 2 * 64 * 4  # less the CCA weights (run on 1x1 maps)
        assert d["macs_per_output_pixel"] == pytest.approx(weights_lr / s**2, rel=1e-4)


def test_the_help_lists_the_package_networks() -> None:
    from imdn_plugin.archs import NETWORKS
    from imdn_plugin.cli.info import OWN_NETWORKS

    assert OWN_NETWORKS == tuple(NETWORKS)
