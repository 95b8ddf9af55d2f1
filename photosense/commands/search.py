"""``photosense search TEXT``: photos ranked by similarity to a description (stored features)."""

from __future__ import annotations

import argparse

NAME = "search"
HELP = "rank photos by similarity to a text, e.g. \"dog on the beach\" (no image re-encoded)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", metavar="TEXT", help="what to look for, as typed")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="how many photos (default 20; 0 = all)")
    p.add_argument("--flag", choices=["pick", "reject", "none", "flagged"],
                   help="only photos with this flag")
    p.add_argument("--min-rating", type=int, default=0, metavar="N")
    p.add_argument("--format", choices=["table", "json"], default="table")


def run(args) -> int:
    import json
    import sys

    from photosense.cli import display_path, info, open_library
    from photosense.errors import PhotosenseError
    from photosense.library import PhotoQuery
    from photosense.pipeline import load_engine_config
    from photosense.scoring.clipiqa import ClipIQAEngine
    from photosense.scoring.search import search

    if args.limit < 0:
        raise PhotosenseError("--limit must be at least 0")
    with open_library(args) as lib:
        if lib.active_model() is None:
            raise PhotosenseError("nothing scored yet: run 'photosense score' first")
        query = None
        if args.flag or args.min_rating:
            query = PhotoQuery(flag=args.flag, min_rating=args.min_rating)
        engine = ClipIQAEngine(load_engine_config(lib))
        hits = search(lib, engine, args.text, query, limit=args.limit or None, keep_in_memory=False)
        rows = {r.id: r for r in lib.rows([pid for pid, _ in hits])}
    if args.format == "json":
        json.dump([{"path": display_path(rows[pid].path), "similarity": sim,
                    "flag": rows[pid].flag_name, "rating": rows[pid].rating}
                   for pid, sim in hits if pid in rows], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        flags = {"pick": "P", "reject": "X", "none": " "}
        print(f"{'flag':4s} {'similarity':>10s}  path")
        for pid, sim in hits:
            if pid in rows:
                print(f"{flags[rows[pid].flag_name]:4s} {sim:10.4f}  {display_path(rows[pid].path)}")
    info(f"{len(hits)} photos")
    return 0
