"""Bursts and near-duplicates: photos taken seconds apart that look alike, and exact copies.

``find_groups`` makes one pass over the photos in time order (EXIF capture time, else file
mtime): two consecutive photos (among those with a feature for the model) join one group when
they are at most ``window_s`` seconds apart and the cosine similarity of their image features
is at least ``threshold``. Photos with the same content hash are exact duplicates and always
share a group, whatever their times; a photo without a feature can group only that way.

A group's ``kind``: "duplicate" when all its members are the same file content, "burst" when
no two are, "burst+duplicate" otherwise (a burst that also holds copies).

``best_of`` / ``best_of_groups`` pick each group's best photo by an attribute or a check in
its natural order (as a view sorted by it would show it first); ``collapse`` keeps only the best
of each group in a view; ``pick_best_of_groups`` flags it pick and the rest reject as one
undoable action. numpy only, no Qt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from photosense.library import FLAG_PICK, FLAG_REJECT, Library, PhotoQuery, PhotoState

log = logging.getLogger("photosense.curation")

DEFAULT_WINDOW_S = 3.0
DEFAULT_THRESHOLD = 0.92
GROUP_KINDS = ("burst", "duplicate", "burst+duplicate")
_EPOCH = datetime(1970, 1, 1)
_CHUNK = 8192  # rows per consecutive-similarity product (bounds temporaries)


@dataclass(frozen=True)
class Group:
    """Photos shot as one burst, or copies of one file; ``ids`` in time order."""

    ids: list[int]
    kind: str

    def __len__(self) -> int:
        return len(self.ids)


def photo_time(capture_time: datetime | None, mtime: float) -> float:
    """Seconds for ordering: the capture time (camera clock, naive = as written), else mtime."""
    if capture_time is None:
        return float(mtime)
    if capture_time.tzinfo is not None:
        capture_time = capture_time.astimezone(UTC).replace(tzinfo=None)
    return (capture_time - _EPOCH).total_seconds()


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _resolve_model_id(library: Library, model: str | None) -> int | None:
    info = library.model(model) if model else library.active_model()
    if model and info is None:
        from photosense.errors import PhotosenseError

        raise PhotosenseError(f"unknown model: {model}")
    return None if info is None else info.id


def find_groups(library: Library, model: str | None = None, window_s: float = DEFAULT_WINDOW_S,
                threshold: float = DEFAULT_THRESHOLD) -> list[Group]:
    """Bursts and exact duplicates among the library's present photos (see the module doc).

    ``model``: the model key whose features are compared (default: the active model; with no
    model scored yet only exact duplicates are found). Groups come in time order."""
    if window_s < 0:
        raise ValueError("window_s must be >= 0")
    timeline = library.time_and_hash()
    if not timeline:
        return []
    ids = np.fromiter((r[0] for r in timeline), dtype=np.int64, count=len(timeline))
    times = np.fromiter((photo_time(r[1], r[2]) for r in timeline), dtype=np.float64,
                        count=len(timeline))
    hashes = [r[3] for r in timeline]
    order = np.lexsort((ids, times))  # by time, then id
    ids, times = ids[order], times[order]
    hashes = [hashes[i] for i in order]
    uf = _UnionFind(len(ids))

    model_id = _resolve_model_id(library, model)
    if model_id is not None:
        feat_ids, matrix = library.feature_matrix(model_id)
        if len(feat_ids):
            pos = np.searchsorted(feat_ids, ids)
            pos_clipped = np.minimum(pos, len(feat_ids) - 1)
            has = feat_ids[pos_clipped] == ids
            seq = np.nonzero(has)[0]  # positions (in time order) of photos with a feature
            rows = pos_clipped[seq]
            for a, b in _burst_links(times[seq], matrix, rows, window_s, threshold):
                uf.union(int(seq[a]), int(seq[b]))

    first_with_hash: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h is None:
            continue
        if h in first_with_hash:
            uf.union(first_with_hash[h], i)
        else:
            first_with_hash[h] = i

    members: dict[int, list[int]] = {}
    for i in range(len(ids)):
        members.setdefault(uf.find(i), []).append(i)
    groups = []
    for root in sorted(members):  # roots are each group's earliest position
        positions = members[root]
        if len(positions) < 2:
            continue
        member_hashes = [hashes[i] for i in positions]
        known = [h for h in member_hashes if h is not None]
        distinct = len(set(known)) + (len(member_hashes) - len(known))
        if distinct == 1:
            kind = "duplicate"
        elif distinct == len(positions):
            kind = "burst"
        else:
            kind = "burst+duplicate"
        groups.append(Group([int(ids[i]) for i in positions], kind))
    return groups


def _burst_links(times: np.ndarray, matrix: np.ndarray, rows: np.ndarray, window_s: float,
                 threshold: float):
    """(a, b) index pairs of consecutive photos (b = a + 1) close in time and in looks."""
    n = len(rows)
    if n < 2:
        return
    close = np.nonzero(np.diff(times) <= window_s)[0]
    for start in range(0, len(close), _CHUNK):
        part = close[start:start + _CHUNK]
        a = matrix[rows[part]].astype(np.float32, copy=False)
        b = matrix[rows[part + 1]].astype(np.float32, copy=False)
        cos = np.einsum("ij,ij->i", a, b)
        for k in np.nonzero(cos >= threshold)[0]:
            yield int(part[k]), int(part[k] + 1)


#: Eye sharpness this close to a group's sharpest counts as "as sharp" (the attribute decides).
EYE_SHARPNESS_TIE = 0.05


def _eye_key(group: Group, faces: dict[int, tuple[int, int, float | None]]):
    """Per member, (someone blinked, eyes less sharp than the group's sharpest): False sorts
    first. All False for a group in which no faces were found."""
    sharp = [faces[p][2] for p in group.ids if p in faces and faces[p][2] is not None]
    if not sharp:
        return lambda pid: (False, False)
    open_sharp = [faces[p][2] for p in group.ids
                  if p in faces and faces[p][2] is not None and faces[p][1] == 0]
    top = max(open_sharp or sharp)

    def key(pid):
        count, closed, value = faces.get(pid, (0, 0, None))
        return (closed > 0, value is None or value < top - EYE_SHARPNESS_TIE)

    return key


def best_of_groups(groups: Sequence[Group], library: Library, by: str,
                   model: str | None = None) -> list[int]:
    """The best member of each group: where faces were found, first a frame in which nobody's
    eyes are closed, then one whose eyes are (within EYE_SHARPNESS_TIE) the sharpest; then by
    ``by`` (an attribute or a check, in its natural order: noise lowest, scores highest), as
    a view sorted by ``by`` shows first. Members without a value come last; ties go to the
    name order. One query for all groups."""
    if not groups:
        return []
    best = best_chooser(library, {i for g in groups for i in g.ids}, by, model)
    return [best(g) for g in groups]


def best_chooser(library: Library, ids, by: str, model: str | None = None,
                 ) -> Callable[[Group], int]:
    """A function giving the best member of a group (of photos among ``ids``), as
    ``best_of_groups`` chooses it; the library is read once, here."""
    all_ids = sorted(ids)
    ranked = library.query_ids(PhotoQuery(sort=by, ids=all_ids, model=model))
    rank = {pid: r for r, pid in enumerate(ranked)}
    last = len(ranked)
    faces = library.face_summaries(all_ids)

    def best(g: Group) -> int:
        eyes = _eye_key(g, faces)
        return min(g.ids, key=lambda pid: (*eyes(pid), rank.get(pid, last)))  # first wins ties

    return best


def best_reason(group: Group, best: int, library: Library, by: str) -> str:
    """One line saying why ``best`` won its group: "no closed eyes, sharpest eyes of 6"."""
    n = len(group.ids)
    faces = library.face_summaries(group.ids)
    with_faces = [p for p in group.ids if faces.get(p, (0, 0, None))[0] > 0]
    if not with_faces:
        return f"best {by} of {n}"
    _count, closed, sharp = faces.get(best, (0, 0, None))
    blinked = sum(1 for p in with_faces if faces[p][1] > 0)
    if closed == 0:
        parts = ["no closed eyes" + (f" ({blinked} of {n} with closed eyes)" if blinked else "")]
    else:
        parts = [f"closed eyes in every frame ({closed} here)"] if blinked == len(with_faces) \
            else [f"{closed} with closed eyes"]
    rivals = [faces[p][2] for p in with_faces
              if faces[p][2] is not None and (faces[p][1] == 0 or closed > 0)]
    if sharp is not None and rivals and sharp >= max(rivals):
        parts.append(f"sharpest eyes of {n}")
    elif sharp is not None:
        parts.append(f"eyes as sharp as the sharpest, best {by}")
    return ", ".join(parts)


def best_of(group: Group, library: Library, by: str, model: str | None = None) -> int:
    """The best photo of one group by an attribute or check (see ``best_of_groups``)."""
    return best_of_groups([group], library, by, model)[0]


def collapse(ids_in_view_order: Sequence[int], groups: Sequence[Group],
             best_by: Callable[[Group], int] | Sequence[int],
             ) -> tuple[list[int], dict[int, list[int]]]:
    """Collapse each group to one photo in a view: returns (the view's ids with each group
    shown once, {shown id: the group's members in the view, in view order} for expanding).

    ``best_by``: a function Group -> best id, or the best id of each group (parallel to
    ``groups``, e.g. from ``best_of_groups``). A group's photo appears where its first member
    in the view was. When the best is not in the view (filtered out), a function ``best_by``
    is asked again for the best of the visible members; with a list, the first visible member
    is shown. Groups with fewer than two members in the view are left as they are."""
    view = list(ids_in_view_order)
    in_view = set(view)
    group_of: dict[int, int] = {}
    for gi, g in enumerate(groups):
        for pid in g.ids:
            group_of.setdefault(pid, gi)
    position = {pid: k for k, pid in enumerate(view)}
    visible: dict[int, list[int]] = {}
    for pid in view:
        gi = group_of.get(pid)
        if gi is not None:
            visible.setdefault(gi, []).append(pid)

    shown_for: dict[int, int] = {}  # group index -> id shown
    expand: dict[int, list[int]] = {}
    for gi, members in visible.items():
        if len(members) < 2:
            continue
        group = groups[gi]
        if callable(best_by):
            best = best_by(group)
            if best not in in_view:
                ordered = sorted(members, key=group.ids.index)
                best = best_by(Group(ordered, group.kind))
        else:
            best = best_by[gi]
        if best not in in_view:
            best = members[0]
        shown_for[gi] = best
        expand[best] = sorted(members, key=position.__getitem__)

    out: list[int] = []
    placed: set[int] = set()
    for pid in view:
        gi = group_of.get(pid)
        if gi is None or gi not in shown_for:
            out.append(pid)
        elif gi not in placed:
            placed.add(gi)
            out.append(shown_for[gi])
    return out, expand


def pick_best_of_groups(library: Library, groups: Sequence[Group], by: str,
                        model: str | None = None) -> list[PhotoState]:
    """Flag each group's best photo pick and the others reject, in one transaction; ratings
    and colour labels stay. Returns the previous states (``library.set_states`` undoes it)."""
    if not groups:
        return []
    bests = best_of_groups(groups, library, by, model)
    new_flag: dict[int, int] = {}
    for g, best in zip(groups, bests):
        for pid in g.ids:
            # A photo in two groups cannot happen (groups are disjoint); pick wins regardless.
            if new_flag.get(pid) != FLAG_PICK:
                new_flag[pid] = FLAG_PICK if pid == best else FLAG_REJECT
    before = library.states(list(new_flag))
    library.set_states([PhotoState(s.photo_id, new_flag[s.photo_id], s.rating, s.color_label)
                        for s in before])
    log.info("picked %d, rejected %d photos in %d groups", len(groups),
             len(new_flag) - len(groups), len(groups))
    return before
