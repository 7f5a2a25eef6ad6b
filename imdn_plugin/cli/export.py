"""``basicsr export``: a checkpoint to ONNX (see :mod:`imdn_plugin.export`)."""
from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from ..checkpoint import load_network
from ..export import DEFAULT_OPSET, EXPORTERS, OPSET_RANGE, PRECISIONS, export_onnx
from . import OneLineParser


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="basicsr export", description="Export an IMDN / IMDN_AS / IMDN_RTC / IMDN_RTE checkpoint to ONNX (dynamic batch, height and width).")
    p.add_argument("--weights", required=True, help="checkpoint: BasicSR params/params_ema file or bare state dict")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp16: float16 weights, input and output")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET}; torchscript {OPSET_RANGE['torchscript'][0]}-"
                        f"{OPSET_RANGE['torchscript'][1]}, dynamo {OPSET_RANGE['dynamo'][0]}-{OPSET_RANGE['dynamo'][1]})")  # fmt: skip
    p.add_argument("--exporter", default="torchscript", choices=EXPORTERS, help="torch exporter (dynamo needs onnxscript)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison with the torch forward")
    p.add_argument("--param-key", default="params", help="key inside BasicSR files (params or params_ema)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``basicsr export --weights FILE -o OUT.onnx [...]``; raises :class:`PluginError` on user errors."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    network, _ = load_network(args.weights, args.param_key)
    report = export_onnx(
        network, args.output, precision=args.precision, opset=args.opset, check=not args.no_check,
        overwrite=args.overwrite, exporter=args.exporter,
    )  # fmt: skip
    print(f"basicsr export: {report}", file=sys.stderr)
    return 0
