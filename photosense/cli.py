"""The ``photosense`` command line: argument parsing and output only.

Results go to stdout, progress and messages to stderr. Expected problems (a missing folder,
an unknown attribute, unusable weights, a locked library) print one line and exit 1.
Heavy modules (torch, open_clip, Qt) are imported only by the commands that need them, so
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from photosense import __version__
from photosense.errors import PhotosenseError

log = logging.getLogger("photosense")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def display_path(path: str) -> str:
    """A path as printable text (undecodable bytes shown as U+FFFD)."""
    if path.isascii():
        return path
    return os.fsencode(path).decode("utf-8", "replace")


# -- argument parsing ---------------------------------------------------------------------

def _name_value(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number in {text!r}") from None


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="open_clip model name (default: RN50-quickgelu, the paper's)")
    g.add_argument("--weights", metavar="FILE",
                   help="local checkpoint (safetensors or state dict) instead of downloading")
    g.add_argument("--allow-pickle", action="store_true", default=None,
                   help="allow OpenAI's TorchScript .pt checkpoints (runs pickle; trusted files only)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                   help="where the model runs (default auto: CUDA, then Apple MPS, then CPU)")
    g.add_argument("--max-side", type=int, metavar="PX",
                   help="downscale so the longer side is at most PX before scoring "
                        "(default 1024; 0 = native size, exactly the paper)")
    g.add_argument("--batch", type=int, metavar="N", help="images per model batch (default 8)")
    g.add_argument("--preview-side", type=int, metavar="PX",
                   help="a new shoot of 200+ photos is first scored at PX (default 384, 0 = off) "
                        "so it can be sorted in minutes, then refined at --max-side")
    g.add_argument("--backend", choices=["auto", "torch", "onnxruntime", "openvino"],
                   help="where the image tower runs on the CPU (default auto: ONNX Runtime when "
                        "measured faster than torch; exported once per model into the cache)")


def _common_options(subcommand: bool) -> argparse.ArgumentParser:
    # On subcommands the defaults are suppressed, so `photosense --library X list` keeps X.
    default = argparse.SUPPRESS if subcommand else None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--library", metavar="PATH", default=default,
                        help="library database file (default: per-user data folder; "
                             "env PHOTOSENSE_LIBRARY)")
    common.add_argument("-v", "--verbose", action="store_true",
                        default=default if subcommand else False, help="log details to stderr")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(subcommand=True)
    parser = argparse.ArgumentParser(
        prog="photosense", parents=[_common_options(subcommand=False)],
        description="Cull photo shoots: CLIP-IQA scores for any look/feel attribute, "
                    "model-free sharpness/exposure/noise checks, flags, ratings.")
    parser.add_argument("--version", action="version", version=f"photosense {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", parents=[common], help="open the desktop window (the default)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="folders (or photos in folders) to add and show; 'photosense PATH...' "
                        "works too")

    score_help = ("score the photos as the scan reads them, as the window does (the first "
                  "scores come seconds after the scan starts), instead of a 'photosense score' "
                  "after it")
    p = sub.add_parser("add", parents=[common], help="add folders to the library and scan them")
    p.add_argument("folders", nargs="+", metavar="DIR")
    p.add_argument("--score", action="store_true", help=score_help)
    _add_engine_options(p)

    p = sub.add_parser("scan", parents=[common], help="rescan every library folder")
    p.add_argument("--score", action="store_true", help=score_help)
    _add_engine_options(p)

    p = sub.add_parser("folders", parents=[common], help="list library folders")
    p.add_argument("--remove", metavar="DIR", help="forget a folder and its photos' data")

    p = sub.add_parser("score", parents=[common],
                       help="encode photos lacking features, then score every attribute")
    _add_engine_options(p)

    p = sub.add_parser("watch", parents=[common],
                       help="watch all folders; scan and score continuously until Ctrl-C")
    _add_engine_options(p)
    p.add_argument("--debounce", type=float, default=2.0, metavar="S",
                   help="seconds a file must be unchanged before it is read (default 2)")
    p.add_argument("--no-score", action="store_true", help="scan and check only, no model")

    p = sub.add_parser("attr", parents=[common], help="manage look/feel attributes")
    asub = p.add_subparsers(dest="attr_command", metavar="ACTION", required=True)
    for action, help_text in (("add", "add an attribute"), ("edit", "change an attribute's prompts")):
        a = asub.add_parser(action, parents=[common], help=help_text,
                            description="Adjectives become the paper's prompt template "
                                        "\"[Adjective] photo.\"; full sentences are used as typed.")
        a.add_argument("name")
        a.add_argument("positive", nargs="?", help="positive adjective, e.g. sharp")
        a.add_argument("negative", nargs="?", help="negative adjective, e.g. blurry")
        a.add_argument("--prompts", nargs=2, action="append", metavar=("POSITIVE", "NEGATIVE"),
                       help="a pair of full prompts; repeat for an ensemble (scores averaged)")
        _add_engine_options(a)
    asub.add_parser("list", parents=[common], help="list attributes and their prompts")
    a = asub.add_parser("remove", parents=[common], help="remove an attribute and its scores")
    a.add_argument("name")

    p = sub.add_parser("list", parents=[common], help="list photos, sorted and filtered")
    p.add_argument("--sort", default=None, metavar="NAME",
                   help="attribute, check (sharpness, exposure, noise), name, capture_time "
                        "(default: quality when scored, else name)")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--asc", action="store_true", help="ascending (worst first for scores)")
    order.add_argument("--desc", action="store_true", help="descending")
    p.add_argument("--flag", choices=["pick", "reject", "none", "flagged"])
    p.add_argument("--min-rating", type=int, default=0, metavar="N")
    p.add_argument("--label", choices=["red", "yellow", "green", "blue", "purple"])
    p.add_argument("--min", type=_name_value, action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--max", type=_name_value, action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--errors", action="store_true", help="only files that could not be read")
    p.add_argument("--no-missing", action="store_true", help="hide photos whose file is gone")
    p.add_argument("--limit", type=int, metavar="N")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")

    for module in command_modules():
        module.configure(sub.add_parser(module.NAME, parents=[common], help=module.HELP))

    p = sub.add_parser("flag", parents=[common], help="flag, rate or label photos")
    p.add_argument("paths", nargs="+", metavar="PATH")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pick", action="store_true")
    which.add_argument("--reject", action="store_true")
    which.add_argument("--clear", action="store_true", help="remove pick/reject")
    p.add_argument("--rating", type=int, choices=range(0, 6), metavar="0-5")
    p.add_argument("--label", choices=["red", "yellow", "green", "blue", "purple", "none"])
    return parser


def command_modules() -> list:
    """The extra command modules in ``photosense.commands`` (see its docstring)."""
    import pkgutil

    import photosense.commands as pkg

    return [importlib.import_module(f"{pkg.__name__}.{m.name}")
            for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name)]


# -- helpers ------------------------------------------------------------------------------

def open_library(args):
    from photosense.library import Library

    lib = Library(args.library) if args.library else Library()
    if lib.read_only:
        info(f"photosense: library {display_path(str(lib.path))} is read-only (read-only media or "
             "no write permission): it can be read, changes cannot be saved")
    return lib


class TerminalProgress:
    """A one-line progress bar on stderr when it is a terminal; quiet otherwise."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int, extra: str = "") -> None:
        if not self.tty or total <= 0:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {extra}".ljust(79)[:120])
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()

    def progress(self, p) -> None:
        """Adapter for pipeline.Progress."""
        eta = ""
        if p.eta is not None and p.done < p.total:
            from photosense.jobs import format_duration

            eta = f"ETA {format_duration(p.eta)}"
        if p.stage == "encoding":
            from photosense.jobs import format_rate

            self(p.done, p.total, f"{format_rate(p.rate)} {eta}")


