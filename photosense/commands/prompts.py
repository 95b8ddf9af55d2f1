"""``photosense prompts``: learn prompt context (CLIP-IQA+) and use it as an attribute.

- ``prompts train DATASET.csv --root DIR``: learn from a MOS-labelled dataset (image file, MOS;
  MOS scaled to [0, 1] by its range); images are encoded once, in a temporary library (or
  ``--library``), then only the text tower trains.
- ``prompts train --from-flags``: learn the photographer's taste from the library's picks (1)
  and rejects (0), on the stored features of its active model; nothing is re-encoded.
- ``prompts use FILE --name NAME``: an attribute scored with the learned prompts in FILE (a
  photosense file, or a plain (16, width) tensor such as the official CLIP-IQA+ release).
- ``prompts list``: the learned prompt files in the data folder.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

NAME = "prompts"
HELP = "learn prompts from MOS or your picks/rejects (CLIP-IQA+), and use them as an attribute"


def configure(p: argparse.ArgumentParser) -> None:
    from photosense.cli import _add_engine_options, _common_options

    common = _common_options(subcommand=True)
    sub = p.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)

    t = sub.add_parser("train", parents=[common], help="learn a prompt context (CLIP frozen)")
    t.add_argument("dataset", metavar="DATASET.csv", nargs="?", help="CSV of image file and MOS")
    t.add_argument("--root", metavar="DIR", help="folder the dataset's image files are relative to")
    t.add_argument("--from-flags", action="store_true",
                   help="learn from the library's picks (good) and rejects (bad) instead")
    t.add_argument("--epochs", type=int, metavar="N",
                   help="passes over the data (default: enough for about 300 SGD steps)")
    t.add_argument("--lr", type=float, default=0.002, help="SGD learning rate (default 0.002, the paper's)")
    t.add_argument("--train-batch", type=int, default=64, metavar="N", help="images per SGD step (default 64)")
    t.add_argument("--pair", nargs=2, metavar=("POSITIVE", "NEGATIVE"),
                   help="the two class texts (default: 'Good photo.' 'Bad photo.')")
    t.add_argument("--name", help="name of the result (default: the dataset's name, or 'picks')")
    t.add_argument("--out", metavar="FILE", help="where to save (default: DATA_DIR/prompts/NAME.safetensors)")
    _add_engine_options(t)

    u = sub.add_parser("use", parents=[common], help="add (or update) an attribute scored by learned prompts")
    u.add_argument("file", metavar="FILE", help="learned prompts (.safetensors, or a .pt/.pth tensor)")
    u.add_argument("--name", required=True, help="attribute name")
    _add_engine_options(u)

    sub.add_parser("list", parents=[common], help="learned prompt files in the data folder")


def run(args) -> int:
    return {"train": _train, "use": _use, "list": _list}[args.prompts_command](args)


def _file_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip(".-")
    return cleaned or "prompts"


# --------------------------------------------------------------------------- train


def _train(args) -> int:
    from photosense.cli import display_path, info
    from photosense.errors import PhotosenseError
    from photosense.scoring.prompts import make_prompt

    if args.from_flags == bool(args.dataset):
        raise PhotosenseError("give a dataset CSV (image file, MOS) with --root DIR, or --from-flags")
    if args.train_batch < 1:
        raise PhotosenseError("--train-batch must be at least 1")
    if args.lr <= 0:
        raise PhotosenseError("--lr must be positive")
    try:
        classnames = tuple(make_prompt(t) for t in args.pair) if args.pair else None
    except ValueError as exc:
        raise PhotosenseError(str(exc)) from exc
    if args.from_flags:
        features, targets, engine, source = _flag_data(args)
        name = args.name or "picks"
    else:
        features, targets, engine, source = _dataset_data(args)
        name = args.name or os.path.splitext(os.path.basename(args.dataset))[0]
    from photosense.cli import TerminalProgress
    from photosense.commands import run_as_job
    from photosense.jobs import JobCancelled
    from photosense.scoring import coop

    bar = TerminalProgress("train")
    kwargs = {"classnames": classnames} if classnames else {}

    def train(ctl):
        def progress(epoch: int, epochs: int, loss: float) -> None:
            ctl.progress((epoch, epochs))
            bar(epoch, epochs, f"loss {loss:.4f}")

        trained = coop.train_prompts(engine, features, targets, epochs=args.epochs, lr=args.lr,
                                     batch_size=args.train_batch, progress=progress, cancel=ctl.cancel,
                                     **kwargs)
        if trained.cancelled:
            raise JobCancelled()  # nothing half-trained is saved
        return trained

    result = run_as_job(train, "Training prompts", "prompts")
    result.prompts.info.update({"name": name, "source": source})
    out = args.out or str(coop.prompts_dir() / f"{_file_name(name)}.safetensors")
    saved = coop.save_prompts(out, result.prompts)
    fit = _training_srocc(engine, result.prompts, features, targets)
    info(f"learned from {len(targets)} images ({source}): MSE {result.initial_loss:.4f} -> "
         f"{result.final_loss:.4f} in {result.epochs} epochs ({result.steps} steps); "
         f"SROCC with the labels on the training set {fit:+.3f}")
    print(display_path(str(saved)))
    info(f"use it: photosense prompts use {display_path(str(saved))} --name {_file_name(name).lower()}")
    return 0


def _training_srocc(engine, prompts, features, targets) -> float:
    from photosense.scoring import coop
    from photosense.scoring.maths import attribute_scores
    from photosense.scoring.metrics import srocc

    feats = coop.learned_text_features(engine, prompts)
    return srocc(attribute_scores(features, feats[:1], feats[1:], engine.logit_scale), targets)


def _flag_data(args):
    import numpy as np

    from photosense.cli import _engine_config, open_library
    from photosense.errors import PhotosenseError
    from photosense.library import FLAG_PICK, FLAG_REJECT
    from photosense.scoring.clipiqa import ClipIQAEngine

    with open_library(args) as lib:
        model = lib.active_model()
        if model is None:
            raise PhotosenseError("nothing scored yet: run 'photosense score' first")
        engine = ClipIQAEngine(_engine_config(lib, args))
        engine.load_text()
        if engine.id != model.base:
            raise PhotosenseError(
                f"the library was scored with {model.base}, but the configured model is {engine.id}")
        ids, matrix = lib.feature_matrix(model.id)
        flags = {s.photo_id: s.flag for s in lib.states(ids.tolist())}
    keep = [i for i, pid in enumerate(ids.tolist()) if flags.get(pid) in (FLAG_PICK, FLAG_REJECT)]
    targets = np.array([1.0 if flags[int(ids[i])] == FLAG_PICK else 0.0 for i in keep], dtype=np.float32)
    picks, rejects = int(targets.sum()), int(len(targets) - targets.sum())
    if picks == 0 or rejects == 0:
        raise PhotosenseError(
            f"need scored picks and rejects to learn from (found {picks} pick(s), {rejects} reject(s)): "
            "flag some of each first")
    return matrix[keep], targets, engine, f"{picks} picks, {rejects} rejects"


def _dataset_data(args):
    import numpy as np

    from photosense.cli import display_path, info
    from photosense.commands.bench import read_mos_csv, rows_by_path, score_folder, work_library
    from photosense.errors import PhotosenseError
    from photosense.scoring import coop

    data = read_mos_csv(args.dataset, args.root)
    root = args.root or os.path.dirname(os.path.abspath(args.dataset))
    if data.missing:
        info(f"{len(data.missing)} listed image(s) not found under {display_path(root)}")
    with work_library(args) as lib:
        engine, model = score_folder(lib, root, args)
        ids, matrix = lib.feature_matrix(model.id)
        row_of = {int(pid): i for i, pid in enumerate(ids.tolist())}
        by_path = rows_by_path(lib)
    rows, mos = [], []
    for path, value in data.items:
        row = by_path.get(path) or by_path.get(os.path.realpath(path))
        if row is not None and row.id in row_of:
            rows.append(row_of[row.id])
            mos.append(value)
    if len(rows) < 2:
        raise PhotosenseError("fewer than two dataset images could be encoded: nothing to learn from")
    if len(rows) < len(data.items):
        info(f"{len(data.items) - len(rows)} listed image(s) could not be read; left out")
    return matrix[rows], coop.normalise_mos(mos).astype(np.float32), engine, \
        f"MOS of {os.path.basename(args.dataset)}"


# --------------------------------------------------------------------------- use / list


def _use(args) -> int:
    from photosense.cli import _engine_config, display_path, info, open_library
    from photosense.errors import PhotosenseError, WeightsUnavailable
    from photosense.pipeline import rescore_attributes
    from photosense.scoring import coop
    from photosense.scoring.clipiqa import ClipIQAEngine, file_digest
    from photosense.scoring.prompts import AntonymPair, AttributeSpec

    path = os.path.abspath(os.path.expanduser(args.file))
    learned = coop.load_prompts(path)
    try:
        spec = AttributeSpec(args.name, (AntonymPair(*learned.classnames),))
    except ValueError as exc:
        raise PhotosenseError(str(exc)) from exc
    extra = {"file": path, "digest": file_digest(Path(path)),
             "n_ctx": learned.n_ctx, "width": learned.width, "classnames": list(learned.classnames),
             "model": learned.model}
    with open_library(args) as lib:
        model = lib.active_model()
        engine = None
        if model is not None:
            engine = ClipIQAEngine(_engine_config(lib, args))
            try:
                engine.load_text()
            except WeightsUnavailable as exc:
                info(f"photosense: {exc}")
                engine = None
            if engine is not None and engine.id != model.base:
                raise PhotosenseError(
                    f"the library was scored with {model.base}, but the configured model is {engine.id}")
            if engine is not None:
                coop.check_compatible(learned, engine, source=f"the learned prompts in {os.path.basename(path)}")
        existing = {a.name: a for a in lib.attributes()}.get(spec.name)
        if existing is not None and existing.kind != "learned":
            raise PhotosenseError(f"attribute '{spec.name}' already exists (and is not a learned one)")
        if existing is not None:
            attr = lib.update_attribute(spec.name, spec, extra=extra)
            info(f"updated attribute {attr.name}: learned prompts from {display_path(path)}")
        else:
            attr = lib.add_attribute(spec, kind="learned", extra=extra)
            info(f"added attribute {attr.name}: learned prompts from {display_path(path)}")
        if model is None:
            info("scores appear after 'photosense score'")
        elif engine is None:
            info("the attribute is saved; its scores appear at the next 'photosense score'")
        else:
            n = rescore_attributes(lib, [attr], engine)
            info(f"scored {n} photos from stored features")
    return 0


def _list(args) -> int:
    from photosense.cli import display_path, info
    from photosense.errors import PhotosenseError
    from photosense.scoring import coop

    folder = coop.prompts_dir()
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    for f in files:
        try:
            p = coop.load_prompts(f)
        except PhotosenseError as exc:
            print(f"{display_path(str(f))}  (unreadable: {exc})")
            continue
        details = ", ".join(x for x in (p.model and f"model {p.model}",
                                        p.info.get("source"),
                                        p.info.get("loss") and f"loss {p.info['loss']}") if x)
        print(f"{display_path(str(f))}  {p.classnames[0]!r} vs {p.classnames[1]!r}"
              + (f"  ({details})" if details else ""))
    if not files:
        info(f"no learned prompts in {display_path(str(folder))}")
    return 0
