"""``photosense xmp``: XMP sidecars that Lightroom, darktable, digiKam and Capture One read.

``xmp write`` writes (merges) sidecars, ``xmp read`` imports existing ones, ``xmp auto``,
``xmp style`` and ``xmp conflict`` show or change the library's sidecar settings.
"""

from __future__ import annotations

import argparse

NAME = "xmp"
HELP = "write or read XMP sidecars (ratings, labels, picks/rejects, scores) for other photo apps"

_STYLES = ("ext", "stem")
_POLICIES = ("library", "sidecar")


def configure(p: argparse.ArgumentParser) -> None:
    from photosense.cli import _common_options

    common = _common_options(subcommand=True)
    sub = p.add_subparsers(dest="xmp_command", metavar="ACTION", required=True)
    w = sub.add_parser("write", parents=[common],
                       help="write rating, label, pick/reject and scores into sidecars "
                            "(merged: other apps' fields are kept)")
    w.add_argument("--flag", choices=["pick", "reject", "none", "any"], default="any",
                   help="only photos with this flag (default: any)")
    w.add_argument("--style", choices=_STYLES,
                   help="sidecar names: ext = photo.jpg.xmp (darktable, digiKam), "
                        "stem = photo.xmp (Lightroom, Capture One); default: the library's")
    r = sub.add_parser("read", parents=[common],
                       help="import rating, label and pick/reject from existing sidecars")
    r.add_argument("--conflict", choices=_POLICIES,
                   help="who wins for photos already flagged, rated or labelled "
                        "(default: the library's setting)")
    a = sub.add_parser("auto", parents=[common],
                       help="write sidecars on every change: on or off (no value: show)")
    a.add_argument("value", nargs="?", choices=["on", "off"])
    s = sub.add_parser("style", parents=[common],
                       help="sidecar names: ext (photo.jpg.xmp) or stem (photo.xmp) (no value: show)")
    s.add_argument("value", nargs="?", choices=_STYLES)
    c = sub.add_parser("conflict", parents=[common],
                       help="on import, who wins for photos already flagged, rated or labelled: "
                            "library or sidecar (no value: show)")
    c.add_argument("value", nargs="?", choices=_POLICIES)


def run(args) -> int:
    from photosense.cli import (
        EXIT_ERROR,
        display_path,
        info,
        open_library,
        print_file_report,
    )
    from photosense.commands import run_as_job
    from photosense.curation import xmp
    from photosense.fsutil import fsync_batch
    from photosense.library import PhotoQuery

    with open_library(args) as lib:
        if args.xmp_command == "write":
            flag = None if args.flag == "any" else args.flag
            ids = lib.query_ids(PhotoQuery(flag=flag, include_missing=False))

            def write(ctl):
                with fsync_batch():  # each folder's renames synced once, at the end
                    return xmp.write_sidecars(lib, ids, progress=ctl.scan_progress, style=args.style,
                                              cancel=ctl.cancel)

            report = run_as_job(write, "Writing XMP sidecars", "xmp", bar="xmp")
            return print_file_report(report)
        if args.xmp_command == "read":
            paths = [r.path for r in lib.rows(lib.query_ids(PhotoQuery(include_missing=False)))]
            errors: list[tuple[str, str]] = []
            n = run_as_job(lambda ctl: xmp.import_sidecars(lib, paths, conflict=args.conflict, errors=errors,
                                                           progress=ctl.scan_progress, cancel=ctl.cancel),
                           "Reading XMP sidecars", "xmp-import", bar="xmp")
            for path, message in errors:
                info(f"  skipped {display_path(path)}: {message}")
            info(f"{n} photo{'s' if n != 1 else ''} updated from sidecars"
                 + (f", {len(errors)} sidecar{'s' if len(errors) != 1 else ''} skipped"
                    if errors else ""))
            return EXIT_ERROR if errors else 0
        key, current = {
            "auto": (xmp.SETTING_AUTO_WRITE, lambda: "on" if lib.get_setting(
                xmp.SETTING_AUTO_WRITE, False) else "off"),
            "style": (xmp.SETTING_STYLE, lambda: xmp.sidecar_style(lib)),
            "conflict": (xmp.SETTING_CONFLICT, lambda: xmp.conflict_policy(lib)),
        }[args.xmp_command]
        if args.value is not None:
            value = args.value == "on" if args.xmp_command == "auto" else args.value
            lib.set_setting(key, value)
        print(f"{args.xmp_command}: {current()}")
    return 0
