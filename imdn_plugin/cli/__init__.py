"""The ``basicsr`` command: ``train``, ``test`` and ``infer``.

``basicsr train|test -opt FILE [--launcher ..] [--auto_resume] [--debug]
[--local_rank N] [--force_yml k=v ..]`` loads every installed plugin (entry-point
group ``basicsr.plugins``), then runs BasicSR's own pipeline with the current
working directory as ``root_path``: ``experiments/``, ``results/`` and
``tb_logger/`` are created where the command is run.  ``basicsr infer`` upscales
images with a checkpoint (see ``basicsr infer --help``); ``basicsr export`` writes ONNX;
``basicsr info`` counts parameters, Mult-Adds and activations.
"""
from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points
from typing import NoReturn, Optional, Sequence

from ..errors import PluginError
from .allocator import keep_freed_memory

PLUGIN_GROUP = "basicsr.plugins"

USAGE = """usage: basicsr {train,test,infer,export,info} ...

  basicsr train -opt options/train_IMDN_x4.yml [--auto_resume] [--launcher pytorch] [--debug] [--force_yml KEY=VALUE ...]
  basicsr test  -opt options/test_IMDN_x4.yml [--force_yml KEY=VALUE ...]
  basicsr infer -i INPUT -o OUTDIR --weights FILE [--scale S] [--tile T] [--device cpu|cuda] [-r] [--overwrite | --skip-existing]
  basicsr export --weights FILE -o OUT.onnx [--precision fp32|fp16] [--overwrite]
  basicsr info  (--weights FILE | --network NAME [--scale S]) [--size HxW] [--json]

train/test take BasicSR's own flags (-opt, --launcher, --auto_resume, --debug,
--local_rank, --force_yml); outputs go under the current directory
(experiments/, results/, tb_logger/). Plugins found: {plugins}
"""


def load_plugins() -> list[str]:
    """Call the ``register`` callable of every installed ``basicsr.plugins`` entry point."""
    names = []
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            ep.load()()
        except PluginError:
            raise
        except Exception as exc:  # a broken third-party plugin: say which one
            raise PluginError(f"plugin '{ep.name}' ({ep.value}) failed to register: {exc}") from exc
        names.append(ep.name)
    return names


def _run_pipeline(command: str, args: Sequence[str]) -> None:
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


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``basicsr: error:`` line (not the usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"basicsr: error: {message} (see {self.prog} --help)\n")


def _one_line(exc: BaseException) -> str:
    """The message of a plugin error; one raised in a DataLoader worker arrives wrapped
    with the worker's traceback, whose last line holds the original message."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(exc).__name__
    last = lines[-1]
    name = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    return last[len(name):] if last.startswith(name) else last


def _folders_taken() -> list[str]:
    """The experiment / results folders pipeline runs of this process took (a run's are those
    added while it ran; none if it never got that far)."""
    run_folders = sys.modules.get("imdn_plugin.integration.run_folders")
    return run_folders.folders_taken() if run_folders is not None else []


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        plugins = ", ".join(ep.name for ep in entry_points(group=PLUGIN_GROUP)) or "none"
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
            from .infer import _sigterm_as_interrupt

            with _sigterm_as_interrupt():  # kill/timeout: the image being written leaves no temporary
                _run_pipeline(command, rest)
        elif command == "train":
            _run_pipeline(command, rest)
        elif command == "infer":
            from .infer import main as infer_main

            return infer_main(rest)
        elif command == "export":
            from .export import main as export_main

            return export_main(rest)
        elif command == "info":
            from .info import main as info_main

            return info_main(rest)
        else:
            print(f"basicsr: error: unknown command '{command}' (train, test, infer, export, info)", file=sys.stderr)
            return 2
    except PluginError as exc:
        print(f"basicsr: error: {_one_line(exc)}", file=sys.stderr)
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
