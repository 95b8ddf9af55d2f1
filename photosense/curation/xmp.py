"""XMP sidecars: culling decisions that Lightroom, darktable, digiKam and Capture One can read.

What is written, into ``photo.ext.xmp`` (darktable, digiKam) or ``photo.xmp`` (Lightroom,
Capture One) — the library setting ``xmp_sidecar_style``, "ext" or "stem":

- ``xmp:Rating`` 0–5, and -1 for a reject (the Lightroom and darktable convention);
- ``xmp:Label``: Lightroom's colour names (Red, Yellow, Green, Blue, Purple), absent when none;
- ``digiKam:PickLabel``: 0 none, 1 rejected, 3 accepted (2, "pending", is only ever read);
- photosense's own data under :data:`PHOTOSENSE_NS`: ``photosense:model`` (the model id) and
  the structs ``photosense:scores`` and ``photosense:checks``, one element per attribute and
  check (names reduced to ASCII XML names).

An existing sidecar is merged, never replaced: it is parsed with a real XML parser, only the
properties above change (wherever they are, as attributes of ``rdf:Description`` or as child
elements), every other namespace, element, attribute, comment, the ``x:xmpmeta``/``rdf:RDF``
wrapper and the ``<?xpacket`` header and trailer stay as they were. A sidecar that cannot be
parsed is never overwritten. Files are written atomically (temporary file + ``os.replace``) and
only when their content changes. Image files are never opened for writing.

A RAW+JPEG pair gets the RAW's sidecar and the JPEG's (darktable keeps one per file); with the
"stem" style both are the same file.

Reading (``read_sidecar``, ``import_sidecars``): a photo is rejected when ``xmp:Rating`` is
negative or ``digiKam:PickLabel`` is 1, picked when ``PickLabel`` is 3; ``xmp:Label`` (or
darktable's ``darktable:colorlabels``) gives the colour. The library setting ``xmp_conflict``
decides who wins for a photo that already has a flag, rating or label: "library" (default) or
"sidecar". A photo without any gets the sidecar's values. With "library", a sidecar that
photosense read or wrote before and that was edited since in another app still wins when the
photo's flag, rating and label are what they were at that last read or write: only a change on
both sides is a conflict.

photosense remembers each sidecar it reads or writes (size, mtime and the photo's state then,
in the library's ``sidecars`` table), so a scan re-reads exactly the sidecars changed by other
apps, and never its own writes.

No Qt here.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from photosense import __version__
from photosense.errors import PhotosenseError
from photosense.fsutil import atomic_write
from photosense.library import (
    COLOR_LABELS,
    FLAG_NONE,
    FLAG_PICK,
    FLAG_REJECT,
    Library,
    PhotoQuery,
    PhotoRow,
    PhotoState,
)
from photosense.library.models import Photo

log = logging.getLogger("photosense.curation.xmp")

SETTING_AUTO_WRITE = "xmp_auto_write"
SETTING_STYLE = "xmp_sidecar_style"
SETTING_CONFLICT = "xmp_conflict"
SIDECAR_STYLES = ("ext", "stem")
CONFLICT_POLICIES = ("library", "sidecar")
DEFAULT_STYLE = "ext"
DEFAULT_CONFLICT = "library"

X_NS = "adobe:ns:meta/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMP_NS = "http://ns.adobe.com/xap/1.0/"
DIGIKAM_NS = "http://www.digikam.org/ns/1.0/"
DARKTABLE_NS = "http://darktable.sf.net/"
PHOTOSENSE_NS = "https://photosense.app/ns/1.0/"
XML_NS = "http://www.w3.org/XML/1998/namespace"

# Prefixes used for namespaces a sidecar does not declare yet.
PREFERRED_PREFIXES = {
    X_NS: "x", RDF_NS: "rdf", XMP_NS: "xmp", DIGIKAM_NS: "digiKam", DARKTABLE_NS: "darktable",
    PHOTOSENSE_NS: "photosense", "http://purl.org/dc/elements/1.1/": "dc",
}

RATING = f"{{{XMP_NS}}}Rating"
LABEL = f"{{{XMP_NS}}}Label"
PICK_LABEL = f"{{{DIGIKAM_NS}}}PickLabel"
DT_COLORLABELS = f"{{{DARKTABLE_NS}}}colorlabels"
RDF_RDF = f"{{{RDF_NS}}}RDF"
RDF_DESCRIPTION = f"{{{RDF_NS}}}Description"
RDF_ABOUT = f"{{{RDF_NS}}}about"
RDF_PARSE_TYPE = f"{{{RDF_NS}}}parseType"
RDF_RESOURCE = f"{{{RDF_NS}}}resource"
RDF_VALUE = f"{{{RDF_NS}}}value"
RDF_LI = f"{{{RDF_NS}}}li"

PICK_NONE, PICK_REJECTED, PICK_PENDING, PICK_ACCEPTED = 0, 1, 2, 3
LABEL_NAMES = {c: c.capitalize() for c in COLOR_LABELS}  # Lightroom's names
_PICK_BY_FLAG = {FLAG_NONE: PICK_NONE, FLAG_REJECT: PICK_REJECTED, FLAG_PICK: PICK_ACCEPTED}

_NEW_SIDECAR = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    f'<x:xmpmeta xmlns:x="{X_NS}" x:xmptk="photosense {__version__}">\n'
    f' <rdf:RDF xmlns:rdf="{RDF_NS}">\n'
    '  <rdf:Description rdf:about=""/>\n'
    ' </rdf:RDF>\n'
    '</x:xmpmeta>\n'
    '<?xpacket end="w"?>\n'
)

ProgressFn = Callable[[int, int], None]


class SidecarError(PhotosenseError):
    """A sidecar could not be read, parsed or written (its file is left as it was)."""


@dataclass(frozen=True)
class SidecarState:
    """The culling decisions a sidecar holds.

    ``rating`` 0–5, or None when the sidecar only says "rejected" (``xmp:Rating`` -1 keeps no
    stars: the library's rating is kept); ``label`` one of COLOR_LABELS or None; ``flag``
    FLAG_PICK / FLAG_NONE / FLAG_REJECT."""

    rating: int | None
    label: str | None
    flag: int


@dataclass
class SidecarReport:
    """What ``write_sidecars`` did."""

    written: int = 0  # sidecar files created or changed
    unchanged: int = 0  # sidecar files that already said the same
    photos: int = 0  # photos whose sidecars are now up to date
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (photo path, reason)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (photo path, message)
    cancelled: bool = False

    def summary(self) -> str:
        parts = [f"{self.photos} photo{'s' if self.photos != 1 else ''}: "
                 f"{self.written} sidecar{'s' if self.written != 1 else ''} written",
                 f"{self.unchanged} unchanged"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.errors:
            parts.append(f"{len(self.errors)} failed")
        if self.cancelled:
            parts.append("cancelled")
        return ", ".join(parts)


# -- settings -----------------------------------------------------------------------------

def sidecar_style(library: Library) -> str:
    """The library's sidecar naming style, "ext" (``photo.ext.xmp``) or "stem" (``photo.xmp``)."""
    style = library.get_setting(SETTING_STYLE, DEFAULT_STYLE)
    return style if style in SIDECAR_STYLES else DEFAULT_STYLE


def conflict_policy(library: Library) -> str:
    """Who wins on import for a photo with user state: "library" or "sidecar"."""
    policy = library.get_setting(SETTING_CONFLICT, DEFAULT_CONFLICT)
    return policy if policy in CONFLICT_POLICIES else DEFAULT_CONFLICT


def _checked(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise PhotosenseError(f"unknown {what} {value!r} ({' or '.join(choices)})")
    return value


# -- names --------------------------------------------------------------------------------

def sidecar_paths(photo_path: str, style: str, companion_path: str | None = None) -> list[str]:
    """The sidecar file(s) of a photo in this style: ``photo.ext.xmp`` ("ext") or
    ``photo.xmp`` ("stem"); with a RAW+JPEG ``companion_path``, the JPEG's too (one file
    when both names are the same)."""
    _checked(style, SIDECAR_STYLES, "sidecar style")
    out = []
    for p in (photo_path, companion_path):
        if not p:
            continue
        name = p + ".xmp" if style == "ext" else os.path.splitext(p)[0] + ".xmp"
        if name not in out:
            out.append(name)
    return out


class _Folders:
    """Finds existing files whatever the case of their name (``IMG_1.XMP`` for ``IMG_1.xmp``),
    listing each folder once."""

    def __init__(self):
        self._names: dict[str, dict[str, str]] = {}

    def existing(self, path: str) -> str | None:
        if os.path.isfile(path):
            return path
        directory, name = os.path.split(path)
        names = self._names.get(directory)
        if names is None:
            try:
                names = {n.lower(): n for n in os.listdir(directory or ".")}
            except OSError:
                names = {}
            self._names[directory] = names
        found = names.get(name.lower())
        if found is None:
            return None
        full = os.path.join(directory, found)
        return full if os.path.isfile(full) else None


def find_sidecar(photo_path: str, style: str = DEFAULT_STYLE, companion_path: str | None = None,
                 _folders: _Folders | None = None) -> str | None:
    """The existing sidecar to read for a photo: this style's name first, then the other
    style's, the photo's before its companion's (any case); None if there is none."""
    folders = _folders or _Folders()
    other = "stem" if style == "ext" else "ext"
    for path in (photo_path, companion_path):
        if not path:
            continue
        for s in (style, other):
            found = folders.existing(sidecar_paths(path, s)[0])
            if found:
                return found
    return None


def _element_name(name: str, taken: set[str]) -> str:
    """An ASCII XML element name for an attribute name (unique among ``taken``)."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"
    if not (base[0].isalpha() or base[0] == "_"):
        base = "_" + base
    out, n = base, 1
    while out in taken:
        n += 1
        out = f"{base}_{n}"
    taken.add(out)
    return out


# -- the XML document ---------------------------------------------------------------------

_PROLOGUE = re.compile(r"\A(?:[\s\ufeff]|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)*", re.S)
_ENCODING = re.compile(r"""(<\?xml[^>]*?encoding\s*=\s*)(["'])([^"']*)\2""", re.I)


class _Packet:
    """A parsed XMP file that can be serialised back with its prefixes, namespace
    declarations, comments, header and trailer intact."""

    def __init__(self, data: bytes, where: str):
        text = data.decode("utf-8", "replace")
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
        self.prefixes: dict[str, str] = {}  # uri -> prefix, one per namespace
        self.declared: dict[ET.Element, list[str]] = {}  # where each namespace was declared
        pending: list[str] = []
        try:
            events = ET.iterparse(io.BytesIO(data), events=("start-ns", "start"), parser=parser)
            for event, item in events:
                if event == "start-ns":
                    prefix, uri = item
                    pending.append(uri)
                    if prefix and uri not in self.prefixes and prefix not in self.prefixes.values():
                        self.prefixes[uri] = prefix
                elif pending:
                    self.declared[item] = pending
                    pending = []
            self.root: ET.Element = events.root
        except ET.ParseError as exc:
            raise SidecarError(f"{where}: not valid XML ({exc})") from None
        self.rdf = self.root if self.root.tag == RDF_RDF else self.root.find(f".//{RDF_RDF}")
        if self.rdf is None:
            raise SidecarError(f"{where}: not an XMP file (no rdf:RDF element)")
        # Keep what surrounds the root element verbatim (xpacket header and trailer, padding).
        start = _PROLOGUE.match(text).end()
        self.prologue = _ENCODING.sub(lambda m: f"{m[1]}{m[2]}UTF-8{m[2]}", text[:start])
        self.epilogue = ""
        m = re.match(r"<([^\s/>]+)", text[start:])
        if m:
            end = text.rfind(f"</{m[1]}")
            if end >= 0 and text.find(">", end) >= 0:
                self.epilogue = text[text.find(">", end) + 1:]

    def descriptions(self) -> list[ET.Element]:
        return self.rdf.findall(RDF_DESCRIPTION)

    def main_description(self) -> ET.Element:
        """The first rdf:Description (created when there is none), where new properties go."""
        found = self.descriptions()
        if found:
            return found[0]
        desc = ET.Element(RDF_DESCRIPTION, {RDF_ABOUT: ""})
        _append(self.rdf, desc, self._depth(self.rdf))
        return desc

    def _depth(self, element: ET.Element) -> int:
        return 0 if element is self.root else 1 + self._depth(self._parent(element))

    def _parent(self, element: ET.Element) -> ET.Element:
        return next(p for p in self.root.iter() if element in list(p))

    def depth_of_description(self, desc: ET.Element) -> int:
        return self._depth(desc)

    def serialise(self) -> bytes:
        return (self.prologue + _Writer(self).element(self.root) + self.epilogue).encode("utf-8")


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _escape_attr(text: str) -> str:
    return (_escape_text(text).replace('"', "&quot;").replace("\n", "&#10;")
            .replace("\t", "&#9;"))


class _Writer:
    def __init__(self, packet: _Packet):
        self.packet = packet
        self.prefixes = dict(packet.prefixes)

    def prefix(self, uri: str) -> str:
        if uri == XML_NS:
            return "xml"
        p = self.prefixes.get(uri)
        if p is None:
            taken = set(self.prefixes.values())
            p = PREFERRED_PREFIXES.get(uri)
            n = 0
            while p is None or p in taken or p == "xml":
                n += 1
                p = f"ns{n}"
            self.prefixes[uri] = p
        return p

    def qname(self, name: str) -> tuple[str, str | None]:
        if name.startswith("{"):
            uri, local = name[1:].split("}", 1)
            return f"{self.prefix(uri)}:{local}", uri
        return name, None

    def element(self, el: ET.Element, scope: frozenset[str] = frozenset()) -> str:
        if el.tag is ET.Comment:
            return f"<!--{el.text or ''}-->" + _escape_text(el.tail or "")
        if el.tag is ET.ProcessingInstruction:
            return f"<?{el.text or ''}?>" + _escape_text(el.tail or "")
        tag, uri = self.qname(el.tag)
        wanted = list(self.packet.declared.get(el, ()))
        attrs = []
        for key, value in el.attrib.items():
            name, key_uri = self.qname(key)
            attrs.append(f' {name}="{_escape_attr(value)}"')
            if key_uri:
                wanted.append(key_uri)
        if uri:
            wanted.append(uri)
        decls = []
        for ns in dict.fromkeys(wanted):
            if ns not in scope and ns != XML_NS:
                decls.append(f' xmlns:{self.prefix(ns)}="{_escape_attr(ns)}"')
        inner = scope | {ns for ns in wanted if ns != XML_NS}
        head = f"<{tag}{''.join(decls)}{''.join(attrs)}"
        if not len(el) and not el.text:
            out = head + "/>"
        else:
            body = _escape_text(el.text or "") + "".join(self.element(c, inner) for c in el)
            out = f"{head}>{body}</{tag}>"
        return out + _escape_text(el.tail or "")


def _append(parent: ET.Element, child: ET.Element, depth: int) -> None:
    """Append with the one-space-per-level indentation XMP files use."""
    if len(parent):
        last = parent[-1]
        child.tail, last.tail = last.tail, "\n" + " " * (depth + 1)
    else:
        parent.text = "\n" + " " * (depth + 1)
        child.tail = "\n" + " " * depth
    parent.append(child)


def _remove(parent: ET.Element, child: ET.Element) -> None:
    children = list(parent)
    i = children.index(child)
    if i == len(children) - 1:  # the closing tag's indentation lives in the last tail
        if i > 0:
            children[i - 1].tail = child.tail
        else:
            parent.text = None
    parent.remove(child)


def _value(element: ET.Element) -> str:
    """The value of a simple property given as an element (plain, resource or qualified)."""
    if RDF_RESOURCE in element.attrib:
        return element.attrib[RDF_RESOURCE]
    inner = element.find(f"{RDF_DESCRIPTION}/{RDF_VALUE}")
    if inner is None:
        inner = element.find(RDF_VALUE)  # rdf:parseType="Resource" with a qualifier
    return (inner.text if inner is not None else element.text or "").strip()


def _get(descriptions: list[ET.Element], name: str) -> str | None:
    for desc in descriptions:
        if name in desc.attrib:
            return desc.attrib[name].strip()
        element = desc.find(name)
        if element is not None:
            return _value(element)
    return None


def _set(descriptions: list[ET.Element], main: ET.Element, name: str, value: str | None) -> None:
    """Set a simple property where it already is (attribute or element form), drop any
    duplicates; ``None`` removes it. New properties become attributes of ``main``."""
    placed = False
    for desc in descriptions:
        if name in desc.attrib:
            if value is None or placed:
                del desc.attrib[name]
            else:
                desc.set(name, value)
                placed = True
        for element in desc.findall(name):
            if value is None or placed:
                _remove(desc, element)
            else:
                for child in list(element):
                    element.remove(child)
                lang = element.get(f"{{{XML_NS}}}lang")
                element.attrib.clear()
                if lang is not None:
                    element.set(f"{{{XML_NS}}}lang", lang)
                element.text = value
                placed = True
    if not placed and value is not None:
        main.set(name, value)


def _number(value: float) -> str:
    return format(float(value), ".6g")


# -- reading ------------------------------------------------------------------------------

def _read(path: str) -> bytes | None:
    """A sidecar's bytes, or None when there is none (or it is empty)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SidecarError(f"{path}: cannot read ({exc.strerror})") from None
    return data if data.strip() else None


def _state_of(packet: _Packet) -> SidecarState | None:
    descs = packet.descriptions()
    rating_text, label_text = _get(descs, RATING), _get(descs, LABEL)
    pick_text = _get(descs, PICK_LABEL)
    label = None
    if label_text is not None:
        label = label_text.lower() if label_text.lower() in COLOR_LABELS else None
    else:
        for desc in descs:  # darktable: a Seq of colour numbers 0 red .. 4 purple
            seq = desc.find(f"{DT_COLORLABELS}/{{{RDF_NS}}}Seq")
            items = [] if seq is None else [(li.text or "").strip() for li in seq.iter(RDF_LI)]
            numbers = [int(t) for t in items if t.isdigit() and int(t) < len(COLOR_LABELS)]
            if numbers:
                label_text, label = "darktable", COLOR_LABELS[numbers[0]]
                break
    if rating_text is None and label_text is None and pick_text is None:
        return None
    rating = None
    if rating_text is not None:
        try:
            value = float(rating_text)
        except ValueError:
            value = math.nan
        rating = None if math.isnan(value) else value
    try:
        pick = int(float(pick_text)) if pick_text is not None else None
    except ValueError:
        pick = None
    if (rating is not None and rating < 0) or pick == PICK_REJECTED:
        flag = FLAG_REJECT
    elif pick == PICK_ACCEPTED:
        flag = FLAG_PICK
    else:
        flag = FLAG_NONE
    if rating is None:
        stars: int | None = 0
    elif rating < 0:
        stars = None  # a reject in Rating keeps no stars
    else:
        stars = min(5, int(round(rating)))
    return SidecarState(rating=stars, label=label, flag=flag)


def read_sidecar(path: str | os.PathLike) -> SidecarState | None:
    """The rating, colour label and pick/reject a sidecar holds; None when the file does not
    exist or holds none of them. Raises SidecarError for an unreadable or malformed file."""
    path = os.fspath(path)
    data = _read(path)
    return None if data is None else _state_of(_Packet(data, path))


def _states_by_path(library: Library, paths: Sequence[str]) -> dict[str, tuple]:
    """path -> (id, companion path, flag, rating, colour label)."""
    out = {}
    with library.session(write=False) as s:
        for start in range(0, len(paths), 500):
            for row in s.execute(
                select(Photo.path, Photo.id, Photo.companion_path, Photo.flag, Photo.rating,
                       Photo.color_label).where(Photo.path.in_(paths[start:start + 500]))
            ):
                out[row[0]] = tuple(row[1:])
    return out


def import_sidecars(library: Library, paths: Iterable[str], *, conflict: str | None = None,
                    style: str | None = None) -> int:
    """Read the sidecars of these photos (library paths) into the library; returns how many
    photos changed. ``conflict`` (default: the library's ``xmp_conflict`` setting): "library"
    keeps the library's values for photos that already have a flag, rating or label;
    "sidecar" always takes the sidecar's. Unreadable or malformed sidecars are logged as
    warnings and skipped. Does not write sidecars back."""
    paths = list(dict.fromkeys(paths))
    if not paths:
        return 0
    conflict = _checked(conflict, CONFLICT_POLICIES, "conflict policy") if conflict else \
        conflict_policy(library)
    style = _checked(style, SIDECAR_STYLES, "sidecar style") if style else sidecar_style(library)
    folders = _Folders()
    known = _states_by_path(library, paths)
    changes: list[PhotoState] = []
    marks: list[tuple[str, int, int, int]] = []
    for path in paths:
        if path not in known:
            continue
        pid, companion, flag, rating, label = known[path]
        sidecar = find_sidecar(path, style, companion, folders)
        if sidecar is None:
            continue
        try:
            st = os.stat(sidecar)  # before reading: a later edit is newer than the mark
            state = read_sidecar(sidecar)
        except (OSError, SidecarError) as exc:
            log.warning("XMP sidecar ignored: %s", exc)
            continue
        marks.append((sidecar, pid, st.st_size, st.st_mtime_ns))
        if state is None:
            continue
        has_user_state = flag != FLAG_NONE or rating != 0 or label is not None
        if has_user_state and conflict == "library" and \
                library.sidecar_synced_state(sidecar) != (flag, rating, label):
            continue  # changed in photosense since the last sync (or never synced)
        new = PhotoState(pid, state.flag, rating if state.rating is None else state.rating,
                         state.label)
        if new != PhotoState(pid, flag, rating, label):
            changes.append(new)
    if changes:
        library.set_states(changes, sync_sidecars=False)
    library.mark_sidecars(marks)
    return len(changes)


# -- writing ------------------------------------------------------------------------------

def _merge(packet: _Packet, row: PhotoRow, scores: dict[str, float], model: str | None) -> None:
    main = packet.main_description()
    descs = packet.descriptions()
    rating = -1 if row.flag == FLAG_REJECT else max(0, min(5, int(row.rating)))
    _set(descs, main, RATING, str(rating))
    _set(descs, main, LABEL, LABEL_NAMES.get(row.color_label or ""))
    _set(descs, main, PICK_LABEL, str(_PICK_BY_FLAG.get(row.flag, PICK_NONE)))
    # Our own namespace is ours alone: replace all of it.
    prefix = f"{{{PHOTOSENSE_NS}}}"
    for desc in descs:
        for key in [k for k in desc.attrib if k.startswith(prefix)]:
            del desc.attrib[key]
        for element in [e for e in desc if isinstance(e.tag, str) and e.tag.startswith(prefix)]:
            _remove(desc, element)
    depth = packet.depth_of_description(main)
    packet.declared.setdefault(main, [])
    packet.declared[main] += [XMP_NS, DIGIKAM_NS, PHOTOSENSE_NS]
    if model:
        element = ET.Element(prefix + "model")
        element.text = model
        _append(main, element, depth)
    for struct, values in (("scores", scores), ("checks", row.checks)):
        values = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
        if not values:
            continue
        element = ET.Element(prefix + struct, {RDF_PARSE_TYPE: "Resource"})
        taken: set[str] = set()
        for name, value in values.items():
            item = ET.Element(prefix + _element_name(name, taken))
            item.text = _number(value)
            _append(element, item, depth + 1)
        _append(main, element, depth)


def _write_atomically(path: str, data: bytes) -> None:
    with atomic_write(path, "wb", prefix=f".{os.path.basename(path)}.") as f:
        f.write(data)


def _write_one(path: str, row: PhotoRow, scores: dict[str, float], model: str | None) -> bool:
    """Merge the row into one sidecar; True when the file was created or changed."""
    if not path.lower().endswith(".xmp"):  # never anything else, images least of all
        raise SidecarError(f"{path}: not a sidecar name")
    old = _read(path)
    packet = _Packet(old if old is not None else _NEW_SIDECAR.encode("utf-8"), path)
    _merge(packet, row, scores, model)
    data = packet.serialise()
    if data == old:
        return False
    try:
        _write_atomically(path, data)
    except OSError as exc:
        raise SidecarError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return True


def _targets(row: PhotoRow, style: str, folders: _Folders) -> list[str]:
    """Where to write: this style's names, reusing an existing file whose name differs only
    in case."""
    return [folders.existing(p) or p
            for p in sidecar_paths(row.path, style, row.companion_path)]


def write_sidecar(row: PhotoRow, style: str = DEFAULT_STYLE, scores: dict[str, float] | None = None,
                  model: str | None = None) -> list[str]:
    """Write (merge) a photo's culling state, ``scores`` (default: ``row.scores``) and
    ``model`` id into its sidecar(s); returns the sidecar paths that now hold them. Raises
    SidecarError (after trying every sidecar of the photo) when one could not be written."""
    _checked(style, SIDECAR_STYLES, "sidecar style")
    paths, errors = [], []
    for path in _targets(row, style, _Folders()):
        try:
            _write_one(path, row, row.scores if scores is None else scores, model)
            paths.append(path)
        except SidecarError as exc:
            errors.append(str(exc))
    if errors:
        raise SidecarError("; ".join(errors))
    return paths


def write_sidecars(library: Library, ids: Sequence[int] | None = None,
                   progress: ProgressFn | None = None, *, style: str | None = None,
                   cancel: threading.Event | None = None) -> SidecarReport:
    """Write the sidecars of these photos (None: every photo whose file is present) with the
    active model's scores. Per-photo failures are in the report (and logged), never raised."""
    style = _checked(style, SIDECAR_STYLES, "sidecar style") if style else sidecar_style(library)
    if ids is None:
        ids = library.query_ids(PhotoQuery(include_missing=False))
    ids = list(ids)
    active = library.active_model()
    model = active.key if active else None
    report = SidecarReport()
    folders = _Folders()
    owner: dict[str, tuple[int, str]] = {}  # sidecar -> (photo id, photo path)
    done = 0
    if progress:
        progress(0, len(ids))
    for start in range(0, len(ids), 200):
        marks: list[tuple[str, int, int, int]] = []  # what was written, not to read back
        for row in library.rows(ids[start:start + 200]):
            if cancel is not None and cancel.is_set():
                report.cancelled = True
                library.mark_sidecars(marks)
                return report
            done += 1
            if progress:
                progress(done, len(ids))
            if row.missing:
                report.skipped.append((row.path, "the photo's file is missing"))
                continue
            targets = _targets(row, style, folders)
            clash = [owner[os.path.realpath(t)] for t in targets
                     if owner.get(os.path.realpath(t), (row.id,))[0] != row.id]
            if clash:
                message = (f"{os.path.basename(targets[0])} would also be the sidecar of "
                           f"{os.path.basename(clash[0][1])}; use the 'ext' sidecar style")
                report.errors.append((row.path, message))
                log.warning("%s: %s", row.path, message)
                continue
            failed = []
            for target in targets:
                owner[os.path.realpath(target)] = (row.id, row.path)
                try:
                    if _write_one(target, row, row.scores, model):
                        report.written += 1
                    else:
                        report.unchanged += 1
                    st = os.stat(target)
                    marks.append((target, row.id, st.st_size, st.st_mtime_ns))
                except SidecarError as exc:
                    failed.append(str(exc))
                except OSError as exc:  # gone again at once: it is simply not remembered
                    log.warning("%s: %s", target, exc.strerror)
            if failed:
                report.errors.append((row.path, "; ".join(failed)))
                log.warning("XMP sidecar not written: %s", "; ".join(failed))
            else:
                report.photos += 1
        library.mark_sidecars(marks)
    return report
