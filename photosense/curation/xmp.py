"""XMP sidecars: culling decisions that Lightroom, darktable, digiKam, Capture One and Bridge
can read, written beside files other apps own without damaging their data.

Which file: the sidecars a photo already has, whatever their naming (``photo.ext.xmp``,
darktable and digiKam; ``photo.xmp``, Lightroom, Capture One, Bridge), all of them when there
are two, so that they never disagree. Only a photo with none gets new ones, named by the
library setting ``xmp_sidecar_style`` ("ext" or "stem"). A ``photo.xmp`` that another image
with the same stem would share (``IMG_1.jpg`` + ``IMG_1.png``) is nobody's. A RAW+JPEG pair
gets the RAW's sidecar and the JPEG's (darktable keeps one per file). Photos whose file is
missing or could not be read get none.

What is written: photosense changes only the fields whose meaning differs from the library,
each in the vocabulary already in the file, and keeps everything else exactly:

- ``xmp:Rating`` 0–5, and -1 for a reject (the darktable and Bridge convention); the stars a
  reject hides stay in ``photosense:ratingBeforeReject`` and come back when the reject is
  cleared; ``MicrosoftPhoto:Rating`` (digiKam's percent), where present, keeps the stars;
- ``digiKam:PickLabel``: 0 none, 1 rejected, 3 accepted (2, "pending", is kept as "none");
- colour labels: left verbatim, even ones photosense does not have (Capture One's "Orange",
  a custom Lightroom set), unless photosense's colour differs from the sidecar's. Then every
  label field present changes together: ``xmp:Label`` (Lightroom's and Capture One's names
  Red Yellow Green Blue Purple, or Bridge's Select Second Approved Review "To Do" where the
  sidecar uses those), ``digiKam:ColorLabel`` (1 3 4 5 6) and ``photoshop:Urgency`` beside it,
  ``darktable:colorlabels`` (0–4; darktable's other colours are kept after the new one).
  Clearing the label removes ``xmp:Label`` and darktable's list and sets digiKam's to 0.
- photosense's own data under :data:`PHOTOSENSE_NS`: ``photosense:model`` (the model id) and
  the structs ``photosense:scores`` and ``photosense:checks``, one element per attribute and
  check (names reduced to ASCII XML names).

An existing sidecar is merged, never replaced: it is parsed with a real XML parser, only the
properties above change (wherever they are, as attributes of ``rdf:Description`` or as child
elements), every other namespace, element, attribute, comment, the ``x:xmpmeta``/``rdf:RDF``
wrapper and the ``<?xpacket`` header and trailer stay as they were. Files are written
atomically (temporary file + ``os.replace``) and only when their content changes; the
temporary files a killed write leaves are swept by the next write or scan of the folder
(:func:`photosense.fsutil.sweep_temporaries`). Image files are never opened for writing.

Hostile sidecars: files over :data:`MAX_SIDECAR_BYTES` are refused unread, the XML is parsed
in one feed (no quadratic re-scanning), and every value read is validated (``inf``, ``nan``,
out-of-range, non-numeric, a list where a value belongs). Such a sidecar is neither imported
nor overwritten: it is reported per file and the others go on.

Reading (``read_sidecar``, ``import_sidecars``): a photo is rejected when ``xmp:Rating`` is -1
or ``digiKam:PickLabel`` is 1, picked when ``PickLabel`` is 3; the stars are ``xmp:Rating``'s,
else ``MicrosoftPhoto:Rating``'s; the colour ``xmp:Label``'s when it is one photosense has,
else digiKam's, else darktable's first. The library setting ``xmp_conflict`` decides who wins
for a photo that already has a flag, rating or label: "library" (default) or "sidecar". A photo
without any gets the sidecar's values. With "library", a sidecar that photosense read or wrote
before and that was edited since in another app still wins when the photo's flag, rating and
label are what they were at that last read or write: only a change on both sides is a conflict.

photosense remembers each sidecar it reads or writes (size, mtime and the photo's state then,
in the library's ``sidecars`` table), so a scan re-reads exactly the sidecars changed by other
apps, and never its own writes. A sidecar is remembered as read only once it was imported.

No Qt here.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from photosense import __version__
from photosense.errors import PhotosenseError
from photosense.fsutil import atomic_write, is_own_temporary, sweep_folder, sweep_temporaries
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
PHOTOSHOP_NS = "http://ns.adobe.com/photoshop/1.0/"
MSPHOTO_NS = "http://ns.microsoft.com/photo/1.0/"
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
COLOR_LABEL = f"{{{DIGIKAM_NS}}}ColorLabel"
URGENCY = f"{{{PHOTOSHOP_NS}}}Urgency"
MS_RATING = f"{{{MSPHOTO_NS}}}Rating"
CREATOR_TOOL = f"{{{XMP_NS}}}CreatorTool"
RATING_BEFORE_REJECT = f"{{{PHOTOSENSE_NS}}}ratingBeforeReject"
RDF_RDF = f"{{{RDF_NS}}}RDF"
RDF_DESCRIPTION = f"{{{RDF_NS}}}Description"
RDF_ABOUT = f"{{{RDF_NS}}}about"
RDF_PARSE_TYPE = f"{{{RDF_NS}}}parseType"
RDF_RESOURCE = f"{{{RDF_NS}}}resource"
RDF_VALUE = f"{{{RDF_NS}}}value"
RDF_LI = f"{{{RDF_NS}}}li"
RDF_CONTAINERS = tuple(f"{{{RDF_NS}}}{kind}" for kind in ("Bag", "Seq", "Alt"))

#: Sidecars larger than this are refused (real ones are kilobytes).
MAX_SIDECAR_BYTES = 4 * 1024 * 1024
#: Elements nested deeper than this are refused (real XMP nests about 10 deep).
MAX_DEPTH = 100

PICK_NONE, PICK_REJECTED, PICK_PENDING, PICK_ACCEPTED = 0, 1, 2, 3
LABEL_NAMES = {c: c.capitalize() for c in COLOR_LABELS}  # Lightroom's (and Capture One's)
#: Bridge's default label set, for red, yellow, green, blue and purple.
BRIDGE_LABEL_NAMES = dict(zip(COLOR_LABELS, ("Select", "Second", "Approved", "Review", "To Do")))
#: digiKam's ColorLabel numbers (digiKam: 2 orange, 6 magenta, 7 gray, 8 black, 9 white; its
#: magenta is what it reads Lightroom's "Purple" as and writes "Purple" for).
DIGIKAM_COLORS = dict(zip(COLOR_LABELS, (1, 3, 4, 5, 6)))
#: darktable's colour numbers.
DARKTABLE_COLORS = {c: i for i, c in enumerate(COLOR_LABELS)}
#: MicrosoftPhoto:Rating percent per star, as digiKam writes it (0 1 25 50 75 99).
MS_PERCENT = (0, 1, 25, 50, 75, 99)
_COLOR_BY_NAME = {n.lower(): c for names in (LABEL_NAMES, BRIDGE_LABEL_NAMES)
                  for c, n in names.items()}
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

    ``rating`` 0–5, or None when the sidecar only says "rejected" (``xmp:Rating`` -1 with no
    stars kept beside it in ``photosense:ratingBeforeReject`` or ``MicrosoftPhoto:Rating``:
    the library's rating is kept); ``label`` one of COLOR_LABELS, or None for none and for a
    colour photosense does not have; ``flag`` FLAG_PICK / FLAG_NONE / FLAG_REJECT."""

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


