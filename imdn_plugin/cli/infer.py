"""``basicsr infer``: upscale an image or a folder with an IMDN / IMDN_AS / IMDN_RTC / IMDN_RTE checkpoint.

The network type, width, depth and scale are read off the checkpoint's shapes.
IMDN upscales by its own factor; IMDN_AS (paper §3.3) takes any ``--scale``
(integer or fractional): the image is first brought to the target size by
MATLAB-style bicubic, then restored (ACS for sides not divisible by 4).
Grayscale, 16-bit and RGBA inputs keep their form (alpha through the network
or by bicubic: --alpha); outputs are PNG, JPEG or WebP (--format, --quality),
at the network's scale or any --outscale, written atomically.

Nothing is lost: every output name is decided before the model is loaded, and
the command refuses (one line, nothing written) when two inputs would give one
output, an output would replace any input, or an output exists already (unless
``--overwrite`` or ``--skip-existing``).  In folder mode a bad file is reported
and skipped; the command exits 1 if any file failed.  The summary counts the
files found on disk after writing.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import imageio
from ..errors import ConfigError, PluginError
from ..machine import BACKENDS, PRECISIONS, default_device
from ..options.fields import OptionError, show
from ..options.inference import MODES, TILE_STATS, InferenceOptions
from .common import Deferred, OneLineParser, sigterm_as_interrupt

if TYPE_CHECKING:  # torch loads after the arguments are parsed and checked
    from ..upscaler import Upscaler

logger = logging.getLogger(__name__)

#: ``inference:`` option keys and the flags that set them here.
OPTION_FLAGS = {
    "tile": "--tile",
    "tile_overlap": "--tile-overlap",
    "tile_stats": "--tile-stats",
    "acs_padding": "--acs-padding",
    "precision": "--precision",
    "backend": "--backend",
    "mode": "--mode",
}

EPILOG = f"""\
outputs:
  INPUT/x.jpg -> OUTDIR/x.png (x<SUFFIX>.png with --suffix; x.jpg with --format
  jpg or auto, x.webp with webp); with --recursive,
  INPUT/a/b/x.jpg -> OUTDIR/a/b/x.png. Before any work the command refuses, in
  one line, when two inputs give one output name (x.png + x.jpg), when an
  output would replace any input (inputs are never replaced, even with
  --overwrite), or when outputs exist already: add --overwrite to replace them
  or --skip-existing to keep them and skip their inputs (resume a folder).

images:
  JPEG and TIFF inputs are turned as their EXIF/TIFF orientation tag says
  (as photo viewers show them). Images above {imageio.DEFAULT_MAX_PIXELS:,} pixels
  (16384 x 16384) are refused from their header, before decoding; the
  {imageio.MAX_PIXELS_ENV} environment variable sets another limit. Float
  images (TIFF, EXR, PFM) with NaN/Inf samples are refused, checkpoints with
  NaN/Inf weights too, and an image whose result is not finite is reported
  and not written.

inputs not read: files that are not images (a .gif among them), links to
folders (-r does not follow them) and, with -r, folders that cannot be read
are named after the summary with the reason; an unreadable folder counts as
a failure.

