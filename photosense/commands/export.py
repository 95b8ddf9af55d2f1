"""``photosense export [DEST] [--report FILE]``: copy (or hard-link) picks or the top photos to a
folder, and/or write a CSV/JSON report of every photo."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "export"
HELP = "copy or hard-link picks, or the top N / top %% by an attribute, to a folder; or write a report"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("dest", metavar="DEST", nargs="?", default=None,
                   help="destination folder (created if needed); optional with --report")
    p.add_argument("--flag", choices=["pick", "reject", "none", "any"], default=None,
                   help="which photos (default: pick; 'any' with --top ranks the whole library)")
    top = p.add_mutually_exclusive_group()
    top.add_argument("--top", type=int, metavar="N", help="only the best N ...")
    top.add_argument("--top-percent", type=float, metavar="P", help="only the best P %% ...")
    p.add_argument("--by", metavar="ATTR", help="... ranked by this attribute or check")
    p.add_argument("--link", action="store_true",
                   help="hard-link instead of copying (copies where links are impossible)")
    p.add_argument("--report", metavar="FILE",
                   help="also write every photo's path, flag, rating, label, scores and checks to "
                        "FILE (.csv or .json); without DEST only the report is written")


def run(args) -> int:
    from photosense.cli import display_path, info, open_library
    from photosense.errors import PhotosenseError

    if args.dest is None and not args.report:
        raise PhotosenseError("say what to export: a destination folder DEST, --report FILE, or both")
    if args.dest is None:
        chosen = [name for name, value in (("--flag", args.flag), ("--top", args.top),
                                           ("--top-percent", args.top_percent), ("--by", args.by),
                                           ("--link", args.link)) if value]
        if chosen:
            raise PhotosenseError(f"{', '.join(chosen)} choose photos to copy: give a destination "
                                  "folder DEST (the report always lists every photo)")
    if args.report:
        from photosense.curation.report import report_format

        report_format(args.report)  # a bad extension fails before any copying
    from photosense.commands import run_as_job

    code = 0
    with open_library(args) as lib:
        if args.dest is not None:
            code = _export(lib, args)
        if args.report:
            from photosense.curation.report import write_report

            n = run_as_job(lambda ctl: write_report(lib, args.report, progress=ctl.scan_progress,
                                                    cancel=ctl.cancel),
                           "Writing the report", "report", bar="report")
            info(f"report of {n} photo{'s' if n != 1 else ''} written to {display_path(args.report)}")
    return code


def _export(lib, args) -> int:
    from photosense.cli import print_file_report
    from photosense.commands import run_as_job
    from photosense.curation.export import ExportOptions, export_photos

    flag = args.flag
    if flag is None:
        flag = "any" if (args.top or args.top_percent) and args.by else "pick"
    options = ExportOptions(dest=Path(args.dest), flag=None if flag == "any" else flag,
                            top=args.top, top_percent=args.top_percent, by=args.by, link=args.link)
    report = run_as_job(lambda ctl: export_photos(lib, options, progress=ctl.scan_progress, cancel=ctl.cancel),
                        "Exporting", "export", bar="export")
    return print_file_report(report)
