#!/usr/bin/env python
"""Cut DIV2K (or any folder in its layout) into sub-images and store them as BasicSR LMDBs.

Thin command-line front end of :mod:`imdn_plugin.data.div2k`; see ``--help``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DESCRIPTION = """\
Prepare DIV2K training data for BasicSR's PairedImageDataset (io_backend: lmdb).

Reads   INPUT/DIV2K_train_HR/*.png                      (HR images, required)
        INPUT/DIV2K_train_LR_bicubic/X{s}/{name}x{s}.png (official LR, optional
        per scale: when X{s}/ is absent, LR images are made from the HR ones by
        MATLAB-compatible bicubic downscaling, basicsr's matlab imresize)
Writes  OUT/DIV2K_train_HR_sub.lmdb                     (HR sub-images)
        OUT/DIV2K_train_LR_bicubic_X{s}_sub.lmdb        (one per scale)

HR images are mod-cropped to a multiple of lcm(2, 3, 4, scales) (12 for the
usual scales; DIV2K loses nothing), then cut into CROP x CROP sub-images every
STEP pixels (LR: CROP/s every STEP/s at the same places).  --thresh-size 0
adds an edge-aligned last row/column of crops whenever any strip is left, so
the whole image is covered.  Sub-images are keyed 0001_s001, 0001_s002, ...
identically in all LMDBs.

Exit status: 0 done, 2 refused before any work (bad option or input, an
LMDB exists), 1 failed during the work (full disk, unreadable image; the
finished LMDBs are kept), 130 interrupted.

Each LMDB is written to NAME.lmdb.tmp-<pid> and renamed into place only once
complete and verified, so rerunning is safe: finished LMDBs made with the same
settings are skipped, leftovers of interrupted runs are removed, and
--overwrite rebuilds.  Names are the folder names + _sub.lmdb / _X{s}_sub.lmdb;
change the folder names with --hr-subdir / --lr-subdir.
"""

EPILOG = """\
example:
  %(prog)s --input datasets/DIV2K --scales 2 3 4 --crop-size 480 --step 240

then in a BasicSR option file (x4):
  dataroot_gt: datasets/DIV2K/DIV2K_train_HR_sub.lmdb
  dataroot_lq: datasets/DIV2K/DIV2K_train_LR_bicubic_X4_sub.lmdb
  io_backend: {type: lmdb}
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--input", default="datasets/DIV2K", metavar="DIR",
                   help="folder holding DIV2K_train_HR/ and optionally DIV2K_train_LR_bicubic/ (default: %(default)s)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the .lmdb folders go (default: the --input folder)")
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4], metavar="S",
                   help="scale factors to prepare LR LMDBs for (default: 2 3 4)")
    p.add_argument("--crop-size", type=int, default=480, metavar="N",
                   help="HR sub-image size; divisible by every scale (default: %(default)s)")
    p.add_argument("--step", type=int, default=240, metavar="N",
                   help="HR sub-image stride; divisible by every scale (default: %(default)s)")
    p.add_argument("--thresh-size", type=int, default=0, metavar="N",
                   help="leftover strips at the bottom/right wider than N pixels get an edge-aligned "
                        "crop; thinner ones are dropped (default: %(default)s = cover everything)")
    p.add_argument("--compress-level", type=int, default=1, choices=range(10), metavar="0-9",
                   help="PNG compression level of the stored sub-images (default: %(default)s, as BasicSR)")
    p.add_argument("--hr-subdir", default="DIV2K_train_HR", metavar="NAME",
                   help="HR folder name inside --input (default: %(default)s)")
    p.add_argument("--lr-subdir", default="DIV2K_train_LR_bicubic", metavar="NAME",
                   help="LR folder name inside --input, with X{s}/ subfolders (default: %(default)s)")
    p.add_argument("--n-thread", type=int, default=1, metavar="N",
                   help="worker processes for reading/resizing/encoding (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="rebuild LMDBs that already exist")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors, no progress bars")
    return p


def _failure(exc: Exception) -> tuple[int, str]:
    """Exit status and one line for an error of :func:`prepare_div2k`.

    2: refused before any work (a bad option or input folder, an LMDB that
    exists: plain ``ValueError`` / ``FileExistsError``).  1: failed while
    reading images or writing an LMDB (a full disk, an unreadable image):
    the LMDBs finished before are kept, the unfinished one is removed.
    """
    from imdn_plugin.errors import PluginError

    if isinstance(exc, FileExistsError) or (isinstance(exc, ValueError) and not isinstance(exc, PluginError)):
        return 2, str(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        why = f"{where}{exc.strerror or exc}"
    else:
        why = " ".join(str(exc).split())[:300] or type(exc).__name__
    return 1, f"{why}; stopped: the LMDBs finished before are kept, the unfinished one was removed"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = Path(sys.argv[0]).name if argv is None else "prepare_div2k.py"
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s: %(message)s")
    if args.n_thread < 1:
        print(f"{prog}: error: --n-thread must be >= 1", file=sys.stderr)
        return 2
    try:
        import imdn_plugin
    except ImportError:  # running from a checkout without installing it
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import imdn_plugin  # noqa: F401
    from imdn_plugin.data.div2k import prepare_div2k

    try:
        out = prepare_div2k(
            args.input,
            args.out,
            scales=args.scales,
            hr_subdir=args.hr_subdir,
            lr_subdir=args.lr_subdir,
            crop_size=args.crop_size,
            step=args.step,
            thresh_size=args.thresh_size,
            compress_level=args.compress_level,
            overwrite=args.overwrite,
            n_thread=args.n_thread,
            progress=not args.quiet,
        )
    except Exception as exc:  # noqa: BLE001 (every failure during the work: one line, exit 1)
        code, line = _failure(exc)
        print(f"{prog}: error: {line}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing half-written was left in place", file=sys.stderr)
        return 130
    for name, path in out.items():
        logging.info("%s: %s", name, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