class FolderListing:
    """Finds existing files whatever the case of their name (``IMG_1.XMP`` for ``IMG_1.xmp``),
    listing each folder once."""

    def __init__(self):
        self._names: dict[str, dict[str, str]] = {}
        self._stems: dict[str, dict[str, list[str]]] = {}

    def names(self, directory: str) -> dict[str, str]:
        """lower-case name -> name of the files in a folder."""
        names = self._names.get(directory)
        if names is None:
            try:
                names = {n.lower(): n for n in os.listdir(directory or ".")}
            except OSError:
                names = {}
            self._names[directory] = names
        return names

    def existing(self, path: str) -> str | None:
        if os.path.isfile(path):
            return path
        directory, name = os.path.split(path)
        found = self.names(directory).get(name.lower())
        if found is None:
            return None
        full = os.path.join(directory, found)
        return full if os.path.isfile(full) else None

    def stem_shared_with(self, photo_path: str, companion_path: str | None) -> str | None:
        """Another image file with this photo's stem in its folder (``IMG_1.jpg`` beside
        ``IMG_1.png``): then ``IMG_1.xmp`` is no sidecar of this photo alone. None if none."""
        directory, name = os.path.split(photo_path)
        own = {name.lower()} | ({os.path.basename(companion_path).lower()} if companion_path else set())
        for lower in self._images_by_stem(directory).get(os.path.splitext(name)[0].lower(), ()):
            if lower not in own:
                return os.path.join(directory, self.names(directory)[lower])
        return None

    def _images_by_stem(self, directory: str) -> dict[str, list[str]]:
        stems = self._stems.get(directory)
        if stems is None:
            from photosense.ingest.decode import is_image_path

            stems = {}
            for lower in self.names(directory):
                if not lower.startswith(".") and is_image_path(lower):
                    stems.setdefault(os.path.splitext(lower)[0], []).append(lower)
            self._stems[directory] = stems
        return stems


