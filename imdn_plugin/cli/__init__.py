"""The ``basicsr`` command: ``train``, ``test``, ``infer``, ``export`` and ``info``.

``basicsr train|test -opt FILE [--launcher ..] [--auto_resume] [--debug]
[--local_rank N] [--force_yml KEY:PATH=VALUE ..]`` checks its flags and option file
(:mod:`.pipeline`, before torch or BasicSR load), loads every installed plugin (entry-point
group ``basicsr.plugins``), then runs BasicSR's own pipeline with the current
working directory as ``root_path``: ``experiments/``, ``results/`` and
``tb_logger/`` are created where the command is run.  ``basicsr infer`` upscales
images with a checkpoint (see ``basicsr infer --help``); ``basicsr export`` writes ONNX;
``basicsr info`` counts parameters, Mult-Adds and activations.  Each subcommand parses
its arguments before importing torch (shared pieces: :mod:`.common`).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..errors import PluginError
from . import pipeline
from .allocator import keep_freed_memory
from .common import load_plugins, one_line, plugin_names, sigterm_as_interrupt

USAGE = """usage: basicsr {train,test,infer,export,info} ...

  basicsr train -opt options/train_IMDN_x4.yml [--auto_resume] [--launcher pytorch] [--debug] [--force_yml KEY:PATH=VALUE ...]
  basicsr test  -opt options/test_IMDN_x4.yml [--force_yml KEY:PATH=VALUE ...]
  basicsr infer -i INPUT -o OUTDIR --weights FILE [--scale S] [--tile T] [--device cpu|cuda] [-r] [--overwrite | --skip-existing]
  basicsr export --weights FILE -o OUT.onnx [--precision fp32|fp16] [--overwrite]
  basicsr info  (--weights FILE | --network NAME [--scale S]) [--size HxW] [--json]

train/test take BasicSR's own flags (-opt, --launcher, --auto_resume, --debug,
--local_rank, --force_yml KEY:PATH=VALUE, e.g. train:ema_decay=0.999); outputs go
under the current directory (experiments/, results/, tb_logger/). Each command
has its --help. Plugins found: {plugins}
"""


def _run_pipeline(command: str, args: Sequence[str]) -> None:
    pipeline.check_arguments(command, args)  # a usage error or a bad -opt: before torch and BasicSR load
    load_plugins()
    # BasicSR's pipelines parse sys.argv themselves.
    sys.argv = [f"basicsr {command}", *args]
    root = os.getcwd()
    if command == "train":
        import basicsr.train

        basicsr.train.train_pipeline(root)
    else:
        import basicsr.test

        basicsr.test.test_pipeline(root)


def _folders_taken() -> list[str]:
    """The experiment / results folders pipeline runs of this process took (a run's are those
    added while it ran; none if it never got that far)."""
    run_folders = sys.modules.get("imdn_plugin.integration.run_folders")
    return run_folders.folders_taken() if run_folders is not None else []


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        plugins = ", ".join(plugin_names()) or "none"
        print(USAGE.replace("{plugins}", plugins))
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in ("test", "infer"):
        # One job per process: keep freed memory instead of faulting it in again for
        # every image (imdn_plugin/cli/allocator.py; IMDN_MALLOC=default turns it off).
        keep_freed_memory()
    taken_before = len(_folders_taken())
    try:
        if command == "test":
            with sigterm_as_interrupt():  # kill/timeout: the image being written leaves no temporary
                _run_pipeline(command, rest)
        elif command == "train":
            _run_pipeline(command, rest)
        elif command == "infer":
            from . import infer  # each command imports only its own module

            return infer.main(rest)
        elif command == "export":
            from . import export  # each command imports only its own module

            return export.main(rest)
        elif command == "info":
            from . import info  # each command imports only its own module

            return info.main(rest)
        else:
            print(f"basicsr: error: unknown command '{command}' (train, test, infer, export, info)", file=sys.stderr)
            return 2
    except PluginError as exc:
        print(f"basicsr: error: {one_line(exc)}", file=sys.stderr)
        code = exc.exit_code
        taken = _folders_taken()[taken_before:] if command in ("train", "test") else []
        if taken:  # the run had its folder: a failure during the work, not a refusal
            print(f"basicsr: the {command} run stopped; what it wrote is kept in {', '.join(taken)}", file=sys.stderr)
            code = 1
        return code
    except KeyboardInterrupt:
        print("basicsr: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
