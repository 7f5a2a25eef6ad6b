"""``basicsr export``: a checkpoint to ONNX (see :mod:`imdn_plugin.export`).

Exit status: 0 written, 2 refused before any work (bad option, existing or
unwritable output, unusable checkpoint), 1 the export or its check failed
(nothing written), 130 interrupted.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .common import Deferred, OneLineParser


def _opset_help() -> str:
    from ..export import DEFAULT_OPSETS, OPSET_RANGE

    return (f"ONNX opset (default {DEFAULT_OPSETS['torchscript']} with torchscript, "
            f"{DEFAULT_OPSETS['dynamo']} with dynamo; torchscript {OPSET_RANGE['torchscript'][0]}-"
            f"{OPSET_RANGE['torchscript'][1]}, dynamo {OPSET_RANGE['dynamo'][0]}-{OPSET_RANGE['dynamo'][1]})")  # fmt: skip


def build_parser() -> OneLineParser:
    """The flags; the precision and exporter words and the opset table (``imdn_plugin.export``, which
    imports torch) are read only when given or when the help is shown."""
    p = OneLineParser(prog="basicsr export", description="Export an IMDN / IMDN_AS / IMDN_RTC / IMDN_RTE checkpoint to ONNX (dynamic batch, height and width).")
    p.add_argument("--weights", required=True, help="checkpoint: BasicSR params/params_ema file or bare state dict")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--precision", default="fp32", choices=Deferred("imdn_plugin.export", "PRECISIONS"), help="fp16: float16 weights, input and output")
    p.add_argument("--opset", type=int, default=None, help=_opset_help)
    p.add_argument("--exporter", default="torchscript", choices=Deferred("imdn_plugin.export", "EXPORTERS"), help="torch exporter (dynamo needs onnxscript)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison with the torch forward")
    p.add_argument("--param-key", default=None,
                   help="group inside BasicSR files (params, params_ema); default: params, else params_ema, else a "
                        "bare state dict. A key given must be in the file")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``basicsr export --weights FILE -o OUT.onnx [...]``; raises :class:`PluginError` on user errors."""
    args = build_parser().parse_args(argv)  # usage errors: before torch loads
    from ..checkpoint import load_network
    from ..export import check_writable, export_onnx

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    check_writable(Path(args.output))  # a read-only folder: refused before the checkpoint is even read
    network, _ = load_network(args.weights, args.param_key, exact_key=args.param_key is not None)
    report = export_onnx(
        network, args.output, precision=args.precision, opset=args.opset, check=not args.no_check,
        overwrite=args.overwrite, exporter=args.exporter,
    )  # fmt: skip
    print(f"basicsr export: {report}", file=sys.stderr)
    return 0