def existing_sidecars(photo_path: str, style: str = DEFAULT_STYLE,
                      companion_path: str | None = None,
                      _folders: FolderListing | None = None) -> list[str]:
    """Every existing sidecar of a photo (any case), in reading order: this style's name
    first, then the other style's, the photo's before its companion's. A ``photo.xmp`` that
    other images with the same stem share is nobody's."""
    folders = _folders or FolderListing()
    other = "stem" if style == "ext" else "ext"
    shared = None
    found: list[str] = []
    for path in (photo_path, companion_path):
        if not path:
            continue
        for s in (style, other):
            if s == "stem":
                if shared is None:
                    shared = folders.stem_shared_with(photo_path, companion_path) or ""
                if shared:
                    continue
            hit = folders.existing(sidecar_paths(path, s)[0])
            if hit and hit not in found:
                found.append(hit)
    return found


def find_sidecar(photo_path: str, style: str = DEFAULT_STYLE, companion_path: str | None = None,
                 _folders: FolderListing | None = None) -> str | None:
    """The existing sidecar to read for a photo (the first of :func:`existing_sidecars`);
    None if there is none."""
    found = existing_sidecars(photo_path, style, companion_path, _folders)
    return found[0] if found else None


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


class _TooDeep(Exception):
    pass


class _Builder(ET.TreeBuilder):
    """A tree builder that also records namespace declarations (prefixes, and on which element
    each was declared) and refuses absurd nesting."""

    def __init__(self):
        super().__init__(insert_comments=True, insert_pis=True)
        self.prefixes: dict[str, str] = {}
        self.declared: dict[ET.Element, list[str]] = {}
        self.namespaces: set[str] = set()
        self._pending: list[str] = []
        self._depth = 0

    def start_ns(self, prefix: str, uri: str) -> None:
        self._pending.append(uri)
        self.namespaces.add(uri)
        if prefix and uri not in self.prefixes and prefix not in self.prefixes.values():
            self.prefixes[uri] = prefix

    def start(self, tag, attrs):
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _TooDeep
        element = super().start(tag, attrs)
        if self._pending:
            self.declared[element] = self._pending
            self._pending = []
        return element

    def end(self, tag):
        self._depth -= 1
        return super().end(tag)


