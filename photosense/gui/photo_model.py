"""The grid's model: the current query's photo ids, rows loaded lazily per page.

A query returns ordered ids in one SQL query (on the library thread). Rows are exposed to the
view in batches (``canFetchMore``/``fetchMore``) and their data (``PhotoRow``) is read a page
at a time on the library thread when the view first asks for it; until then a cell shows a
placeholder, so painting never waits on the database. Changes (flags, new scores) update the
cached rows and emit ``dataChanged`` for exactly the rows concerned.

An ``Arrangement`` says how a query's ids are shown: in the order of a text search, and with
each burst collapsed to its best photo. It is applied on the library thread with the query;
expanding or collapsing one group afterwards inserts or removes just that group's rows.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal

from photosense.curation.groups import Group, best_chooser, collapse
from photosense.gui.jobs import SerialExecutor
from photosense.gui.thumbnails import ThumbnailLoader
from photosense.ingest.decode import is_raw_path
from photosense.library import (
    CHECK_NAMES,
    FACE_CHECK_NAMES,
    Library,
    PhotoQuery,
    PhotoRow,
    PhotoState,
)

log = logging.getLogger("photosense.gui")

_USER = Qt.ItemDataRole.UserRole.value
PhotoIdRole = _USER + 1
RowRole = _USER + 2  # PhotoRow | None (None until its page is loaded)
ThumbnailRole = _USER + 3  # QPixmap | None
BadgeRole = _USER + 4  # formatted value of the sort key, or None
SortValueRole = _USER + 5  # float | None
ThumbErrorRole = _USER + 6  # str | None
GroupSizeRole = _USER + 7  # int | None: members of the burst this photo stands for
GroupExpandedRole = _USER + 8  # bool: its burst is expanded
GroupMemberRole = _USER + 9  # bool: shown as another member of an expanded burst
FileKindRole = _USER + 10  # "RAW" | "RAW+JPG" | None
SimilarityRole = _USER + 11  # float | None: cosine with the text of the current search

CULLING_ROLES = [RowRole]

PAGE_SIZE = 200  # rows read from the library at once
FETCH_BATCH = 2000  # rows exposed to the view per fetchMore
MAX_CACHED_PAGES = 60


def value_of(row: PhotoRow, key: str) -> float | None:
    """The value of a score or check on a row (None for basic sorts and missing values)."""
    if key in CHECK_NAMES:
        return row.checks.get(key)
    if key in FACE_CHECK_NAMES:
        return row.face_checks[key]
    return row.scores.get(key)


def format_value(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    if key == "exposure":
        return f"{value:+.2f}"
    if key == "noise":
        return f"{value:.1f}"
    return f"{value:.2f}"


def file_kind(row: PhotoRow) -> str | None:
    """"RAW+JPG" for a RAW+JPEG pair, "RAW" for a RAW alone, None for other files."""
    if not is_raw_path(row.path):
        return None
    return "RAW+JPG" if row.companion_path else "RAW"


@dataclass(frozen=True)
class Arrangement:
    """How a query's photos are shown. ``ranking``: a text search's ids, best first (the view
    keeps those the query selects, in this order); ``groups``: bursts to collapse, each to its
    best photo by ``best_by``; ``expanded``: ids whose burst is shown whole."""

    ranking: tuple[int, ...] | None = None
    similarity: Mapping[int, float] = field(default_factory=dict)
    search_text: str = ""
    groups: tuple[Group, ...] | None = None
    best_by: str = "quality"
    expanded: frozenset[int] = frozenset()


@dataclass
class ArrangedIds:
    ids: list[int]
    members: dict[int, list[int]]  # shown id -> its burst's members in the view, in view order
    expanded: set[int]  # shown ids whose burst is expanded


def arrange(library: Library, ids: list[int], arrangement: Arrangement) -> ArrangedIds:
    """Apply ``arrangement`` to a query's ids (library thread: may read the library)."""
    if arrangement.ranking is not None:
        present = set(ids)
        ids = [i for i in arrangement.ranking if i in present]
    if not arrangement.groups:
        return ArrangedIds(ids, {}, set())
    grouped = {pid for g in arrangement.groups for pid in g.ids}
    # As "best of each group" chooses: nobody blinked, sharpest eyes, then best_by.
    shown, members = collapse(ids, arrangement.groups,
                              best_chooser(library, grouped, arrangement.best_by))
    expanded = {best for best, m in members.items() if not arrangement.expanded.isdisjoint(m)}
    if expanded:
        out: list[int] = []
        for pid in shown:
            out.append(pid)
            if pid in expanded:
                out.extend(m for m in members[pid] if m != pid)
        shown = out
    return ArrangedIds(shown, members, expanded)


