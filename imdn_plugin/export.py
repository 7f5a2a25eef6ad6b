"""ONNX export of IMDN ×2/×3/×4, IMDN_AS, IMDN_RTC and IMDN_RTE (torch only, no BasicSR; command: ``basicsr export``).

The graph takes ``input`` (``N×C×H×W``, float in [0, 1]) and gives ``output``
(``N×C×sH×sW``; ``s = 1`` for IMDN_AS); batch, height and width are dynamic
axes.  IMDN_AS (paper §3.3, Fig. 5) shrinks the input by two stride-2 convs and
restores it by a ×4 pixel shuffle, so its input sides must be multiples of 4:
the graph does not check it (pad the input, or crop it as in the paper's ACS,
Eqs. 6–8).  The network's description is stored in the model's
``metadata_props`` (``imdn_plugin.network``, ``.scale``, ``.size_multiple``,
``.precision``).

``precision="fp16"`` stores weights, input and output in float16.  The CCA
statistics (paper Eq. 5) are reduced in fp32 inside the graph (see
:meth:`imdn_plugin.archs.CCALayer.statistics`), so a 300×300 map does not
overflow fp16 whatever the runtime's accumulator.

After the export the model is run with onnxruntime (CPU) on a random batch of
an odd size (IMDN: 37×53; IMDN_AS: 36×52) and compared with the network's fp32
torch forward; the file is written only if the largest absolute difference is
within :data:`TOLERANCES`.  Files are written atomically and never replace an
existing file unless ``overwrite=True``.
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch
from torch import nn

from .archs import NETWORKS, describe
from .atomic import atomic_write
from .errors import ConfigError, PluginError, WorkFailedError
from .inference.onnx import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, dynamo_to_onnx, module_to_onnx, ort_session
from .machine import EXPORT_PRECISIONS as PRECISIONS
from .version import __version__

__all__ = ["DEFAULT_OPSET", "DEFAULT_OPSETS", "EXPORTERS", "PRECISIONS", "TOLERANCES", "ExportReport", "export_onnx"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

try:  # the exporters' supported opsets (private module; the fallbacks are torch 2.14's values)
    from torch.onnx import _constants as _onnx_constants
except ImportError:  # pragma: no cover
    _onnx_constants = None

#: ``torchscript``: torch's tracing exporter (fast: ~1 s; deprecated upstream but
#: present in torch 2.14).  ``dynamo``: the torch.export-based exporter (needs the
#: ``onnxscript`` package; ~15 s per network on a 2-core CPU).
EXPORTERS = ("torchscript", "dynamo")
#: Opsets accepted per exporter (inclusive).
OPSET_RANGE = {
    "torchscript": (11, int(getattr(_onnx_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))),
    "dynamo": (18, int(getattr(_onnx_constants, "ONNX_MAX_OPSET", 23))),
}
#: The opset used when none is given, per exporter (the dynamo exporter starts at 18).
DEFAULT_OPSETS = {"torchscript": DEFAULT_OPSET, "dynamo": OPSET_RANGE["dynamo"][0]}
#: Largest absolute difference allowed between onnxruntime's output and the
#: network's fp32 torch forward, images in [0, 1].  Measured with the authors'
#: weights (README): fp32 ≤ 3e-6, fp16 ≤ 4.2e-3.
TOLERANCES = {"fp32": 1e-4, "fp16": 2e-2}
#: Batch and input size of the onnxruntime check: sizes other than the traced
#: example's (:data:`_EXAMPLE_SHAPE`), so a graph whose axes were not dynamic fails the check.
CHECK_BATCH = 2
CHECK_SIZE = {"IMDN": (37, 53), "IMDN_AS": (36, 52), "IMDN_RTC": (37, 53), "IMDN_RTE": (36, 52)}
#: (batch, height, width) of the traced example per exporter; sides are multiples of 4
#: for IMDN_AS, and torch.export specializes dimensions of size 1.
_EXAMPLE_SHAPE = {"torchscript": (1, 12, 16), "dynamo": (2, 12, 16)}


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how the check went."""

    path: Path
    network: str
    precision: str
    opset: int
    exporter: str
    size_multiple: int
    num_bytes: int
    seconds: float
    #: Input shape of the onnxruntime check, ``None`` when not checked.
    check_shape: tuple[int, int, int, int] | None
    max_abs_diff: float | None
    tolerance: float | None
    #: Why the model was not checked (``None`` when it was).
    check_skipped: str | None

    def __str__(self) -> str:
        if self.check_skipped is None:
            n, c, h, w = self.check_shape or (0, 0, 0, 0)
            check = f"onnxruntime max abs diff {self.max_abs_diff:.2e} <= {self.tolerance:g} on {n}x{c}x{h}x{w}"
        else:
            check = f"not checked: {self.check_skipped}"
        return (
            f"{self.path}: {self.network}, {self.precision}, opset {self.opset}, {self.num_bytes / 1e6:.2f} MB "
            f"({self.exporter}, {self.seconds:.1f} s); {check}"
        )