class _Packet:
    """A parsed XMP file that can be serialised back with its prefixes, namespace
    declarations, comments, header and trailer intact."""

    def __init__(self, data: bytes, where: str):
        text = data.decode("utf-8", "replace")
        builder = _Builder()
        # One feed: expat fed in chunks rescans an unfinished large token (quadratic time).
        parser = ET.XMLParser(target=builder)
        try:
            parser.feed(data)
            self.root: ET.Element = parser.close()
        except ET.ParseError as exc:
            raise SidecarError(f"{where}: not valid XML ({exc})") from None
        except _TooDeep:
            raise SidecarError(f"{where}: elements nested more than {MAX_DEPTH} deep; "
                               "not an XMP sidecar") from None
        self.prefixes: dict[str, str] = builder.prefixes  # uri -> prefix, one per namespace
        self.declared: dict[ET.Element, list[str]] = builder.declared  # where each was declared
        self.namespaces: set[str] = builder.namespaces  # every namespace declared
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


def _get(descriptions: list[ET.Element], name: str, where: str = "") -> str | None:
    """A simple property's text (attribute or element form); None when absent. Raises
    SidecarError when it is a list or a struct instead of a value."""
    for desc in descriptions:
        if name in desc.attrib:
            return desc.attrib[name].strip()
        element = desc.find(name)
        if element is not None:
            if any(child.tag in RDF_CONTAINERS or child.tag == RDF_DESCRIPTION
                   and child.find(RDF_VALUE) is None for child in element):
                raise SidecarError(f"{where}: {_qname(name)} is a list or a struct, not a value")
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

_QNAMES = {RATING: "xmp:Rating", LABEL: "xmp:Label", PICK_LABEL: "digiKam:PickLabel",
           COLOR_LABEL: "digiKam:ColorLabel", URGENCY: "photoshop:Urgency",
           MS_RATING: "MicrosoftPhoto:Rating", DT_COLORLABELS: "darktable:colorlabels",
           RATING_BEFORE_REJECT: "photosense:ratingBeforeReject"}
_INTEGER = re.compile(r"[+-]?[0-9]{1,9}\Z")
_REAL = re.compile(r"[+-]?(?:[0-9]{1,9}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})\Z")


def _qname(name: str) -> str:
    return _QNAMES.get(name, name)