exit status: 0 all written (or skipped), 1 some images failed or a folder
could not be read (named at the end, the others are written), 2 refused
before any work (nothing written), 130 interrupted (Ctrl-C, SIGTERM).
"""


def _alpha_help() -> str:
    from ..upscaler import DEFAULT_ALPHA

    return f"how an alpha channel is upscaled: network (as a gray image) or bicubic (default {DEFAULT_ALPHA})"


def build_parser() -> OneLineParser:
    """The flags; choices whose home imports torch (backends, alpha modes) are read only when given."""
    p = OneLineParser(
        prog="basicsr infer", description=__doc__.split("\n\n")[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("-i", "--input", required=True, help="an image file or a folder of images")
    p.add_argument("-o", "--output", required=True, help="output folder (created if needed; not a file)")
    p.add_argument("--weights", required=True, help="checkpoint: BasicSR params/params_ema file or bare state dict")
    p.add_argument("--scale", type=float, default=None, help="IMDN_AS: any factor >= 1 (default 1); IMDN, IMDN_RTC, IMDN_RTE: must match")
    p.add_argument("--mode", default="auto", choices=MODES,
                   help="auto (default): tiles with --tile or when the image would not fit in memory, else ACS for "
                        "IMDN_AS and the whole image for IMDN; whole: one pass (IMDN_AS padded; what tiles reproduce)")  # fmt: skip
    p.add_argument("--tile", type=int, default=None, help="tile side in input pixels for bounded memory (default: off)")
    p.add_argument("--tile-overlap", type=int, default=InferenceOptions.tile_overlap, help="context pixels per tile (--tile-stats local)")
    p.add_argument("--tile-stats", default="global", choices=TILE_STATS,
                   help="CCA statistics of tiles: global = the whole-image result (default), local = per tile")  # fmt: skip
    p.add_argument("--acs-padding", type=int, default=InferenceOptions.acs_padding, help="ACS padding 4k (IMDN_AS)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: $IMDN_DEVICE, else cuda when available; "
                   "the onnxruntime and openvino backends run on the cpu)")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="torch (default), or the network exported to ONNX and run by onnxruntime or openvino (CPU; "
                        "pip install \".[onnx]\" / \".[openvino]\" in the source tree)")  # fmt: skip
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto (default): fp16 on a CUDA GPU with tensor cores, bf16 on a CPU with AMX, else fp32")  # fmt: skip
    p.add_argument("--format", default="png", choices=imageio.OUTPUT_FORMATS,
                   help="png (default), jpg, webp, or auto: the input's format when JPEG or WebP, else png")  # fmt: skip
    p.add_argument("--quality", type=int, default=None,
                   help=f"jpg / webp quality 1-100 (default {imageio.DEFAULT_QUALITY['jpg']})")  # fmt: skip
    p.add_argument("--outscale", type=float, default=None,
                   help="final scale: IMDN's output resized to it (MATLAB bicubic); IMDN_AS runs at it (= --scale)")  # fmt: skip
    p.add_argument("--alpha", default=None, choices=Deferred("imdn_plugin.upscaler", "ALPHA_MODES"), help=_alpha_help)
    p.add_argument("--param-key", default=None,
                   help="group inside BasicSR files (params, params_ema); default: params, else params_ema, else a "
                        "bare state dict. A key given must be in the file")  # fmt: skip
    p.add_argument("--suffix", default="", help="appended to output file names")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also the images in subfolders; the folder tree is mirrored under --output")  # fmt: skip
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true",
                          help="replace output files that exist already (never an input)")  # fmt: skip
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep output files that exist already and skip their inputs (resume)")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar (shown by default on a terminal) and no per-image lines")  # fmt: skip
    return p


# --------------------------------------------------------------------------- inputs
def _same(a: Path, b: Path | None) -> bool:
    return b is not None and os.path.normcase(str(a.resolve())) == os.path.normcase(str(b.resolve()))


@dataclass(frozen=True)
class Skipped:
    """An input found on disk and not processed: ``why``; ``failed``: it counts as a failure (exit 1)."""

    path: Path
    why: str
    failed: bool = False


#: Image formats OpenCV does not read here, by file name ending: named when skipped.
UNSUPPORTED_IMAGES = {
    ".gif": "GIF", ".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".jxl": "JPEG XL", ".svg": "SVG",
    ".ico": "ICO", ".psd": "PSD", ".dng": "DNG raw", ".cr2": "Canon raw", ".nef": "Nikon raw", ".arw": "Sony raw",
}  # fmt: skip


def _skip_reason(p: Path) -> str:
    """Why a regular file of an input folder that is not an image input is not processed."""
    fmt = UNSUPPORTED_IMAGES.get(p.suffix.lower())
    if fmt:
        return f"{fmt} is not read (convert it to PNG)"
    return "not an image file name (" + ", ".join(imageio.IMAGE_EXTENSIONS[:6]) + ", ...)"


def _scan_folder(here: Path, names: Iterable[str], skipped: list[Skipped]) -> list[Path]:
    found = []
    for name in sorted(names):
        p = here / name
        if not p.is_file():
            if os.path.islink(p) and not p.exists():
                skipped.append(Skipped(p, "broken symbolic link"))
            continue
        if imageio.is_image_file(p):
            found.append(p)
        elif not imageio.is_plugin_temporary(p):  # a temporary a killed run left: not an input
            skipped.append(Skipped(p, _skip_reason(p)))
    return found


def list_inputs(
    path: Path, recursive: bool = False, exclude: Path | None = None, skipped: list[Skipped] | None = None
) -> list[Path]:
    """Image files of ``path`` (a file, or a folder: its images; with ``recursive``, those of
    its whole tree, without following links to folders and without the ``exclude`` folder).

    Everything else found is appended to ``skipped`` with the reason: files that
    are not images (a ``.gif`` among them), links to folders (not followed), and
    folders that cannot be read (these count as failures).  An unreadable
    ``path`` itself is a :class:`ConfigError`.
    """
    skipped = [] if skipped is None else skipped
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"--input: no such file or folder: {path}")
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise ConfigError(f"--input: cannot read folder {path} ({exc.strerror or exc})") from None
    if not recursive:
        return _scan_folder(path, names, skipped)
    found: list[Path] = []

    def unreadable(exc: OSError) -> None:
        skipped.append(Skipped(Path(exc.filename), f"cannot read folder ({exc.strerror or exc})", failed=True))

    for dirpath, dirnames, filenames in os.walk(path, onerror=unreadable):
        here = Path(dirpath)
        links = [n for n in dirnames if os.path.islink(here / n)]
        skipped.extend(Skipped(here / n, "symbolic link to a folder: not followed (give it as -i)") for n in sorted(links))
        dirnames[:] = sorted(n for n in dirnames if n not in links and not _same(here / n, exclude))
        found += _scan_folder(here, filenames, skipped)
    return found


def subfolders(path: Path, exclude: Path | None = None) -> list[Path]:
    """Folders directly inside ``path`` (not the ``exclude`` one)."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not _same(p, exclude))


