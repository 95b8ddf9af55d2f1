"""``photosense taste fit|status``: the ``my taste`` attribute learned from picks and rejects."""

from __future__ import annotations

import argparse

NAME = "taste"
HELP = "learn 'my taste' from your picks and rejects (fit), or show how well it predicts them (status)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fit", "status"],
                   help="fit: (re)fit now; status: flags counted and cross-validated accuracy")


def run(args) -> int:
    from photosense.cli import info, open_library
    from photosense.scoring import taste

    with open_library(args) as lib:
        if args.action == "fit":
            taste.fit(lib)
            info(f"fitted '{taste.TASTE_ATTRIBUTE}': sort or filter by it like any attribute")
        print(taste.taste_status(lib).describe())
    return 0