def _read(path: str) -> bytes | None:
    """A sidecar's bytes, or None when there is none (or it is empty). Raises SidecarError
    for a file that cannot be read, is not a regular file or is over MAX_SIDECAR_BYTES (never
    read past the limit: a FIFO or a huge file never hangs a scan)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SidecarError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SidecarError(f"{path}: not a regular file")
        if st.st_size > MAX_SIDECAR_BYTES:
            raise SidecarError(_too_large(path, st.st_size))
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise SidecarError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SIDECAR_BYTES:  # grew while being read
        raise SidecarError(_too_large(path, len(data)))
    return data if data.strip() else None


def _too_large(path: str, size: int) -> str:
    return (f"{path}: {size / 1024 / 1024:.1f} MB is too large for an XMP sidecar (the limit "
            f"is {MAX_SIDECAR_BYTES // 1024 // 1024} MB); not read")


def _bad(where: str, name: str, text: str, expected: str) -> SidecarError:
    shown = text if len(text) <= 40 else text[:37] + "..."
    return SidecarError(f"{where}: {_qname(name)} is {shown!r}, not {expected}; "
                        "the sidecar is not used")


def _integer(text: str | None, name: str, where: str, low: int, high: int) -> int | None:
    """A validated integer property; None when absent or empty (as darktable and digiKam
    treat an empty value)."""
    if text is None or text == "":
        return None
    if not _INTEGER.match(text) or not low <= int(text) <= high:
        raise _bad(where, name, text, f"a whole number from {low} to {high}")
    return int(text)


@dataclass(frozen=True)
class _Fields:
    """The culling properties of one sidecar, validated (None: absent)."""

    rating: float | None  # xmp:Rating: -1, or 0..5
    ms_rating: int | None  # MicrosoftPhoto:Rating, percent 0..100 (digiKam's fallback)
    before_reject: int | None  # photosense:ratingBeforeReject, 0..5
    pick: int | None  # digiKam:PickLabel 0..3
    label: str | None  # xmp:Label, any text ("" counts as absent)
    color_label: int | None  # digiKam:ColorLabel 0..9
    urgency: int | None  # photoshop:Urgency 0..9; a colour only where digiKam wrote it
    dt_labels: tuple[int, ...] | None  # darktable:colorlabels
    digikam: bool  # the sidecar uses digiKam's namespace
    bridge: bool  # written by Adobe Bridge (its label names)

    def stars(self) -> int | None:
        """The stars photosense reads: None for a reject that says nothing about them."""
        if self.rating is not None and self.rating >= 0:
            return min(5, int(self.rating + 0.5))
        if self.rating is not None:  # rejected: the stars kept beside it, if any
            if self.before_reject is not None:
                return self.before_reject
            return None if self.ms_rating is None else _ms_stars(self.ms_rating)
        if self.ms_rating is not None:
            return _ms_stars(self.ms_rating)
        return 0

    def flag(self) -> int:
        if (self.rating is not None and self.rating < 0) or self.pick == PICK_REJECTED:
            return FLAG_REJECT
        return FLAG_PICK if self.pick == PICK_ACCEPTED else FLAG_NONE

    def color(self) -> str | None:
        """The colour photosense reads: xmp:Label's when it is one of photosense's names,
        else digiKam's ColorLabel (or photoshop:Urgency beside it), else darktable's first;
        None for none or for a colour photosense does not have."""
        if self.label:
            found = _COLOR_BY_NAME.get(self.label.lower())
            if found:
                return found
        number = self.color_label if self.color_label is not None else (
            self.urgency if self.digikam else None)
        if number:  # 0 is digiKam's "none": darktable may still have one
            return next((c for c, n in DIGIKAM_COLORS.items() if n == number), None)
        for n in self.dt_labels or ():
            if n < len(COLOR_LABELS):
                return COLOR_LABELS[n]
        return None

    def has_state(self) -> bool:
        return any(v is not None for v in (self.rating, self.ms_rating, self.pick,
                                           self.color_label)) \
            or bool(self.label) or bool(self.dt_labels) \
            or (self.digikam and self.urgency is not None)


def _ms_stars(percent: int) -> int:
    """MicrosoftPhoto:Rating percent -> stars, as digiKam rounds it."""
    return max(i for i, p in enumerate(MS_PERCENT) if percent >= p)


def _dt_list(descriptions: list[ET.Element], where: str) -> tuple[ET.Element | None, tuple[int, ...] | None]:
    """darktable:colorlabels (its element and its numbers), validated."""
    for desc in descriptions:
        if DT_COLORLABELS in desc.attrib:  # not how darktable writes it, but a value
            text = desc.attrib[DT_COLORLABELS].strip()
            value = _integer(text, DT_COLORLABELS, where, 0, 9)
            return None, () if value is None else (value,)
        element = desc.find(DT_COLORLABELS)
        if element is None:
            continue
        items = [li for c in element if c.tag in RDF_CONTAINERS for li in c.iter(RDF_LI)]
        if not items and (element.text or "").strip():
            raise _bad(where, DT_COLORLABELS, element.text.strip(), "a list of colour numbers")
        numbers = []
        for li in items:
            value = _integer((li.text or "").strip(), DT_COLORLABELS, where, 0, 9)
            if value is not None:
                numbers.append(value)
        return element, tuple(numbers)
    return None, None


def _fields(packet: _Packet, where: str) -> _Fields:
    """Read and validate every culling property; raises SidecarError for the first bad one
    (±inf, nan, out of range, not a number, a list where a value belongs...)."""
    descs = packet.descriptions()
    rating_text = _get(descs, RATING, where)
    rating = None
    if rating_text:
        value = float(rating_text) if _REAL.match(rating_text) else math.nan
        if not (value == -1 or 0 <= value <= 5):  # nan fails both
            raise _bad(where, RATING, rating_text, "a rating from 0 to 5 or -1 (rejected)")
        rating = value
    label = _get(descs, LABEL, where)
    try:
        creator = _get(descs, CREATOR_TOOL, where) or ""
    except SidecarError:  # not ours to judge
        creator = ""
    return _Fields(
        rating=rating,
        ms_rating=_integer(_get(descs, MS_RATING, where), MS_RATING, where, 0, 100),
        before_reject=_integer(_get(descs, RATING_BEFORE_REJECT, where), RATING_BEFORE_REJECT,
                               where, 0, 5),
        pick=_integer(_get(descs, PICK_LABEL, where), PICK_LABEL, where, 0, 3),
        label=label or None,
        color_label=_integer(_get(descs, COLOR_LABEL, where), COLOR_LABEL, where, 0, 9),
        urgency=_integer(_get(descs, URGENCY, where), URGENCY, where, 0, 9),
        dt_labels=_dt_list(descs, where)[1],
        digikam=DIGIKAM_NS in packet.namespaces,
        bridge="bridge" in creator.lower(),
    )


def _state_of(packet: _Packet, where: str = "") -> SidecarState | None:
    fields = _fields(packet, where)
    if not fields.has_state():
        return None
    return SidecarState(rating=fields.stars(), label=fields.color(), flag=fields.flag())


def read_sidecar(path: str | os.PathLike) -> SidecarState | None:
    """The rating, colour label and pick/reject a sidecar holds; None when the file does not
    exist or holds none of them. Raises SidecarError for an unreadable, oversized or
    malformed file, or one with a bad value."""
    path = os.fspath(path)
    data = _read(path)
    return None if data is None else _state_of(_Packet(data, path), path)


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


def _reason(exc: SidecarError, path: str) -> str:
    """A SidecarError's message without its leading path."""
    message = str(exc)
    return message[len(path) + 2:] if message.startswith(path + ": ") else message