def info(msg: str) -> None:
    """A message for the user on stderr (stdout is for results)."""
    print(msg, file=sys.stderr, flush=True)


_info = info


def print_file_report(report) -> int:
    """Print a per-file job's skipped files and failures, then its summary line (export, XMP
    sidecars); the exit code: 1 when any file failed."""
    for path, reason in report.skipped:
        info(f"  skipped {display_path(path)}: {reason}")
    for path, message in report.errors:
        info(f"  failed {display_path(path)}: {message}")
    info(report.summary())
    return EXIT_ERROR if report.errors else EXIT_OK


def _engine_config(lib, args):
    from photosense.pipeline import load_engine_config

    return load_engine_config(
        lib, model=args.model, weights=os.path.abspath(args.weights) if args.weights else None,
        device=args.device, max_side=args.max_side, batch_size=args.batch,
        allow_pickle=args.allow_pickle, backend=args.backend, preview_side=args.preview_side)


def _scan(lib, folders=None, bars: bool = True, cancel: threading.Event | None = None,
          on_progress=None) -> int:
    """Scan ``folders`` (default: all), a summary line each; the number of unreadable files.
    ``bars``: a progress bar per folder; ``on_progress``: called on each scan progress."""
    from photosense.ingest.scan import Scanner

    scanner = Scanner(lib, processes=True)
    total_errors = 0
    for folder in folders if folders is not None else lib.folders():
        if cancel is not None and cancel.is_set():
            break
        bar = TerminalProgress(f"scan {display_path(os.path.basename(folder.path) or folder.path)}")

        def progress(*args, bar=bar) -> None:
            if on_progress is not None:
                on_progress()
            if bars:
                bar(*args)

        report = scanner.scan_folder(folder, progress=progress, cancel=cancel)
        lead = "" if bars or not sys.stderr.isatty() else "\n"  # off the scoring bar's line
        _info(f"{lead}{display_path(folder.path)}: {report.summary()}")
        for path, error in report.errors:
            _info(f"  unreadable: {display_path(path)}: {error}")
        total_errors += len(report.errors)
    return total_errors


