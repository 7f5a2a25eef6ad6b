#!/usr/bin/env python
"""Re-save an IMDN checkpoint (e.g. the authors' bare state dict) as a BasicSR ``{'params': ...}`` or a .safetensors file.

    python scripts/convert_official_checkpoint.py IMDN_x4.pth experiments/pretrained_models/IMDN_x4_basicsr.pth
    python scripts/convert_official_checkpoint.py IMDN_x4.pth IMDN_x4.safetensors

The input is loaded with ``weights_only=True`` (any accepted form: bare, ``module.``
prefixed, ``params``/``params_ema``, .safetensors), recognised from its shapes, checked
by loading it strictly into the matching network, and written atomically. An output
named ``*.safetensors`` holds the bare state dict (no ``module.`` prefix); any other
name a BasicSR ``{'params': ...}`` file. Conversion is optional: the plugin loads the
original files as they are.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import imdn_plugin  # noqa: F401
from imdn_plugin.archs import NETWORKS, build, describe
from imdn_plugin.checkpoint import (
    load_into,
    load_state_dict,
    save_network_file,
)
from imdn_plugin.errors import PluginError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", type=Path, help="checkpoint to convert")
    p.add_argument("output", type=Path, help="file to write: *.safetensors, else BasicSR .pth")
    p.add_argument("--param-key", default="params", help="key to read from BasicSR-style inputs")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = p.parse_args(argv)
    try:
        if args.output.exists() and not args.force:
            raise PluginError(f"{args.output}: exists (use --force to overwrite)")
        state = load_state_dict(args.input, args.param_key)
        spec = describe(state)
        if spec is None:
            raise PluginError(f"{args.input}: not a checkpoint of {', '.join(NETWORKS)}")
        net = build(spec)
        load_into(net, state, strict=True, source=str(args.input))
        save_network_file({"params": net.state_dict()}, args.output, overwrite=args.force)
    except PluginError as exc:
        print(f"convert_official_checkpoint: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.input} ({spec}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