def check_suffix(suffix: str) -> None:
    """Refuse a ``--suffix`` that would put outputs outside ``-o`` (a path separator) or cannot be a name."""
    bad = [c for c in ("/", "\\", os.sep, os.altsep or "/", "\0") if c in suffix]
    if bad:
        raise ConfigError(
            f"--suffix {suffix!r}: holds {bad[0]!r}; it is appended to file names and cannot hold path "
            "separators (outputs stay inside --output)"
        )


# --------------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class Job:
    """One input file and the output it gives."""

    src: Path
    dst: Path


@dataclass
class Plan:
    """What a run will do: ``jobs`` to run, ``skipped`` (output exists, ``--skip-existing``)."""

    jobs: list[Job]
    skipped: list[Job] = field(default_factory=list)


def output_path(src: Path, root: Path | None, out_dir: Path, suffix: str, fmt: str = "png") -> Path:
    """``out_dir/<path of src under root>/<stem><suffix>.<ext>`` (``root`` None: a single file;
    ``ext`` of ``fmt``, :func:`~.data.imageio.output_format`)."""
    rel = src.relative_to(root) if root is not None else Path(src.name)
    return out_dir / rel.parent / f"{rel.stem}{suffix}{imageio.FORMAT_SUFFIX[imageio.output_format(fmt, src)]}"


def _listing(items: Sequence[str], first: int = 3) -> str:
    shown = ", ".join(items[:first])
    return shown if len(items) <= first else f"{shown} and {len(items) - first} more"


def plan_outputs(
    inputs: Sequence[Path],
    root: Path | None,
    out_dir: Path,
    suffix: str = "",
    *,
    overwrite: bool = False,
    skip_existing: bool = False,
    fmt: str = "png",
) -> Plan:
    """Map every input to its output and refuse (:class:`ConfigError`, one line) what would lose a file.

    Refused: an output that would replace any input (never allowed; same
    resolved path, or an existing output that is the same file as an input:
    a link, or another spelling on a case-insensitive filesystem), two inputs
    giving one output (names compared ignoring case, as macOS and Windows
    do), an output path that is a folder or lies under a file, and outputs
    that exist already unless ``overwrite`` (replace them) or
    ``skip_existing`` (leave them, skip their inputs).
    """
    jobs = [Job(src, output_path(src, root, out_dir, suffix, fmt)) for src in inputs]
    outside = [j for j in jobs if not _inside(j.dst, out_dir)]
    if outside:
        raise ConfigError(
            f"{len(outside)} output(s) would be written outside --output {out_dir}: "
            f"{_listing([str(j.dst) for j in outside])}"
        )

    def key(p: Path) -> str:
        return os.path.normcase(str(p.resolve()))

    def file_id(p: Path) -> tuple[int, int] | None:
        try:
            st = p.stat()
        except OSError:
            return None
        return st.st_dev, st.st_ino

    input_keys = {key(s) for s in inputs}
    input_ids = {file_id(s) for s in inputs} - {None}
    clobber = [j for j in jobs if key(j.dst) in input_keys or (os.path.lexists(j.dst) and file_id(j.dst) in input_ids)]
    if clobber:
        raise ConfigError(
            f"{len(clobber)} output(s) would replace input files: "
            f"{_listing([f'{j.dst} (from {j.src})' for j in clobber])}; "
            "inputs are never overwritten: use another --output folder or a --suffix"
        )
    by_dst: dict[str, list[Job]] = defaultdict(list)
    for j in jobs:
        by_dst[key(j.dst).casefold()].append(j)
    clashes = [group for group in by_dst.values() if len(group) > 1]
    if clashes:
        raise ConfigError(
            f"{len(clashes)} output name(s) would be written by several inputs: "
            f"{_listing([f'{g[0].dst} (from ' + ' + '.join(str(j.src) for j in g) + ')' for g in clashes])}; "
            "rename one of each, or run them into separate --output folders"
        )
    blocked = [j for j in jobs if j.dst.is_dir() or any(p.exists() and not p.is_dir() for p in _parents_below(j.dst, out_dir))]
    if blocked:
        raise ConfigError(
            f"{len(blocked)} output(s) cannot be created (a folder of that name, or a file where a folder "
            f"is needed): {_listing([str(j.dst) for j in blocked])}"
        )
    existing = [j for j in jobs if os.path.lexists(j.dst)]
    if existing and not (overwrite or skip_existing):
        raise ConfigError(
            f"{len(existing)} output file(s) exist already: {_listing([str(j.dst) for j in existing])}; "
            "add --overwrite to replace them or --skip-existing to keep them and skip their inputs"
        )
    if skip_existing:
        done = set(existing)
        return Plan([j for j in jobs if j not in done], existing)
    return Plan(jobs)


