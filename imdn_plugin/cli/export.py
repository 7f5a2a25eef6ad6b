"""``basicsr export``: a checkpoint to ONNX (see :mod:`imdn_plugin.export`).

Exit status: 0 written, 2 refused before any work (bad option, existing or
unwritable output, unusable checkpoint), 1 the export or its check failed
(nothing written), 130 interrupted.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..checkpoint import load_network
from ..export import DEFAULT_OPSETS, EXPORTERS, OPSET_RANGE, PRECISIONS, check_writable, export_onnx
from . import OneLineParser


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="basicsr export", description="Export an IMDN / IMDN_AS / IMDN_RTC / IMDN_RTE checkpoint to ONNX (dynamic batch, height and width).")
    p.add_argument("--weights", required=True, help="checkpoint: BasicSR params/params_ema file or bare state dict")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp16: float16 weights, input and output")
    p.add_argument("--opset", type=int, default=None,
                   help=f"ONNX opset (default {DEFAULT_OPSETS['torchscript']} with torchscript, "
                        f"{DEFAULT_OPSETS['dynamo']} with dynamo; torchscript {OPSET_RANGE['torchscript'][0]}-"
                        f"{OPSET_RANGE['torchscript'][1]}, dynamo {OPSET_RANGE['dynamo'][0]}-{OPSET_RANGE['dynamo'][1]})")  # fmt: skip
    p.add_argument("--exporter", default="torchscript", choices=EXPORTERS, help="torch exporter (dynamo needs onnxscript)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison with the torch forward")
    p.add_argument("--param-key", default=None,
                   help="group inside BasicSR files (params, params_ema); default: params, else params_ema, else a "
                        "bare state dict. A key given must be in the file")  # fmt: skip
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``basicsr export --weights FILE -o OUT.onnx [...]``; raises :class:`PluginError` on user errors."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    check_writable(Path(args.output))  # a read-only folder: refused before the checkpoint is even read
    network, _ = load_network(args.weights, args.param_key, exact_key=args.param_key is not None)
    report = export_onnx(
        network, args.output, precision=args.precision, opset=args.opset, check=not args.no_check,
        overwrite=args.overwrite, exporter=args.exporter,
    )  # fmt: skip
    print(f"basicsr export: {report}", file=sys.stderr)
    return 0
