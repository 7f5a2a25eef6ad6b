"""Device, precision and machine facts: the one module that knows them.

Everything the plugin decides from the machine it runs on, or from the
environment, is read here and nowhere else (as timm reads its switches in one
``config`` module):

* the precision words (:data:`PRECISIONS` for inference, :data:`EXPORT_PRECISIONS`,
  :data:`TRAIN_AMP`) and what each means to torch (:func:`torch_dtype`,
  :func:`autocast_dtype`), to OpenVINO (:data:`OV_HINTS`, :data:`OV_PRECISIONS`);
* what ``precision: auto`` becomes on a device (:func:`resolve_precision`);
* the default device (:func:`default_device`) and the memory available on one
  (:func:`available_bytes`);
* CPU features (:func:`cpu_flags`, :func:`mkldnn_bf16_native`, :func:`amx_detected`)
  and the strict-fp32 switch of CUDA (:func:`strict_fp32_cuda`);
* every ``IMDN_*`` environment variable (:data:`ENV_VARS`).

Imports torch only inside the functions that need it, so the command-line
parsers can read these words before torch is loaded.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "ASSUME_AMX_ENV",
    "DEVICE_ENV",
    "ENV_VARS",
    "EXPORT_PRECISIONS",
    "MALLOC_ENV",
    "MAX_PIXELS_ENV",
    "OV_HINTS",
    "OV_PRECISIONS",
    "PRECISIONS",
    "REDUCED_PRECISIONS",
    "TRAIN_AMP",
    "amx_detected",
    "autocast_dtype",
    "available_bytes",
    "cpu_flags",
    "cuda_half_fast",
    "default_device",
    "env",
    "mkldnn_bf16_native",
    "resolve_precision",
    "strict_fp32_cuda",
    "torch_dtype",
]

# --------------------------------------------------------------------------- precision words

#: ``precision`` of inference (``inference:precision``, ``--precision``, :class:`~imdn_plugin.Upscaler`).
PRECISIONS = ("fp32", "fp16", "bf16", "auto")
#: The reduced precisions (16-bit floats) among :data:`PRECISIONS`.
REDUCED_PRECISIONS = ("fp16", "bf16")
#: ``basicsr export --precision``: the ONNX graph's float type.
EXPORT_PRECISIONS = ("fp32", "fp16")
#: ``train:amp`` of an option file (``None``: fp32 training).
TRAIN_AMP = (None, "bf16", "fp16")
#: OpenVINO ``INFERENCE_PRECISION_HINT`` per precision word (``auto``: not set).
OV_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
#: The reverse of :data:`OV_HINTS`: the precision word of what OpenVINO reports it runs.
OV_PRECISIONS = {hint: word for word, hint in OV_HINTS.items()}

#: ``inference: backend`` / ``basicsr infer --backend``: torch, or an ONNX export run by a CPU runtime.
BACKENDS = ("torch", "onnxruntime", "openvino")


def precision_problem(backend: str, precision: str) -> str | None:
    """Why ``backend`` cannot run ``precision`` (``None`` when it can)."""
    if backend == "onnxruntime" and precision in REDUCED_PRECISIONS:
        return f"the onnxruntime backend runs fp32 only (its CPU convolutions have no {precision})"
    return None


def torch_dtype(precision: str) -> torch.dtype:
    """The torch float type of ``fp32`` / ``fp16`` / ``bf16``; ValueError for other words (``auto``: resolve it first)."""
    import torch

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"precision must be one of {', '.join(dtypes)}, got {precision!r}")
    return dtypes[precision]


def autocast_dtype(precision: str | None) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of a precision word or ``train:amp`` value (``None`` for fp32 / ``None``)."""
    return torch_dtype(precision) if precision in REDUCED_PRECISIONS else None


# --------------------------------------------------------------------------- environment

#: ``1`` / ``0``: assume the CPU has / has no AMX (overrides :func:`amx_detected`).
ASSUME_AMX_ENV = "IMDN_ASSUME_AMX"
#: The largest image (width × height) any reader accepts (:func:`imdn_plugin.data.imageio.max_pixels`).
MAX_PIXELS_ENV = "IMDN_MAX_PIXELS"
#: ``default`` (or ``0``/``off``/``no``/``false``): the commands leave glibc malloc alone (:mod:`.cli.allocator`).
MALLOC_ENV = "IMDN_MALLOC"
#: The default device of ``basicsr infer`` and :class:`~imdn_plugin.Upscaler` (``cpu``, ``cuda``, ``cuda:N``).
DEVICE_ENV = "IMDN_DEVICE"
#: Every environment variable the plugin reads (all through :func:`env`).
ENV_VARS = (ASSUME_AMX_ENV, MAX_PIXELS_ENV, MALLOC_ENV, DEVICE_ENV)


