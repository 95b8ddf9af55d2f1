"""``photosense export DEST``: copy (or hard-link) picks or the top photos to a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "export"
HELP = "copy or hard-link picks, or the top N / top %% by an attribute, to a folder"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("dest", metavar="DEST", help="destination folder (created if needed)")
    p.add_argument("--flag", choices=["pick", "reject", "none", "any"], default=None,
                   help="which photos (default: pick; 'any' with --top ranks the whole library)")
    top = p.add_mutually_exclusive_group()
    top.add_argument("--top", type=int, metavar="N", help="only the best N ...")
    top.add_argument("--top-percent", type=float, metavar="P", help="only the best P %% ...")
    p.add_argument("--by", metavar="ATTR", help="... ranked by this attribute or check")
    p.add_argument("--link", action="store_true",
                   help="hard-link instead of copying (copies where links are impossible)")


def run(args) -> int:
    from photosense.cli import TerminalProgress, display_path, info, open_library
    from photosense.curation.export import ExportOptions, export_photos

    flag = args.flag
    if flag is None:
        flag = "any" if (args.top or args.top_percent) and args.by else "pick"
    options = ExportOptions(dest=Path(args.dest), flag=None if flag == "any" else flag,
                            top=args.top, top_percent=args.top_percent, by=args.by, link=args.link)
    with open_library(args) as lib:
        report = export_photos(lib, options, progress=TerminalProgress("export"))
    for path, reason in report.skipped:
        info(f"  skipped {display_path(path)}: {reason}")
    for path, message in report.errors:
        info(f"  failed {display_path(path)}: {message}")
    info(report.summary())
    return 1 if report.errors else 0
