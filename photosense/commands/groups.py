"""``photosense groups``: bursts and exact duplicates, each with its best photo marked."""

from __future__ import annotations

import argparse

NAME = "groups"
HELP = "list bursts and exact duplicates with the best photo of each; --apply picks it, rejects the rest"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", type=float, default=3.0, metavar="S",
                   help="most seconds between consecutive shots of a burst (default 3)")
    p.add_argument("--threshold", type=float, default=0.92, metavar="T",
                   help="least cosine similarity of consecutive shots' image features (default 0.92)")
    p.add_argument("--by", metavar="ATTR",
                   help="attribute or check that decides the best photo "
                        "(default: quality when scored, else sharpness)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--apply", action="store_true",
                   help="flag the best photo of every group pick and the others reject")


def run(args) -> int:
    import json
    import sys

    from photosense.cli import display_path, info, open_library
    from photosense.curation.groups import best_of_groups, find_groups, pick_best_of_groups
    from photosense.errors import PhotosenseError
    from photosense.library import CHECK_NAMES
    from photosense.scoring.prompts import normalize_attribute_name

    if args.window < 0:
        raise PhotosenseError("--window must be at least 0 seconds")
    if not -1.0 <= args.threshold <= 1.0:
        raise PhotosenseError("--threshold is a cosine similarity, between -1 and 1")
    with open_library(args) as lib:
        scored = lib.active_model() is not None
        by = normalize_attribute_name(args.by or ("quality" if scored else "sharpness"))
        if not scored:
            info("nothing scored yet: only exact duplicates are found ('photosense score' finds bursts)")
        groups = find_groups(lib, window_s=args.window, threshold=args.threshold)
        bests = best_of_groups(groups, lib, by)
        rows = {r.id: r for r in lib.rows([i for g in groups for i in g.ids])}
        if args.apply and groups:
            pick_best_of_groups(lib, groups, by)

    def value(pid):
        r = rows[pid]
        return r.checks.get(by) if by in CHECK_NAMES else r.scores.get(by)

    if args.format == "json":
        out = [{"kind": g.kind, "best": display_path(rows[best].path),
                "members": [{"path": display_path(rows[i].path), by: value(i), "best": i == best,
                             "capture_time": (rows[i].capture_time.isoformat()
                                              if rows[i].capture_time else None)}
                            for i in g.ids]}
               for g, best in zip(groups, bests)]
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for n, (g, best) in enumerate(zip(groups, bests), 1):
            print(f"group {n}: {g.kind}, {len(g.ids)} photos")
            for i in g.ids:
                v = value(i)
                shown = "-" if v is None else f"{v:.3f}"
                print(f"  {'*' if i == best else ' '} {shown:>8s}  {display_path(rows[i].path)}")
    members = sum(len(g.ids) for g in groups)
    info(f"{len(groups)} groups, {members} photos; best by {by} marked *")
    if args.apply and groups:
        info(f"picked {len(groups)}, rejected {members - len(groups)} photos")
    return 0