def _inside(dst: Path, out_dir: Path) -> bool:
    """Whether ``dst`` lies under ``out_dir`` once ``..`` parts are resolved (as written, no links)."""
    top = os.path.normpath(os.path.abspath(out_dir))
    return os.path.commonpath([top, os.path.normpath(os.path.abspath(dst))]) == top and dst.name not in ("", ".", "..")


def _parents_below(dst: Path, out_dir: Path) -> Iterable[Path]:
    """The folders between ``out_dir`` (included) and ``dst``."""
    for parent in dst.parents:
        yield parent
        if parent == out_dir:
            return


def prepare_output(out_dir: Path) -> list[Path]:
    """Create ``out_dir`` and check that a file can be created in it; return the folders created
    (deepest first), for :func:`remove_if_empty` when the run stops before writing anything."""
    created = [p for p in [out_dir, *out_dir.parents] if not os.path.lexists(p)]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".basicsr-infer-", suffix=".tmp", dir=out_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        remove_if_empty(created)
        raise ConfigError(f"--output: cannot write to {out_dir} ({exc.strerror or exc})") from None
    return created


def remove_if_empty(folders: Iterable[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


# --------------------------------------------------------------------------- running
def in_flag_terms(exc: ConfigError) -> ConfigError:
    """An option error in this command's flag names: its key path (``inference:tile``) looked up in
    :data:`OPTION_FLAGS`; other errors as they are."""
    key, need = getattr(exc, "key", ""), getattr(exc, "need", "")
    section, _, name = str(key).partition(":")
    flag = OPTION_FLAGS.get(name) if section == "inference" else None
    if not isinstance(exc, OptionError) or flag is None or not need:
        return exc
    allowed = f"{need} (or no {flag}: {exc.none_means})" if exc.none_means else need
    return ConfigError(f"{flag}: {allowed}, got {show(exc.value)}")


def process(upscaler: Upscaler, job: Job, overwrite: bool = False) -> str | None:
    """Upscale one file and write its PNG; ``None`` when the output is on disk, else why not."""
    try:
        upscaler.write_file(job.src, job.dst, overwrite=overwrite)
    except FileExistsError:
        return f"{job.dst}: appeared while this run was working; not overwritten (use --overwrite)"
    except PluginError as exc:
        return str(exc)
    except (RuntimeError, OSError, MemoryError) as exc:  # e.g. out of memory: say which file, keep going
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{job.src}: {type(exc).__name__}: {first}"
    if not job.dst.is_file():
        return f"{job.dst}: not found after writing"
    return None


def _summary(
    written: int, plan: Plan, failed: Sequence[str], out_dir: Path, skip_existing: bool, not_read: int = 0
) -> str:
    parts = [f"{written} written"]
    if skip_existing:
        parts.append(f"{len(plan.skipped)} skipped (exists)")
    if not_read:
        parts.append(f"{not_read} not read (listed below)")
    parts.append(f"{len(failed)} failed")
    return f"basicsr infer: {', '.join(parts)} → {out_dir}"


#: How many skipped inputs are named one per line (the rest are counted).
_SHOWN_SKIPPED = 20


def _print_skipped(skipped: Sequence[Skipped]) -> None:
    ignored = [s for s in skipped if not s.failed]
    if not ignored:
        return
    print(f"basicsr infer: {len(ignored)} input(s) not read:", file=sys.stderr)
    for item in ignored[:_SHOWN_SKIPPED]:
        print(f"  {item.path}: {item.why}", file=sys.stderr)
    if len(ignored) > _SHOWN_SKIPPED:
        print(f"  ... and {len(ignored) - _SHOWN_SKIPPED} more", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors: before torch loads
    import torch
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..upscaler import DEFAULT_ALPHA, Upscaler, check_output_options

    if args.alpha is None:
        args.alpha = DEFAULT_ALPHA
    progress = not args.quiet and sys.stderr.isatty()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s: %(message)s")  # fmt: skip
    try:
        options = InferenceOptions(
            tile=args.tile, tile_overlap=args.tile_overlap, tile_stats=args.tile_stats, acs_padding=args.acs_padding,
            precision=args.precision, progress=progress, backend=args.backend, mode=args.mode,
        )  # fmt: skip
    except ConfigError as exc:
        raise in_flag_terms(exc) from None
    if args.device is None:
        args.device = default_device(args.backend)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ConfigError(f"--device: unknown device '{args.device}'") from None
    if args.backend != "torch" and device.type != "cpu":
        raise ConfigError(f"--device {args.device}: the {args.backend} backend runs on the cpu (drop --device, or --backend torch)")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {args.device}: not supported (cpu, cuda or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {args.device}: there are {torch.cuda.device_count()} CUDA device(s) (cuda:0 ..)")
    imageio.max_pixels()  # a bad IMDN_MAX_PIXELS stops here, not at every image
    check_output_options(args.outscale, args.alpha, args.format, args.quality)

    src, out_dir = Path(args.input), Path(args.output)
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise ConfigError(f"--output: {out_dir} is a file; give a folder (it is created if needed)")
    check_suffix(args.suffix)
    root = src if src.is_dir() else None
    not_read: list[Skipped] = []
    inputs = list_inputs(src, args.recursive, exclude=out_dir, skipped=not_read)
    skipped_dirs = subfolders(src, exclude=out_dir) if root is not None and not args.recursive else []
    if not inputs:
        hint = f" ({len(skipped_dirs)} subfolder(s): use --recursive)" if skipped_dirs else ""
        found = f"; {_listing([f'{s.path}: {s.why}' for s in not_read])}" if not_read else ""
        raise ConfigError(f"--input: no image files in {src}{hint}{found}")
    plan = plan_outputs(
        inputs, root, out_dir, args.suffix, overwrite=args.overwrite, skip_existing=args.skip_existing, fmt=args.format
    )
    if skipped_dirs:
        print(f"basicsr infer: {len(skipped_dirs)} subfolder(s) of {src} skipped (use --recursive)", file=sys.stderr)
    unreadable = [f"{s.path}: {s.why}" for s in not_read if s.failed]
    ignored = len(not_read) - len(unreadable)
    if not plan.jobs:
        print(_summary(0, plan, unreadable, out_dir, args.skip_existing, ignored), file=sys.stderr)
        _print_skipped(not_read)
        return _report_failed(unreadable)

    created = prepare_output(out_dir)
    try:
        upscaler = Upscaler(
            args.weights, args.scale, options, device, args.param_key,
            outscale=args.outscale, alpha=args.alpha, format=args.format, quality=args.quality,
        )  # fmt: skip
    except ConfigError as exc:
        remove_if_empty(created)
        raise in_flag_terms(exc) from None
    except BaseException:
        remove_if_empty(created)
        raise

    written, failed = 0, list(unreadable)
    try:
        with sigterm_as_interrupt(), logging_redirect_tqdm(), tqdm(
            plan.jobs, desc="images", unit="image", disable=not progress
        ) as bar:
            for job in bar:
                bar.set_postfix_str(job.src.name)
                problem = process(upscaler, job, args.overwrite)
                if problem is None:
                    written += 1
                    logger.info("%s -> %s", job.src, job.dst)
                else:
                    failed.append(problem)
                    logger.error("%s", problem)
    except KeyboardInterrupt:
        print(_summary(written, plan, failed, out_dir, args.skip_existing, ignored) + " (interrupted)", file=sys.stderr)
        raise
    print(_summary(written, plan, failed, out_dir, args.skip_existing, ignored), file=sys.stderr)
    _print_skipped(not_read)
    return _report_failed(failed)


def _report_failed(failed: Sequence[str]) -> int:
    """List the failures; the exit status: 1 if any, else 0."""
    if not failed:
        return 0
    print(f"basicsr infer: {len(failed)} failed:", file=sys.stderr)
    for msg in failed:
        print(f"  {msg}", file=sys.stderr)
    return 1
