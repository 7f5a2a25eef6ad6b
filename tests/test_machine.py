"""imdn_plugin.machine: the one home of precision words, device rule, memory, CPU features and
environment variables; and the proof that no other module defines or reads them."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from imdn_plugin import archs, machine
from imdn_plugin.inference import InferenceOptions

PACKAGE = Path(machine.__file__).parent
SCRIPTS = [PACKAGE.parent / "scripts", PACKAGE.parent / "benchmarks"]


def test_precision_words_and_their_dtypes() -> None:
    assert machine.PRECISIONS == ("fp32", "fp16", "bf16", "auto")
    assert [machine.torch_dtype(p) for p in ("fp32", "fp16", "bf16")] == [torch.float32, torch.float16, torch.bfloat16]
    assert [machine.autocast_dtype(p) for p in (None, "fp32", "fp16", "bf16")] == [None, None, torch.float16, torch.bfloat16]
    with pytest.raises(ValueError, match="got 'auto'"):
        machine.torch_dtype("auto")
    assert machine.OV_HINTS == {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
    assert {machine.OV_PRECISIONS[h]: h for h in machine.OV_PRECISIONS} == machine.OV_HINTS  # the exact reverse
    assert set(machine.TRAIN_AMP) - {None} == set(machine.REDUCED_PRECISIONS)
    assert set(machine.EXPORT_PRECISIONS) <= set(machine.PRECISIONS)


@pytest.mark.parametrize(
    "device, half_fast, amx, expected",
    [
        ("cuda", True, "0", "fp16"),
        ("cuda", False, "1", "fp32"),  # compute capability < 7.0: fp16 not faster
        ("cpu", True, "1", "bf16"),
        ("cpu", True, "0", "fp32"),
        ("mps", True, "1", "fp32"),
    ],
)
def test_auto_precision(device, half_fast, amx, expected, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "cuda_half_fast", lambda d: half_fast)
    monkeypatch.setenv(machine.ASSUME_AMX_ENV, amx)
    monkeypatch.setattr(machine, "mkldnn_bf16_native", lambda: True)
    got, why = machine.resolve_precision("auto", torch.device(device))
    assert got == expected and why
    for word in ("fp32", "fp16", "bf16"):
        assert machine.resolve_precision(word, torch.device(device)) == (word, "asked for")


def test_cuda_half_fast_reads_the_compute_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    for cap, fast in (((6, 1), False), ((7, 0), True), ((8, 9), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, cap=cap: cap)
        assert machine.cuda_half_fast(torch.device("cuda")) is fast


def test_testing_and_validation_stay_fp32_unless_asked() -> None:
    """``basicsr test`` / validation build their predictor from the option file's ``inference:``
    block: fp32 unless it says otherwise; only ``basicsr infer`` and ``Upscaler`` default to auto."""
    import inspect

    from imdn_plugin.cli.infer import build_parser

    assert InferenceOptions.from_dict(None).precision == "fp32"
    assert InferenceOptions.from_dict({"tile": 64}).precision == "fp32"
    assert InferenceOptions.from_dict({"precision": "auto"}).precision == "auto"
    assert build_parser().get_default("precision") == "auto"
    assert "InferenceOptions(precision=\"auto\")" in inspect.getsource(__import__("imdn_plugin.upscaler").upscaler.Upscaler.__init__)


@pytest.mark.parametrize(
    "env, cuda, backend, expected",
    [
        (None, False, "torch", "cpu"),
        (None, True, "torch", "cuda"),
        (None, True, "openvino", "cpu"),
        ("cuda:1", False, "torch", "cuda:1"),
        ("cpu", True, "torch", "cpu"),
    ],
)
def test_default_device(env, cuda, backend, expected, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if env is None:
        monkeypatch.delenv(machine.DEVICE_ENV, raising=False)
    else:
        monkeypatch.setenv(machine.DEVICE_ENV, env)
    assert machine.default_device(backend) == expected


def test_upscaler_uses_the_default_device_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from imdn_plugin import Upscaler
    from imdn_plugin.archs import IMDN

    torch.save(IMDN(num_feat=16, num_block=1, upscale=2).state_dict(), tmp_path / "w.pth")
    monkeypatch.setenv(machine.DEVICE_ENV, "meta")  # a device no other rule would pick
    assert Upscaler(tmp_path / "w.pth", options=InferenceOptions()).device == torch.device("meta")
    monkeypatch.delenv(machine.DEVICE_ENV)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Upscaler(tmp_path / "w.pth", options=InferenceOptions()).device == torch.device("cpu")


def test_available_bytes_is_memavailable() -> None:
    text = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M)
    got = machine.available_bytes(torch.device("cpu"))
    if match is None:
        assert got is None
    else:  # memory moves between the two reads: within 5%
        assert abs(got - int(match.group(1)) * 1024) <= 0.05 * int(match.group(1)) * 1024


def test_env_knows_only_the_plugins_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(machine.MAX_PIXELS_ENV, " 12 ")
    assert machine.env(machine.MAX_PIXELS_ENV) == "12"
    with pytest.raises(KeyError, match="IMDN_TYPO"):
        machine.env("IMDN_TYPO")


def test_bad_assume_amx_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(machine.ASSUME_AMX_ENV, "yes")
    with pytest.raises(ValueError, match="^IMDN_ASSUME_AMX must be 0 or 1, got 'yes'$"):
        machine.amx_detected()


# --------------------------------------------------------------------------- one home


def _sources() -> list[Path]:
    return [p for p in [*PACKAGE.rglob("*.py"), *(p for d in SCRIPTS for p in d.glob("*.py"))] if p != Path(machine.__file__)]


def test_every_imdn_variable_is_named_and_read_only_in_machine() -> None:
    """No other module holds an ``IMDN_<UPPER>`` string or reads ``os.environ``/``getenv`` for one."""
    found = []
    for path in _sources():
        text = path.read_text()
        for node in ast.walk(ast.parse(text, str(path))):
            # a definition: a string that is exactly a variable's name (mentions in help text are fine)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"IMDN_[A-Z_]+", node.value):
                if not hasattr(archs, node.value):  # network names (IMDN_AS, IMDN_RTC, ...) are not variables
                    found.append(f"{path.name}: {node.value!r}")
        for line in text.splitlines():  # a read of the environment naming one of them
            if re.search(r"(os\.environ|getenv\().*IMDN_|IMDN_.*(os\.environ|getenv\()", line):
                found.append(f"{path.name}: {line.strip()}")
    assert not found, found
    names = set(re.findall(r'"(IMDN_[A-Z_]+)"', Path(machine.__file__).read_text()))
    assert names == set(machine.ENV_VARS)


def test_precision_words_defined_once() -> None:
    """No module but machine.py writes a precision tuple or a dtype map of them."""
    pattern = re.compile(
        r'^\s*_?[A-Z_]*(PRECISIONS|TRAIN_AMP|_HINTS|AMP_DTYPES|AUTOCAST_DTYPES)\s*=|"fp16":\s*torch\.|"f16"', re.M
    )
    offenders = [f"{p.relative_to(PACKAGE.parent)}" for p in _sources() if pattern.search(p.read_text())]
    assert not offenders, offenders