def import_sidecars(library: Library, paths: Iterable[str], *, conflict: str | None = None,
                    style: str | None = None, errors: list[tuple[str, str]] | None = None,
                    prefer: Mapping[str, str] | None = None, progress: ProgressFn | None = None,
                    cancel: threading.Event | None = None,
                    listing: FolderListing | None = None) -> int:
    """Read the sidecars of these photos (library paths) into the library; returns how many
    photos changed. ``conflict`` (default: the library's ``xmp_conflict`` setting): "library"
    keeps the library's values for photos that already have a flag, rating or label;
    "sidecar" always takes the sidecar's.

    Every existing sidecar of a photo is read and checked; the first good one (``prefer``:
    photo path -> the sidecar to take first, one just edited elsewhere) gives the values.
    A sidecar that cannot be read, is too large, is malformed or holds a bad value is
    skipped with a warning and appended to ``errors`` as (sidecar path, reason), and it is not
    remembered as read: the next scan tries it again. The others are imported. Does not write
    sidecars back. ``progress(done, total)`` after each photo; ``cancel`` stops reading (what
    was read so far is imported). ``listing``: the folder listings to look names up in, kept
    by a caller that imports a folder's photos in many calls (a scan: each folder is listed
    once, not once a batch)."""
    paths = list(dict.fromkeys(paths))
    if not paths:
        return 0
    conflict = _checked(conflict, CONFLICT_POLICIES, "conflict policy") if conflict else \
        conflict_policy(library)
    style = _checked(style, SIDECAR_STYLES, "sidecar style") if style else sidecar_style(library)
    folders = listing or FolderListing()
    known = _states_by_path(library, paths)
    changes: list[PhotoState] = []
    marks: list[tuple[str, int, int, int]] = []
    for done, path in enumerate(paths, 1):
        if cancel is not None and cancel.is_set():
            break
        if progress is not None:
            progress(done, len(paths))
        if path not in known:
            continue
        pid, companion, flag, rating, label = known[path]
        candidates = existing_sidecars(path, style, companion, folders)
        wanted = (prefer or {}).get(path)
        if wanted is not None:
            first = [c for c in candidates if c == wanted] or \
                [c for c in candidates if c.lower() == wanted.lower()]
            candidates = first[:1] + [c for c in candidates if c not in first[:1]]
        source = None
        for sidecar in candidates:
            try:
                st = os.stat(sidecar)  # before reading: a later edit is newer than the mark
                state = read_sidecar(sidecar)
            except FileNotFoundError:
                continue  # deleted meanwhile
            except (OSError, SidecarError) as exc:
                reason = _reason(exc, sidecar) if isinstance(exc, SidecarError) else \
                    f"cannot read ({exc.strerror})"
                log.warning("XMP sidecar ignored: %s: %s", sidecar, reason)
                if errors is not None:
                    errors.append((sidecar, reason))
                continue
            marks.append((sidecar, pid, st.st_size, st.st_mtime_ns))
            if source is None:
                source = (sidecar, state)
        if source is None or source[1] is None:
            continue
        sidecar, state = source
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
    library.mark_sidecars(marks)  # only the sidecars read and imported
    return len(changes)