class PhotoListModel(QAbstractListModel):
    """Photos of one query, in order."""

    queryStarted = Signal()
    queryFinished = Signal(int)  # number of photos
    queryFailed = Signal(str)

    def __init__(self, library: Library, db: SerialExecutor, thumbnails: ThumbnailLoader,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.library = library
        self.db = db
        self.thumbnails = thumbnails
        self.query = PhotoQuery()
        self.arrangement = Arrangement()
        self._ids: list[int] = []
        self._members: dict[int, list[int]] = {}  # shown id -> burst members in view order
        self._expanded: set[int] = set()
        self._member_of: dict[int, int] = {}  # id shown inside an expanded burst -> its shown id
        self._pos: dict[int, int] = {}
        self._exposed = 0
        self._rows: dict[int, PhotoRow] = {}
        self._pages: OrderedDict[int, list[int]] = OrderedDict()  # page number -> ids cached
        self._loading: set[int] = set()
        self._generation = 0
        self._querying = False
        thumbnails.ready.connect(self._on_thumbnail)

    # -- queries --------------------------------------------------------------------------

    def set_query(self, query: PhotoQuery) -> None:
        """Run ``query`` (then ``arrangement``) on the library thread; the model resets when
        the ids arrive."""
        self.query = query
        self._generation += 1
        generation = self._generation
        self._querying = True
        self.queryStarted.emit()
        q = replace(query)
        arrangement, library = self.arrangement, self.library
        self.db.submit(lambda: arrange(library, library.query_ids(q), arrangement),
                       lambda ids: self._on_ids(generation, ids),
                       lambda msg: self._on_query_error(generation, msg))

    def refresh(self) -> None:
        """Run the current query again (new photos, new order)."""
        self.set_query(self.query)

    def _on_query_error(self, generation: int, message: str) -> None:
        if generation == self._generation:
            self._querying = False
            self.queryFailed.emit(message)

    def _on_ids(self, generation: int, arranged: ArrangedIds) -> None:
        if generation != self._generation:
            return  # a newer query is on its way
        ids = arranged.ids
        self.beginResetModel()
        self._ids = ids
        self._pos = {pid: i for i, pid in enumerate(ids)}
        self._members = arranged.members
        self._expanded = arranged.expanded
        self._member_of = {m: best for best in arranged.expanded for m in arranged.members[best] if m != best}
        self._exposed = min(len(ids), FETCH_BATCH)
        self._rows.clear()
        self._pages.clear()
        self._loading.clear()
        self.thumbnails.drop_pending()
        self.endResetModel()
        self._querying = False
        self.queryFinished.emit(len(ids))

    @property
    def busy(self) -> bool:
        return self._querying or bool(self._loading)

    @property
    def ids(self) -> list[int]:
        """Every id of the query, in order (also those not exposed to the view yet)."""
        return self._ids

    def total(self) -> int:
        return len(self._ids)

    # -- bursts -----------------------------------------------------------------------------

    def group_of(self, photo_id: int) -> int | None:
        """The shown id of the burst ``photo_id`` belongs to in this view (None: no burst)."""
        if photo_id in self._members:
            return photo_id
        return self._member_of.get(photo_id)

    def group_members(self, photo_id: int) -> list[int]:
        shown = self.group_of(photo_id)
        return list(self._members.get(shown, [])) if shown is not None else []

    def is_expanded(self, photo_id: int) -> bool:
        return self.group_of(photo_id) in self._expanded

    def groups_in_view(self) -> list[Group]:
        """Each burst of the view with its members in the view (at least two each)."""
        return [Group(list(m), "burst") for m in self._members.values()]

    def set_expanded(self, photo_id: int, expanded: bool) -> bool:
        """Show the whole burst of ``photo_id`` right after its best photo, or only the best
        again. Inserts or removes just those rows. False when there is nothing to change."""
        shown = self.group_of(photo_id)
        if shown is None or (shown in self._expanded) == expanded:
            return False
        others = [m for m in self._members[shown] if m != shown]
        row = self._pos[shown]
        first = row + 1
        exposed = row < self._exposed
        if expanded:
            if exposed:
                self.beginInsertRows(QModelIndex(), first, first + len(others) - 1)
            self._ids[first:first] = others
            if exposed:
                self._exposed += len(others)
            self._expanded.add(shown)
            self._member_of.update((m, shown) for m in others)
        else:
            assert self._ids[first:first + len(others)] == others, "burst rows out of place"
            n_exposed = max(0, min(first + len(others), self._exposed) - first)
            if n_exposed:
                self.beginRemoveRows(QModelIndex(), first, first + n_exposed - 1)
            del self._ids[first:first + len(others)]
            self._exposed -= n_exposed
            self._expanded.discard(shown)
            for m in others:
                self._member_of.pop(m, None)
        self._pos = {pid: i for i, pid in enumerate(self._ids)}
        if expanded and exposed:
            self.endInsertRows()
        elif not expanded and n_exposed:
            self.endRemoveRows()
        ids = set(self._expanded)
        self.arrangement = replace(self.arrangement, expanded=frozenset(
            m for best in ids for m in self._members[best]))
        idx = self.index(self._pos[shown])
        self.dataChanged.emit(idx, idx, [GroupExpandedRole])
        return True

    # -- Qt model API ---------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's own signature
        return 0 if parent.isValid() else self._exposed

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> bool:
        return not parent.isValid() and self._exposed < len(self._ids)

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> None:
        if parent.isValid():
            return
        n = min(FETCH_BATCH, len(self._ids) - self._exposed)
        if n <= 0:
            return
        self.beginInsertRows(QModelIndex(), self._exposed, self._exposed + n - 1)
        self._exposed += n
        self.endInsertRows()

    def ensure_exposed(self, row: int) -> None:
        """Expose rows up to ``row`` (to select or scroll to a photo far down the list)."""
        if row >= self._exposed and row < len(self._ids):
            self.beginInsertRows(QModelIndex(), self._exposed, row)
            self._exposed = row + 1
            self.endInsertRows()

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= self._exposed:
            return None
        pid = self._ids[index.row()]
        if role == PhotoIdRole:
            return pid
        row = self._rows.get(pid)
        if row is None:
            self._request_page(index.row() // PAGE_SIZE)
        if role == RowRole:
            return row
        if row is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return row.name
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.path if not row.error else f"{row.path}\n{row.error}"
        if role == ThumbnailRole:
            pm = self.thumbnails.pixmap(pid)
            if pm is None and not row.missing:
                # A RAW+JPEG pair: the JPEG decodes faster than the RAW's preview.
                self.thumbnails.request(pid, row.companion_path or row.path, row.mtime, row.size)
            return pm
        if role == ThumbErrorRole:
            return "file missing" if row.missing else self.thumbnails.error(pid)
        if role == GroupSizeRole:
            members = self._members.get(pid)
            return len(members) if members else None
        if role == GroupExpandedRole:
            return pid in self._expanded
        if role == GroupMemberRole:
            return pid in self._member_of
        if role == FileKindRole:
            return file_kind(row)
        if role == SimilarityRole:
            return self.arrangement.similarity.get(pid) if self.arrangement.ranking is not None else None
        if role in (BadgeRole, SortValueRole):
            if self.arrangement.ranking is not None:
                sim = self.arrangement.similarity.get(pid)
                return sim if role == SortValueRole else format_value("similarity", sim)
            key = self.query.sort
            if key in ("name", "capture_time", "mtime", "added"):
                return None
            value = value_of(row, key)
            return value if role == SortValueRole else format_value(key, value)
        return None

    # -- lazy rows ------------------------------------------------------------------------

    def _request_page(self, page: int) -> None:
        if page in self._loading:
            return
        ids = self._ids[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
        if not ids:
            return
        self._loading.add(page)
        generation = self._generation
        self.db.submit(lambda: self.library.rows(ids),
                       lambda rows: self._on_page(generation, page, rows),
                       lambda msg: self._on_page_error(generation, page, msg))

    def _on_page_error(self, generation: int, page: int, message: str) -> None:
        if generation == self._generation:
            self._loading.discard(page)
            self.queryFailed.emit(message)

    def _on_page(self, generation: int, page: int, rows: list[PhotoRow]) -> None:
        if generation != self._generation:
            return
        self._loading.discard(page)
        for r in rows:
            self._rows[r.id] = r
        self._pages[page] = [r.id for r in rows]
        self._pages.move_to_end(page)
        while len(self._pages) > MAX_CACHED_PAGES:
            _old, old_ids = self._pages.popitem(last=False)
            for pid in old_ids:
                self._rows.pop(pid, None)
        first = page * PAGE_SIZE
        last = min(first + PAGE_SIZE, self._exposed) - 1
        if last >= first:
            self.dataChanged.emit(self.index(first), self.index(last))

    def row_of(self, photo_id: int) -> int | None:
        return self._pos.get(photo_id)

    def photo_row(self, photo_id: int) -> PhotoRow | None:
        """The cached row of a photo (None when its page is not loaded)."""
        return self._rows.get(photo_id)

    def loaded_ids(self) -> list[int]:
        return list(self._rows)

    # -- updates ----------------------------------------------------------------------------

    def apply_states(self, states: Iterable[PhotoState]) -> None:
        """Show new flags/ratings/labels at once (the write goes to the library separately)."""
        changed = []
        for st in states:
            row = self._rows.get(st.photo_id)
            if row is None:
                continue
            if (row.flag, row.rating, row.color_label) != (st.flag, st.rating, st.color_label):
                row.flag, row.rating, row.color_label = st.flag, st.rating, st.color_label
                changed.append(st.photo_id)
        self._emit_changed(changed, CULLING_ROLES)

    def update_rows(self, rows: Sequence[PhotoRow]) -> None:
        """Fresh rows from the library (e.g. new scores); only rows that differ are signalled."""
        changed = []
        for r in rows:
            old = self._rows.get(r.id)
            if old is None:
                continue
            if old != r:
                self._rows[r.id] = r
                changed.append(r.id)
        self._emit_changed(changed, None)

    def refresh_rows(self, ids: Iterable[int] | None = None) -> None:
        """Re-read cached rows (all, or ``ids``) from the library and update what changed."""
        wanted = [pid for pid in (self._rows if ids is None else ids) if pid in self._rows]
        if not wanted:
            return
        generation = self._generation
        self.db.submit(lambda: self.library.rows(wanted),
                       lambda rows: generation == self._generation and self.update_rows(rows))

    def _emit_changed(self, ids: Iterable[int], roles) -> None:
        """dataChanged for exactly these photos, one signal per run of adjacent rows."""
        rows = sorted(r for r in (self._pos.get(pid) for pid in ids) if r is not None and r < self._exposed)
        start = prev = None
        for r in rows + [None]:
            if start is not None and (r is None or r != prev + 1):
                args = (self.index(start), self.index(prev))
                if roles:
                    self.dataChanged.emit(*args, roles)
                else:
                    self.dataChanged.emit(*args)
                start = None
            if r is not None and start is None:
                start = r
            prev = r

    def _on_thumbnail(self, photo_id: int) -> None:
        r = self._pos.get(photo_id)
        if r is not None and r < self._exposed:
            idx = self.index(r)
            self.dataChanged.emit(idx, idx, [ThumbnailRole])

    def roleNames(self):
        names = super().roleNames()
        names.update({PhotoIdRole: b"photoId", RowRole: b"row", ThumbnailRole: b"thumbnail",
                      BadgeRole: b"badge", SortValueRole: b"sortValue", ThumbErrorRole: b"thumbError",
                      GroupSizeRole: b"groupSize", GroupExpandedRole: b"groupExpanded",
                      GroupMemberRole: b"groupMember", FileKindRole: b"fileKind",
                      SimilarityRole: b"similarity"})
        return names