def _check_options(network: object, precision: object, opset: object, exporter: object) -> None:
    if not isinstance(network, tuple(NETWORKS.values())):
        raise ConfigError(f"export: expected one of {', '.join(NETWORKS)}, got {type(network).__name__}")
    if precision not in PRECISIONS:
        raise ConfigError(f"export: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if exporter not in EXPORTERS:
        raise ConfigError(f"export: exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    lo, hi = OPSET_RANGE[exporter]
    if not isinstance(opset, int) or isinstance(opset, bool) or not lo <= opset <= hi:
        raise ConfigError(f"export: opset must be an integer from {lo} to {hi} with the {exporter} exporter, got {opset!r}")


def _first_line(exc: BaseException) -> str:
    """``Type: message`` on one line (onnxruntime spreads its messages over several)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:240]}" if text else type(exc).__name__


def _to_onnx(net: nn.Module, example: torch.Tensor, opset: int, exporter: str, size_multiple: int) -> bytes:
    """Serialized ONNX model of ``net`` with dynamic batch / height / width (graphs: :mod:`.inference.onnx`)."""
    if exporter == "torchscript":
        return module_to_onnx(net, (example,), [INPUT_NAME], opset)
    _need_onnxscript()
    return dynamo_to_onnx(net, example, opset, size_multiple)


def _need_onnxscript() -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError("export: the dynamo exporter needs the onnxscript package (pip install onnxscript)") from None


def check_writable(path: Path) -> None:
    """Refuse (:class:`ConfigError`) before any work when ``path``'s folder cannot take a new file:
    a test file is created and removed in it (or, for a folder still to be created, the nearest
    existing one must be writable)."""
    folder = path.parent if str(path.parent) else Path(".")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{path}: cannot be written ({existing} is not a folder)")
    if existing != folder:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"{path}: cannot be written (cannot create folders in {existing})")
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=".basicsr-export-", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written ({exc.strerror or exc}); nothing was exported") from None


def _finish_model(data: bytes, network: str, scale: int, size_multiple: int, precision: str) -> bytes:
    """Add the plugin's metadata and validate the model with ``onnx.checker``."""
    import onnx

    model = onnx.load_from_string(data)
    meta = {
        "imdn_plugin.network": network, "imdn_plugin.scale": str(scale),
        "imdn_plugin.size_multiple": str(size_multiple), "imdn_plugin.precision": precision,
        "imdn_plugin.version": __version__,
    }  # fmt: skip
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _run_check(
    data: bytes, reference: nn.Module, precision: str, size: tuple[int, int], in_ch: int
) -> tuple[tuple[int, int, int, int], float]:
    """Largest |onnxruntime(x) - fp32 torch forward(x)| on a random batch in [0, 1]."""
    shape = (CHECK_BATCH, in_ch, *size)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    feed = x.half() if precision == "fp16" else x
    try:
        session = ort_session(data)  # the session of ``--backend onnxruntime`` (runtime's default threads)
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: feed.numpy()})
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception classes (Fail, InvalidArgument, ...)
        raise WorkFailedError(
            f"export check: onnxruntime could not run the exported model on {shape}: {_first_line(exc)}; nothing written"
        ) from None
    with torch.inference_mode():
        expected = reference(feed.float())  # the same (fp16-rounded for fp16) input values
    got = torch.from_numpy(out)
    if tuple(got.shape) != tuple(expected.shape):
        raise WorkFailedError(
            f"export check: onnxruntime output {tuple(got.shape)} != torch output {tuple(expected.shape)} "
            f"for input {shape}; nothing written"
        )
    return shape, float((got.double() - expected.double()).abs().max())


def _write_atomic(path: Path, data: bytes, overwrite: bool) -> None:
    """:func:`imdn_plugin.atomic.atomic_write`; an existing file without ``overwrite`` is a ConfigError."""
    try:
        atomic_write(path, data, overwrite=overwrite)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists (use --overwrite / overwrite=True to replace it)") from None