# -- writing ------------------------------------------------------------------------------

def _label_name(color: str, fields: _Fields) -> str:
    """The xmp:Label text for a colour in the vocabulary the sidecar already speaks: Bridge's
    names in a sidecar with a Bridge label (or written by Bridge), else Lightroom's."""
    current = (fields.label or "").lower()
    bridge_names = {n.lower() for n in BRIDGE_LABEL_NAMES.values()}
    if current in bridge_names or (fields.bridge and current not in
                                   {n.lower() for n in LABEL_NAMES.values()}):
        return BRIDGE_LABEL_NAMES[color]
    return LABEL_NAMES[color]


def _set_dt_labels(packet: _Packet, element: ET.Element, old: tuple[int, ...],
                   color: str | None, previous: str | None) -> None:
    """darktable's list after a label change: the new colour first, darktable's other
    colours after it; no list at all once the label is cleared."""
    desc = next(d for d in packet.descriptions() if element in list(d))
    if color is None:
        _remove(desc, element)
        return
    number = DARKTABLE_COLORS[color]
    drop = {number} | ({DARKTABLE_COLORS[previous]} if previous else set())
    numbers = [number] + [n for n in old if n not in drop]
    seq = next((c for c in element if c.tag in RDF_CONTAINERS), None)
    if seq is None:
        seq = ET.Element(f"{{{RDF_NS}}}Seq")
        _append(element, seq, packet._depth(element))
    items = [li for li in seq if li.tag == RDF_LI]
    for li, n in zip(items, numbers):
        li.text = str(n)
    for li in items[len(numbers):]:
        _remove(seq, li)
    depth = packet._depth(seq)
    for n in numbers[len(items):]:
        li = ET.Element(RDF_LI)
        li.text = str(n)
        _append(seq, li, depth)


def _merge(packet: _Packet, row: PhotoRow, scores: dict[str, float], model: str | None,
           where: str = "") -> None:
    """Change only what differs from the row, in the vocabulary of each field already there;
    raises SidecarError (before changing anything) when the sidecar holds a bad value."""
    fields = _fields(packet, where)
    main = packet.main_description()
    descs = packet.descriptions()
    stars = max(0, min(5, int(row.rating)))
    reject = row.flag == FLAG_REJECT
    # xmp:Rating: -1 for a reject (darktable, Bridge); the stars stay in photosense's
    # namespace and in MicrosoftPhoto:Rating where digiKam keeps them.
    if reject:
        if fields.rating != -1:
            _set(descs, main, RATING, "-1")
    elif fields.rating is None or fields.rating < 0 or fields.stars() != stars:
        _set(descs, main, RATING, str(stars))
    if fields.ms_rating is not None and _ms_stars(fields.ms_rating) != stars:
        _set(descs, main, MS_RATING, str(MS_PERCENT[stars]))
    pick_flag = {PICK_REJECTED: FLAG_REJECT, PICK_ACCEPTED: FLAG_PICK}.get(fields.pick, FLAG_NONE)
    if fields.pick is None or pick_flag != row.flag:
        _set(descs, main, PICK_LABEL, str(_PICK_BY_FLAG.get(row.flag, PICK_NONE)))
    # Colour labels: untouched (verbatim, even a colour photosense does not have) unless
    # photosense's colour differs from what the sidecar says; then every label field there is
    # changed together.
    color = row.color_label if row.color_label in COLOR_LABELS else None
    previous = fields.color()
    if color != previous:
        _set(descs, main, LABEL, _label_name(color, fields) if color else None)
        number = DIGIKAM_COLORS[color] if color else 0
        if fields.color_label is not None:
            _set(descs, main, COLOR_LABEL, str(number))
        if fields.urgency is not None and fields.digikam:
            _set(descs, main, URGENCY, str(number))
        element, old = _dt_list(descs, where)
        if element is not None:
            _set_dt_labels(packet, element, old or (), color, previous)
        elif old is not None:  # an attribute
            _set(descs, main, DT_COLORLABELS, str(DARKTABLE_COLORS[color]) if color else None)
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
    if reject and stars:
        element = ET.Element(RATING_BEFORE_REJECT)
        element.text = str(stars)
        _append(main, element, depth)
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
    _merge(packet, row, scores, model, path)
    data = packet.serialise()
    if data == old:
        return False
    try:
        _write_atomically(path, data)
    except OSError as exc:
        raise SidecarError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return True


