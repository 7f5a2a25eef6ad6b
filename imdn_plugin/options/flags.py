"""The command-line flags of BasicSR's train / test pipelines, defined once.

``basicsr train|test`` checks them before torch loads (:mod:`imdn_plugin.cli.pipeline`);
BasicSR's pipeline parses them again from ``sys.argv`` (:func:`imdn_plugin.integration.parse._arguments`).
Both build their parser from :func:`add_pipeline_arguments`.  The flags are BasicSR 1.4.2's own
(``basicsr/utils/options.py``).
"""
from __future__ import annotations

import argparse

#: ``--launcher`` values.
LAUNCHERS = ("none", "pytorch", "slurm")


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``-opt``, ``--launcher``, ``--auto_resume``, ``--debug``, ``--local_rank``, ``--force_yml``."""
    parser.add_argument("-opt", type=str, required=True, help="the option file (YAML)")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none", help="job launcher")
    parser.add_argument("--auto_resume", action="store_true", help="resume from the run's latest training state")
    parser.add_argument("--debug", action="store_true", help="BasicSR's debug mode (name prefixed debug_, short intervals)")
    parser.add_argument("--local_rank", type=int, default=0, help="set by the distributed launcher")
    parser.add_argument("--force_yml", nargs="+", default=None, metavar="KEY:PATH=VALUE",
                        help="replace option values, e.g. train:ema_decay=0.999 (values are YAML data)")  # fmt: skip
    return parser