def export_onnx(
    network: nn.Module,
    path: PathLike,
    *,
    precision: str = "fp32",
    opset: int | None = None,
    check: bool = True,
    overwrite: bool = False,
    exporter: str = "torchscript",
) -> ExportReport:
    """Export an IMDN / IMDN_AS network to ONNX with dynamic batch, height and width.

    Args:
        network: :class:`~imdn_plugin.archs.IMDN` (any scale) or
            :class:`~imdn_plugin.archs.IMDN_AS`; not modified (a CPU copy is exported).
        path: The ``.onnx`` file to write (atomically; its folder is created).
        precision: ``"fp32"`` or ``"fp16"`` (weights, input and output in float16).
        opset: ONNX opset (see :data:`OPSET_RANGE`); None: the exporter's default (:data:`DEFAULT_OPSETS`).
        check: Run the model with onnxruntime, if installed, and compare with the
            fp32 torch forward (see :data:`TOLERANCES`); a failed check writes nothing.
        overwrite: Replace an existing file at ``path``.
        exporter: ``"torchscript"`` or ``"dynamo"`` (see :data:`EXPORTERS`).

    Raises:
        ConfigError: bad option, or ``path`` exists and ``overwrite`` is off.
        PluginError: the export or the onnxruntime check failed.
    """
    if opset is None and exporter in DEFAULT_OPSETS:
        opset = DEFAULT_OPSETS[exporter]
    _check_options(network, precision, opset, exporter)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("export: needs the onnx package: pip install 'imdn-plugin[onnx]' (onnx, onnxruntime)") from None
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give the .onnx file to write")
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists (use --overwrite / overwrite=True to replace it)")
    check_writable(path)
    if exporter == "dynamo":
        _need_onnxscript()
    start = time.perf_counter()
    reference = copy.deepcopy(network).float().cpu().eval()
    spec = describe(reference.state_dict())
    if spec is None:
        raise ConfigError(f"export: cannot read the sizes of this {type(network).__name__} off its weights")
    desc = str(spec)
    net = copy.deepcopy(reference)
    if precision == "fp16":
        net = net.half()
    n, h, w = _EXAMPLE_SHAPE[exporter]
    example = torch.rand(n, spec.num_in_ch, h, w, generator=torch.Generator().manual_seed(0))
    example = example.half() if precision == "fp16" else example
    try:
        with torch.no_grad():
            data = _to_onnx(net, example, opset, exporter, reference.size_multiple)
    except PluginError:
        raise
    except Exception as exc:  # torch.onnx raises RuntimeError, OnnxExporterError, ...
        raise WorkFailedError(
            f"export: torch.onnx.export failed for {desc} ({exporter}, opset {opset}): {_first_line(exc)}; nothing written"
        ) from exc
    try:
        data = _finish_model(data, desc, reference.scale, reference.size_multiple, precision)
    except Exception as exc:  # onnx.checker.ValidationError, DecodeError
        raise WorkFailedError(
            f"export: the exported model of {desc} is not valid ONNX: {_first_line(exc)}; nothing written"
        ) from exc

    check_shape, diff, tol, skipped = None, None, None, None
    if not check:
        skipped = "check turned off"
    else:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            skipped = "onnxruntime is not installed (pip install onnxruntime)"
    if skipped is None:
        tol = TOLERANCES[precision]
        check_shape, diff = _run_check(data, reference, precision, CHECK_SIZE[spec.type], spec.num_in_ch)
        if not diff <= tol:  # also catches NaN
            raise WorkFailedError(
                f"export check: onnxruntime and torch differ by {diff:.3g} (> {tol:g}, {precision}) for {desc} "
                f"on input {check_shape}; nothing written"
            )
        logger.info("onnxruntime check: max abs diff %.3g (tolerance %g) on %s", diff, tol, check_shape)
    else:
        logger.warning("%s: exported model not checked: %s", path, skipped)
    try:
        _write_atomic(path, data, overwrite)
    except OSError as exc:
        raise WorkFailedError(f"{path}: cannot write: {exc.strerror or _first_line(exc)}; nothing written") from None
    report = ExportReport(
        path=path, network=desc, precision=precision, opset=opset, exporter=exporter,
        size_multiple=reference.size_multiple, num_bytes=len(data), seconds=time.perf_counter() - start,
        check_shape=check_shape, max_abs_diff=diff, tolerance=tol, check_skipped=skipped,
    )  # fmt: skip
    logger.info("%s", report)
    return report