def _targets(row: PhotoRow, style: str, folders: FolderListing) -> list[str]:
    """Where to write: every sidecar the photo already has (whatever its naming, so that two
    never disagree); only a photo with none gets new ones, named in this style. Raises
    SidecarError when a new ``photo.xmp`` would be shared with another image."""
    found = existing_sidecars(row.path, style, row.companion_path, folders)
    if found:
        return found
    if style == "stem":
        other = folders.stem_shared_with(row.path, row.companion_path)
        if other:
            name = os.path.basename(sidecar_paths(row.path, style)[0])
            raise SidecarError(f"{name} would also be the sidecar of {os.path.basename(other)}; "
                               "use the 'ext' sidecar style")
    return [folders.existing(p) or p for p in sidecar_paths(row.path, style, row.companion_path)]


def _unwritable(row: PhotoRow) -> str | None:
    """Why a photo gets no sidecar: its file is missing or could not be read."""
    if row.missing:
        return "the photo's file is missing"
    if row.error:
        return f"the photo could not be read ({row.error})"
    return None


def write_sidecar(row: PhotoRow, style: str = DEFAULT_STYLE, scores: dict[str, float] | None = None,
                  model: str | None = None) -> list[str]:
    """Write (merge) a photo's culling state, ``scores`` (default: ``row.scores``) and
    ``model`` id into its sidecar(s); returns the sidecar paths that now hold them. Raises
    SidecarError (after trying every sidecar of the photo) when one could not be written, or
    when the photo's file is missing or unreadable."""
    _checked(style, SIDECAR_STYLES, "sidecar style")
    reason = _unwritable(row)
    if reason:
        raise SidecarError(f"{row.path}: no sidecar written: {reason}")
    paths, errors = [], []
    folders = FolderListing()
    for path in _targets(row, style, folders):
        sweep_folder(os.path.dirname(path))
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
    active model's scores. Photos whose file is missing or could not be read are skipped.
    Per-photo failures are in the report (and logged), never raised. Temporary files that an
    interrupted write left in a folder are swept on the way."""
    style = _checked(style, SIDECAR_STYLES, "sidecar style") if style else sidecar_style(library)
    if ids is None:
        ids = library.query_ids(PhotoQuery(include_missing=False))
    ids = list(ids)
    active = library.active_model()
    model = active.key if active else None
    report = SidecarReport()
    folders = FolderListing()
    swept: set[str] = set()
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
            reason = _unwritable(row)
            if reason:
                report.skipped.append((row.path, reason))
                continue
            try:
                targets = _targets(row, style, folders)
            except SidecarError as exc:
                report.errors.append((row.path, str(exc)))
                log.warning("%s: %s", row.path, exc)
                continue
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
                directory = os.path.dirname(target)
                if directory not in swept:
                    swept.add(directory)
                    sweep_temporaries(os.path.join(directory, n)
                                      for n in folders.names(directory).values()
                                      if n.startswith(".") and is_own_temporary(n))
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
