"""The one home of the ONNX graph and of the ONNX Runtime / OpenVINO sessions built on it.

Used alike by ``basicsr export`` (:mod:`imdn_plugin.export`: its onnxruntime
check), by ``inference: backend`` / ``infer --backend``
(:mod:`.runtimes`) and by ``benchmarks/benchmark.py``, so that all three run
the same graph in the same session:

* :func:`module_to_onnx`: a module as a serialized ONNX graph (torch's tracing
  exporter, dynamic batch / height / width), and :func:`dynamo_to_onnx`, the same
  by the torch.export-based exporter (``basicsr export --exporter dynamo``);
* :func:`ort_session`: an ONNX Runtime CPU session (thread count);
* :func:`ov_compile`: an OpenVINO CPU compiled model (thread count, the
  precision word's ``INFERENCE_PRECISION_HINT`` from
  :data:`imdn_plugin.machine.OV_HINTS`, static or dynamic input shape), and
  :func:`ov_precision`, the precision word of what it really runs;
* :class:`Graph`: either of the two, called with NCHW torch tensors.

The runtimes are optional extras (``pip install ".[onnx]"`` / ``".[openvino]"``);
:func:`runtime_module` imports one or says in one line how to install it.  This
module imports nothing from :mod:`imdn_plugin.export` or :mod:`.runtimes`.
"""
from __future__ import annotations

import importlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..machine import OV_HINTS, OV_PRECISIONS

__all__ = [
    "DEFAULT_OPSET", "INPUT_NAME", "OUTPUT_NAME", "RUNTIME_PACKAGES", "Graph", "dynamo_to_onnx", "module_to_onnx", "ort_session",
    "ov_compile", "ov_precision", "runtime_module",
]  # fmt: skip

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "output"
#: Package to import and the plugin's extra that installs it, per runtime.
RUNTIME_PACKAGES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}

#: A serialized ONNX model, or the path of an ``.onnx`` file.
ModelSource = bytes | str | Path


def runtime_module(backend: str) -> Any:
    """The Python module of ``backend`` (a key of :data:`RUNTIME_PACKAGES`), or a one-line
    :class:`ConfigError` saying how to install it (``onnx``, the exporter's serialiser, is needed too)."""
    package, extra = RUNTIME_PACKAGES[backend]
    try:
        importlib.import_module("onnx")
        return importlib.import_module(package)
    except ImportError as exc:
        raise ConfigError(
            f"backend {backend}: the {exc.name or package} package is not installed: pip install onnx {package} "
            f"(the plugin's [{extra}] extra)"
        ) from None


def module_to_onnx(
    module: nn.Module, examples: tuple[Tensor, ...], input_names: list[str], opset: int = DEFAULT_OPSET
) -> bytes:
    """Serialized ONNX graph of ``module`` (torch's tracing exporter): inputs ``input_names``
    (``N×C×H×W``, all with the same dynamic batch, height and width), one output ``output``
    (dynamic batch / size)."""
    buf = io.BytesIO()
    axes_in = {0: "batch", 2: "height", 3: "width"}
    axes_out = {0: "batch", 2: "out_height", 3: "out_width"}
    with warnings.catch_warnings():
        # Expected: the exporter's own deprecation notice, and IMDN_AS's Python-level
        # size check (a constant in the trace; the graph does not check sizes).
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"imdn_plugin\.")
        torch.onnx.export(
            module, examples, buf, dynamo=False, opset_version=opset, input_names=input_names,
            output_names=[OUTPUT_NAME], dynamic_axes={**{name: axes_in for name in input_names}, OUTPUT_NAME: axes_out},
        )  # fmt: skip
    return buf.getvalue()


def dynamo_to_onnx(net: nn.Module, example: Tensor, opset: int, size_multiple: int = 1) -> bytes:
    """Serialized ONNX graph of ``net`` (one input ``input``, output ``output``) by torch's
    torch.export-based exporter (needs the ``onnxscript`` package): dynamic batch, and height and
    width as multiples of ``size_multiple``."""
    from torch.export import Dim

    if size_multiple > 1:
        height, width = size_multiple * Dim("height_div"), size_multiple * Dim("width_div")
    else:
        height, width = Dim("height"), Dim("width")
    program = torch.onnx.export(
        net, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes={"x": {0: Dim("batch"), 2: height, 3: width}}, verbose=False,
    )  # fmt: skip
    return program.model_proto.SerializeToString()


def _source(model: ModelSource) -> bytes | str:
    return str(model) if isinstance(model, Path) else model


def ort_session(model: ModelSource, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session of ``model`` (``threads``: intra-op threads; None: the runtime's default)."""
    ort = runtime_module("onnxruntime")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(_source(model), options, providers=["CPUExecutionProvider"])


def ov_compile(
    model: ModelSource, precision: str | None, threads: int, shape: tuple[int, ...] | None = None
) -> Any:
    """An OpenVINO CPU compiled model of ``model``: ``threads`` inference threads, latency mode, the
    ``INFERENCE_PRECISION_HINT`` of ``precision`` (``fp32`` / ``bf16`` / ``fp16``; None: OpenVINO's own
    choice), and the first input fixed to ``shape`` (None: the graph's dynamic shape)."""
    if precision is not None and precision not in OV_HINTS:
        raise ValueError(f"OpenVINO precision must be one of {', '.join(OV_HINTS)} or None, got {precision!r}")
    ov = runtime_module("openvino")
    core = ov.Core()
    graph = core.read_model(_source(model))
    if shape is not None:
        graph.reshape({graph.inputs[0].get_any_name(): list(shape)})
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = OV_HINTS[precision]
    return core.compile_model(graph, "CPU", config)


def ov_precision(compiled: Any) -> str:
    """The precision word (``fp32`` / ``bf16`` / ``fp16``) of what ``compiled`` runs (a CPU without bf16 runs f32)."""
    prop = compiled.get_property("INFERENCE_PRECISION_HINT")
    ran = prop.get_type_name() if hasattr(prop, "get_type_name") else str(prop)
    return OV_PRECISIONS.get(ran, ran)


class Graph:
    """One ONNX model compiled by ``onnxruntime`` or ``openvino`` on the CPU; called with NCHW
    tensors (as float32), returns the first output as a float32 CPU tensor.  ``precision`` is what
    it runs in (ONNX Runtime: always ``fp32``); ``shape`` fixes OpenVINO's input shape."""

    def __init__(
        self, backend: str, model: ModelSource, precision: str | None, threads: int,
        shape: tuple[int, ...] | None = None,
    ) -> None:  # fmt: skip
        self.backend = backend
        if backend == "onnxruntime":
            if shape is not None:
                raise ValueError("Graph: a static input shape is an OpenVINO option")
            session = ort_session(model, threads)
            names = [i.name for i in session.get_inputs()]
            self._run: Callable[[list[np.ndarray]], np.ndarray] = lambda arrays: session.run(
                None, dict(zip(names, arrays, strict=True))
            )[0]
            self.precision = "fp32"
            return
        if backend != "openvino":
            raise ValueError(f"Graph: backend must be onnxruntime or openvino, got {backend!r}")
        compiled = ov_compile(model, precision, threads, shape)
        self.precision = ov_precision(compiled)
        request = compiled.create_infer_request()
        self._run = lambda arrays: request.infer(dict(enumerate(arrays)))[0].copy()

    def __call__(self, *inputs: Tensor) -> Tensor:
        arrays = [t.detach().to("cpu", torch.float32).contiguous().numpy() for t in inputs]
        return torch.from_numpy(self._run(arrays))