def _scan_and_score(lib, args, folders=None) -> int:
    """``_scan`` on a thread of its own, and scoring here following it as it writes (what the
    window and ``watch`` do): the model starts on the first photos the scan has read. The exit
    status; Ctrl-C stops both (what was scanned and scored is kept). When scoring cannot run
    (no weights, say), the scan still finishes before the error is raised."""
    config = _engine_config(lib, args)
    cancel = threading.Event()
    started = threading.Event()
    outcome: dict = {}

    def scan() -> None:
        try:
            _scan(lib, folders, bars=False, cancel=cancel, on_progress=started.set)
        except BaseException as exc:  # noqa: BLE001 - raised again on the main thread
            outcome["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=scan, name="photosense-scan", daemon=True)
    thread.start()
    try:
        started.wait()
        job = _scoring_job(lib, config)
        try:
            report = run_job(job)
        except PhotosenseError:
            if thread.is_alive():
                _info("photosense: scoring cannot run; the scan goes on (its photos are indexed "
                      "and checked, for a 'photosense score' later)")
            thread.join()
            raise
        thread.join()
    except KeyboardInterrupt:
        cancel.set()
        thread.join(30)
        _info("interrupted: what was scanned and scored is saved; 'photosense scan --score' "
              "goes on from there")
        return 130
    if "error" in outcome:
        raise outcome["error"]
    _info(_scored_line(report))
    return EXIT_OK


# -- commands -----------------------------------------------------------------------------

def _has_display() -> bool:
    if sys.platform in ("win32", "darwin") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_gui(args) -> int:
    if not _has_display():
        raise PhotosenseError("no display to open the window on (DISPLAY/WAYLAND_DISPLAY unset); "
                              "use the commands in 'photosense --help', or set QT_QPA_PLATFORM")
    try:
        app = importlib.import_module("photosense.gui.app")
    except ImportError as exc:
        from photosense.system_libs import explain_import_error

        raise PhotosenseError(explain_import_error(exc)
                              or f"the desktop window cannot start: {exc}") from exc
    return app.run(args.library, [os.path.abspath(p) for p in getattr(args, "paths", [])])


_ENGINE_OPTIONS = ("model", "weights", "allow_pickle", "device", "max_side", "batch",
                   "preview_side", "backend")


def _model_options_need_score(args) -> None:
    """``add`` and ``scan`` take the model options only to score (``--score``): without it
    they would be silently ignored."""
    given = [name for name in _ENGINE_OPTIONS if getattr(args, name, None) is not None]
    if given and not args.score:
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise PhotosenseError(f"{names}: model options apply to scoring; add --score, or use "
                              "'photosense score' after the scan")


def cmd_add(args) -> int:
    _model_options_need_score(args)
    with open_library(args) as lib:
        added = [lib.add_folder(d) for d in args.folders]
        folders = [f for f in lib.folders() if f.id in {a.id for a in added}]
        if args.score:
            return _scan_and_score(lib, args, folders)
        _scan(lib, folders)
    return EXIT_OK


def cmd_scan(args) -> int:
    _model_options_need_score(args)
    with open_library(args) as lib:
        if not lib.folders():
            raise PhotosenseError("the library has no folders yet: use 'photosense add DIR'")
        if args.score:
            return _scan_and_score(lib, args)
        _scan(lib)
    return EXIT_OK


def cmd_folders(args) -> int:
    with open_library(args) as lib:
        if args.remove:
            lib.remove_folder(args.remove)
            _info(f"removed {args.remove}")
            return EXIT_OK
        from photosense.ingest.scan import describe_skipped

        for f in lib.folders():
            state = " (missing)" if f.missing else ""
            if f.skipped:
                state += f"  [skipped {f.skipped_count}: {describe_skipped(f.skipped)}]"
            print(f"{f.photo_count:7d}  {display_path(f.path)}{state}")
    return EXIT_OK


def _failed_text(report) -> str:
    """", 2 unreadable, 3 not available now (scored when they are back)" for a ScoreReport."""
    bad = report.failed - report.unavailable
    return ((f", {bad} unreadable" if bad else "")
            + (f", {report.unavailable} not available now (scored when they are back)"
               if report.unavailable else ""))


def _scoring_job(lib, config):
    """A ``photosense.jobs.Job`` scoring ``lib`` with a progress bar (after a line saying which
    model loads)."""
    from photosense.jobs import Job
    from photosense.pipeline import ScoringJob

    _info(f"loading model {config.model}" + (f" from {config.weights}" if config.weights else ""))
    bar = TerminalProgress("score")
    scoring = ScoringJob(lib, config)
    return Job(lambda ctl: scoring.run(bar.progress, ctl.cancel, ctl.checkpoint), "Scoring", "scoring")


def _scored_line(report) -> str:
    if report.previewed:  # the rate of two passes at two sizes would mean nothing
        done = (f"scored {report.encoded} photos in {report.seconds:.1f}s, after a preview pass "
                f"of {report.previewed} at a smaller size")
    else:
        rate = report.encoded / report.encode_seconds if report.encode_seconds else 0.0
        done = f"scored {report.encoded} photos in {report.seconds:.1f}s ({rate:.2f} photos/s)"
    return (done + _failed_text(report)
            + (f", rescored {report.rescored_attributes} attributes" if report.rescored_attributes else ""))


def run_job(job):
    """Run a ``photosense.jobs.Job`` here and return its result; its error becomes the
    command's one-line error (an unexpected one's traceback is already logged)."""
    job.run()
    if job.error is not None:
        raise PhotosenseError(job.error)
    return job.result


def cmd_score(args) -> int:
    with open_library(args) as lib:
        config = _engine_config(lib, args)
        job = _scoring_job(lib, config)
        try:
            report = run_job(job)
        except KeyboardInterrupt:
            job.cancel()
            _info("interrupted: photos scored so far are saved; run 'photosense score' to resume")
            return 130
        _info(_scored_line(report))
    return EXIT_OK


def cmd_watch(args) -> int:
    from photosense.service import ServiceEvents, WatchService

    with open_library(args) as lib:
        if not lib.folders():
            raise PhotosenseError("the library has no folders yet: use 'photosense add DIR'")
        config = _engine_config(lib, args)

        def scanned(report):
            if report.added or report.updated or report.moved or report.missing or report.errors:
                _info(f"scan: {report.summary()}")
            for path, error in report.errors:
                _info(f"  unreadable: {display_path(path)}: {error}")

        def scored(report):
            if report.encoded or report.failed:
                _info(f"scored {report.encoded} photos" + _failed_text(report))

        def model_error(msg):
            _info(f"photosense: {msg}")
            _info("photosense: still watching: new photos are scanned and checked, and queued for scoring")

        service = WatchService(lib, config, ServiceEvents(
                                   scanned=scanned, scored=scored, model_error=model_error,
                                   error=lambda msg: _info(f"photosense: {msg}")),
                               debounce=args.debounce, score=not args.no_score)
        stop = threading.Event()
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
        _info(f"watching {len(lib.folders())} folder(s); Ctrl-C to stop")
        service.start()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            _info("stopping…")
            service.stop()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def _spec_from_args(args):
    from photosense.scoring.prompts import AntonymPair, AttributeSpec

    pairs = []
    if args.positive or args.negative:
        if not (args.positive and args.negative):
            raise PhotosenseError("give both a positive and a negative adjective")
        pairs.append((args.positive, args.negative))
    pairs.extend(tuple(p) for p in args.prompts or [])
    if not pairs:
        raise PhotosenseError("give POSITIVE NEGATIVE adjectives or --prompts POSITIVE NEGATIVE")
    try:
        return AttributeSpec(args.name, tuple(AntonymPair(p, n) for p, n in pairs))
    except ValueError as exc:
        raise PhotosenseError(str(exc)) from exc


def _rescore_after_attr_change(lib, args, attr) -> None:
    from photosense.errors import WeightsUnavailable
    from photosense.pipeline import rescore_attributes
    from photosense.scoring.clipiqa import ClipIQAEngine

    model = lib.active_model()
    if model is None:
        _info("scores appear after 'photosense score'")
        return
    if attr.id not in {a.id for a in lib.attributes_missing_scores(model.id)}:
        return  # renamed only: its scores still hold
    try:
        n = rescore_attributes(lib, [attr], ClipIQAEngine(_engine_config(lib, args)))
    except WeightsUnavailable as exc:
        _info(f"photosense: {exc}")
        _info("the attribute is saved; its scores appear at the next 'photosense score'")
        return
    _info(f"scored {n} photos from stored features")


def cmd_attr(args) -> int:
    with open_library(args) as lib:
        if args.attr_command == "list":
            for a in lib.attributes():
                pairs = " + ".join(f"{p.prompts()[0]!r} vs {p.prompts()[1]!r}" for p in a.spec.pairs)
                kind = "built-in" if a.spec.builtin else "custom"
                print(f"{a.name:16s} {kind:8s}  {pairs}")
        elif args.attr_command == "remove":
            lib.remove_attribute(args.name)
            _info(f"removed attribute {args.name}")
        else:
            spec = _spec_from_args(args)
            if args.attr_command == "add":
                attr = lib.add_attribute(spec)
            else:
                attr = lib.update_attribute(args.name, type(spec)(spec.name, spec.pairs))
            pos, neg = attr.spec.prompt_texts()
            _info(f"{args.attr_command}ed attribute {attr.name}: "
                  + "; ".join(f"{p!r} vs {n!r}" for p, n in zip(pos, neg)))
            if any(len(p) > 75 for p in pos + neg):
                from photosense.scoring.clipiqa import truncation_notes

                for note in truncation_notes(_engine_config(lib, args), pos + neg):
                    _info(f"photosense: {note}")
            _rescore_after_attr_change(lib, args, attr)
    return EXIT_OK


def _row_object(row, public_faces) -> dict:
    """One photo of ``list --format json``; ``public_faces``: curation.report's (imported
    once by the caller, not once a photo)."""
    faces = row.faces
    return {
        "path": display_path(row.path),
        "companion": display_path(row.companion_path) if row.companion_path else None,
        "flag": row.flag_name,
        "rating": row.rating,
        "label": row.color_label,
        "scores": row.scores,
        "checks": {**row.checks, **row.face_checks},
        "faces": public_faces(faces) if faces else faces,  # None or []
        "width": row.width,
        "height": row.height,
        "capture_time": row.capture_time.isoformat() if row.capture_time else None,
        "camera": row.camera,
        "error": row.error,
        "missing": row.missing,
    }


def _say_resolution(lib) -> int | None:
    """The size (px, 0 = native) the shown scores were encoded at; says so on stderr when that
    is not the configured size (a preview pass's scores, or an older size being refined)."""
    from photosense.pipeline import load_engine_config

    active = lib.active_model()
    if active is None or active.max_side is None:
        return None
    wanted = load_engine_config(lib).max_side
    if active.max_side != wanted:
        from photosense.library import feature_key

        full = lib.model(feature_key(active.base, wanted, active.precision))
        have = lib.feature_count(full.id) if full is not None and full.id != active.id else 0
        info(f"photosense: scores come from photos encoded at {active.max_side or 'native'} px "
             f"({'a preview' if active.max_side < (wanted or 1 << 30) else 'an earlier size'}); "
             f"{have} of {lib.feature_count(active.id)} are encoded at {wanted or 'native'} px so "
             "far: 'photosense score' refines them")
    return active.max_side


def _fmt(value) -> str:
    if isinstance(value, int):
        return str(value)
    return "-" if value is None else f"{value:.3f}"


JSON_LINES_A_WRITE = 1000  # `list --format json` writes this many lines at a time


def _json_line_encoder():
    """One compact JSON line of an object: orjson (4x faster than the json module on a 100k
    list), the json module for what orjson refuses (text that is not valid Unicode) or where
    orjson is not installed."""
    standard = json.JSONEncoder(ensure_ascii=False).encode
    try:
        import orjson
    except ImportError:
        return standard
    dumps, refused = orjson.dumps, orjson.JSONEncodeError

    def encode(obj) -> str:
        try:
            return dumps(obj).decode("utf-8")
        except refused:
            return standard(obj)

    return encode


def cmd_list(args) -> int:
    from photosense.library import PhotoQuery
    from photosense.scoring.prompts import normalize_attribute_name

    with open_library(args) as lib:
        sort = normalize_attribute_name(args.sort) if args.sort else None
        if sort is None:
            sort = "quality" if lib.active_model() is not None else "name"
        ranges: dict[str, list] = {}
        for name, value in args.min:
            ranges.setdefault(name, [None, None])[0] = value
        for name, value in args.max:
            ranges.setdefault(name, [None, None])[1] = value
        descending = True if args.desc else (False if args.asc else None)
        query = PhotoQuery(sort=sort, descending=descending, flag=args.flag,
                           min_rating=args.min_rating, color_label=args.label,
                           ranges={k: tuple(v) for k, v in ranges.items()},
                           errors_only=args.errors, include_missing=not args.no_missing,
                           limit=args.limit)
        attr_names = [a.name for a in lib.attributes()]
        resolution = _say_resolution(lib)
        out = sys.stdout
        if args.format == "json":
            # One object a line, streamed from plain rows a chunk at a time: 100k photos in
            # seconds (an indented dump of full ORM rows took 18 s).
            from photosense.curation.report import public_faces

            encode = _json_line_encoder()
            rows = lib.iter_query(query)  # a bad query fails here, before any output
            out.write("[")
            lines: list[str] = []
            separator = "\n"
            for r in rows:
                obj = _row_object(r, public_faces)
                obj["scored_at_px"] = resolution if r.scores else None
                lines.append(encode(obj))
                if len(lines) == JSON_LINES_A_WRITE:
                    out.write(separator + ",\n".join(lines))
                    lines.clear()
                    separator = ",\n"
            if lines:
                out.write(separator + ",\n".join(lines))
            out.write("\n]\n")
            return EXIT_OK
        rows = lib.query(query)
    if args.format == "csv":
        from photosense.curation.report import write_csv

        write_csv(out, rows, attr_names)
    else:
        flags = {"pick": "P", "reject": "X", "none": " "}
        header = f"{'flag':4s} {'stars':5s} {sort[:10]:>10s} {'faces':>5s} {'blink':>5s}  path"
        print(header, file=out)
        for r in rows:
            face_checks = r.face_checks
            if sort in face_checks:
                value = face_checks[sort]
            else:
                value = r.checks.get(sort) if sort in r.checks else r.scores.get(sort)
            shown = _fmt(value) if sort not in ("name", "capture_time") else ""
            note = " [missing]" if r.missing else ""
            note += f" [error: {r.error}]" if r.error else ""
            count = "-" if face_checks["faces"] is None else str(face_checks["faces"])
            closed = "-" if face_checks["eyes_closed"] is None else str(face_checks["eyes_closed"])
            print(f"{flags[r.flag_name]:4s} {'*' * r.rating:5s} {shown:>10s} {count:>5s} "
                  f"{closed:>5s}  {display_path(r.path)}{note}", file=out)
        _info(f"{len(rows)} photos")
    return EXIT_OK


def cmd_flag(args) -> int:
    from photosense.library import FLAG_NONE, FLAG_PICK, FLAG_REJECT

    flag = FLAG_PICK if args.pick else FLAG_REJECT if args.reject else FLAG_NONE if args.clear else None
    label = ... if args.label is None else (None if args.label == "none" else args.label)
    if flag is None and args.rating is None and args.label is None:
        raise PhotosenseError("say what to set: --pick, --reject, --clear, --rating N or --label COLOR")
    with open_library(args) as lib:
        ids = list(lib.resolve_paths(args.paths).values())
        kwargs = {"flag": flag, "rating": args.rating}
        if label is not ...:
            kwargs["color_label"] = label
        from photosense.curation.sidecar_job import attach_immediate_writer

        attach_immediate_writer(lib)  # XMP auto-write, when on: one command, written at once
        lib.set_culling(ids, **kwargs)
        _info(f"updated {len(ids)} photo(s)")
        report = getattr(lib, "sidecar_report", None)
        for path, message in report.errors if report is not None else []:
            _info(f"  XMP sidecar not written: {display_path(path)}: {message}")
        if flag is not None:
            from photosense.scoring.taste import maybe_refit

            if maybe_refit(lib):  # does nothing before scoring or with too few flags
                _info("'my taste' updated from your picks and rejects")
    return EXIT_OK


COMMANDS = {
    "gui": cmd_gui, "add": cmd_add, "scan": cmd_scan, "folders": cmd_folders,
    "score": cmd_score, "watch": cmd_watch, "attr": cmd_attr, "list": cmd_list, "flag": cmd_flag,
}


def _route_bare_paths(argv: list[str], commands: set[str]) -> list[str]:
    """``photosense PATH...`` (a desktop file's ``Exec=photosense %F``) means ``gui PATH...``."""
    skip_next = False
    for i, arg in enumerate(argv):
        if skip_next:
            skip_next = False
            continue
        if arg == "--library":
            skip_next = True
            continue
        if arg.startswith("-"):
            continue
        if arg not in commands and os.path.exists(arg):
            return [*argv[:i], "gui", *argv[i:]]
        return argv
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    from photosense import allocator

    allocator.tune()  # before any photo is read: see photosense/allocator.py
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = set(COMMANDS) | {m.NAME for m in command_modules()}
    args = parser.parse_args(_route_bare_paths(argv, commands))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    quiet = [] if args.verbose else [logging.getLogger(n) for n in ("photosense.ingest", "photosense.pipeline")]
    levels = [logger.level for logger in quiet]  # put back on return (main may run in a program)
    for logger in quiet:  # per-file problems are reported by the commands themselves
        logger.setLevel(logging.ERROR)
    try:
        return _run_command(args)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def _run_command(args) -> int:
    command = args.command or "gui"
    handler = COMMANDS.get(command)
    if handler is None:
        handler = next(m.run for m in command_modules() if m.NAME == command)
    from photosense.ingest import crash_guard

    crash_guard.start()  # files being read are noted: one that crashes us is not read again
    # Files an earlier photosense was reading when it stopped: checked before a command reads
    # any photo; beside the window (they are not read in the meantime).
    crash_guard.recover(wait=command != "gui")
    try:
        return handler(args)
    except PhotosenseError as exc:
        print(f"photosense: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("photosense: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