def env(name: str) -> str:
    """The stripped value of the plugin's environment variable ``name`` ('' when unset)."""
    if name not in ENV_VARS:
        raise KeyError(f"{name} is not one of the plugin's environment variables ({', '.join(ENV_VARS)})")
    return os.environ.get(name, "").strip()


# --------------------------------------------------------------------------- device and memory


def default_device(backend: str = "torch") -> str:
    """The device when none is given: ``IMDN_DEVICE`` if set, else ``cuda`` when a CUDA
    device is available and the backend is torch (the ONNX runtimes run on the CPU), else ``cpu``."""
    chosen = env(DEVICE_ENV)
    if chosen:
        return chosen
    if backend != "torch":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def available_bytes(device: torch.device) -> int | None:
    """Memory available for a forward on ``device`` (CUDA: free device memory; CPU: MemAvailable), or None."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- CPU features


def cpu_flags() -> frozenset[str] | None:
    """The ``flags`` of ``/proc/cpuinfo`` (Linux), or None where there is no such file."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def mkldnn_bf16_native() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU (AVX-512 BW/VL/DQ or AVX-NE-CONVERT)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amx_detected() -> tuple[bool, str]:
    """``(True, why)`` if this CPU has AMX bf16 tiles that oneDNN can use, else ``(False, why)``.

    ``IMDN_ASSUME_AMX=1`` / ``0`` overrides the detection.  On Linux the
    ``amx_bf16`` flag of ``/proc/cpuinfo`` is used (it is only listed when the
    kernel enables AMX), elsewhere PyTorch's CPUID probe; either way oneDNN must
    also support bf16 convolutions here.

    Raises:
        ValueError: ``IMDN_ASSUME_AMX`` set to something other than ``0`` or ``1``.
    """
    value = env(ASSUME_AMX_ENV)
    if value:
        if value not in ("0", "1"):
            raise ValueError(f"{ASSUME_AMX_ENV} must be 0 or 1, got {value!r}")
        return value == "1", f"{ASSUME_AMX_ENV}={value}"
    flags = cpu_flags()
    if flags is not None:
        amx = "amx_bf16" in flags and "amx_tile" in flags
        source = "/proc/cpuinfo " + ("lists amx_bf16" if amx else "lists no amx_bf16")
    else:
        import torch

        try:
            amx = bool(torch.cpu._is_amx_tile_supported())
        except (AttributeError, RuntimeError):
            amx = False
        source = "CPUID " + ("reports AMX" if amx else "reports no AMX")
    if amx and not mkldnn_bf16_native():
        return False, source + ", but oneDNN has no bf16 convolutions here"
    return amx, source


# --------------------------------------------------------------------------- GPU features and switches

#: Lowest CUDA compute capability with fp16 tensor cores (Volta, 7.0); below it fp16 math is
#: not faster than fp32 on most cards (consumer Pascal runs fp16 at 1/64 of the fp32 rate).
CUDA_HALF_MIN_CAPABILITY = (7, 0)


def cuda_half_fast(device: torch.device) -> bool:
    """Whether the CUDA ``device`` has fp16 tensor cores (compute capability >= 7.0)."""
    import torch

    return tuple(torch.cuda.get_device_capability(device)) >= CUDA_HALF_MIN_CAPABILITY


@contextmanager
def strict_fp32_cuda() -> Iterator[None]:
    """Disable TF32 in cuDNN convolutions and cuBLAS matmuls for the block (CUDA ``fp32``)."""
    import torch

    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul


# --------------------------------------------------------------------------- precision: auto


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """``(precision, why)`` on ``device``; words other than ``auto`` are returned as they are.

    ``auto`` becomes:

    * ``fp16`` on a CUDA device with fp16 tensor cores (:func:`cuda_half_fast`):
      as fast as bf16 there, with 3 more mantissa bits (closer to fp32), and the
      networks' activations stay far inside fp16's range (the CCA statistics are
      taken in fp32: :class:`~imdn_plugin.archs.imdn_arch.CCALayer`); ``fp32`` on
      older GPUs, where fp16 is not faster;
    * ``bf16`` on a CPU with AMX (:func:`amx_detected`, override ``IMDN_ASSUME_AMX``),
      the bf16 fused plan; ``fp32`` on other CPUs and devices.

    Raises:
        ValueError: a bad ``IMDN_ASSUME_AMX`` value.
    """
    if precision != "auto":
        return precision, "asked for"
    if device.type == "cuda":
        if cuda_half_fast(device):
            return "fp16", "auto on CUDA: fp16 (tensor cores)"
        return "fp32", "auto on CUDA: fp32 (compute capability below 7.0: no fp16 tensor cores)"
    if device.type != "cpu":
        return "fp32", f"auto on {device.type}: fp32"
    amx, why = amx_detected()
    return ("bf16", f"auto: AMX ({why})") if amx else ("fp32", f"auto: no AMX ({why})")
