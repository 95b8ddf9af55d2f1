"""The scan's side of the index: what a scan of a folder reads (known files, sidecar marks,
RAW+JPEG pairs) and writes (scan records, moves, pairs, faces, missing files). Mixed into
:class:`photosense.library.Library`, whose ``session`` it uses."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from photosense.library.db import decode_path, fetch_plain
from photosense.library.models import FLAG_NONE, FaceCheck, Feature, Photo, Score, Sidecar
from photosense.library.records import ScanRecord, summarise_faces


class ScanIndex:
    """Library methods a folder scan uses (see the module's docstring)."""

    def known_files(self, folder_id: int) -> dict[str, tuple[int, int, float, bool, str | None]]:
        """path -> (id, size, mtime, missing, error) for a folder's photos."""
        with self.session(write=False) as s:
            # Plain driver rows: a 100k library's every scan starts here.
            rows = fetch_plain(s, "SELECT path, id, size, mtime, missing, error FROM photos "
                                  "WHERE folder_id = ?", (folder_id,))
        return {decode_path(r[0]): (r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows}

    def sidecar_marks(self, folder_id: int | None = None, paths: Iterable[str] | None = None,
                      ) -> dict[str, tuple[int, int]]:
        """sidecar path -> (size, mtime_ns) as photosense last read or wrote it, for a
        folder's photos or for these sidecar paths."""
        stmt = select(Sidecar.path, Sidecar.size, Sidecar.mtime_ns)
        with self.session(write=False) as s:
            if paths is not None:
                paths = list(paths)
                rows = []
                for start in range(0, len(paths), 500):
                    rows.extend(s.execute(stmt.where(Sidecar.path.in_(paths[start:start + 500]))))
            else:
                rows = s.execute(stmt.join(Photo, Photo.id == Sidecar.photo_id)
                                 .where(Photo.folder_id == folder_id)).all()
            return {r[0]: (r[1], r[2]) for r in rows}

    def sidecar_synced_state(self, path: str) -> tuple[int, int, str | None] | None:
        """(flag, rating, colour label) the photo had when photosense last read or wrote
        this sidecar; None when it never did."""
        with self.session(write=False) as s:
            row = s.execute(select(Sidecar.flag, Sidecar.rating, Sidecar.color_label)
                            .where(Sidecar.path == path)).first()
            return None if row is None else (row[0], row[1], row[2])

    def mark_sidecars(self, marks: Iterable[tuple[str, int, int, int]]) -> None:
        """Remember sidecars photosense just read or wrote: (sidecar path, photo id, size,
        mtime_ns), with the photo's culling state as it is now."""
        marks = list(marks)
        if not marks:
            return
        with self.session() as s:
            states = {}
            ids = sorted({m[1] for m in marks})
            for start in range(0, len(ids), 500):
                for pid, flag, rating, label in s.execute(
                    select(Photo.id, Photo.flag, Photo.rating, Photo.color_label)
                    .where(Photo.id.in_(ids[start:start + 500]))
                ):
                    states[pid] = (flag, rating, label)
            for path, pid, size, mtime_ns in marks:
                if pid in states:
                    flag, rating, label = states[pid]
                    s.merge(Sidecar(path=path, photo_id=pid, size=size, mtime_ns=mtime_ns,
                                    flag=flag, rating=rating, color_label=label))

    def companion_paths(self, folder_id: int) -> dict[str, str]:
        """path -> companion path of a folder's RAW+JPEG pairs."""
        with self.session(write=False) as s:
            rows = fetch_plain(s, "SELECT path, companion_path FROM photos WHERE folder_id = ? "
                                  "AND companion_path IS NOT NULL", (folder_id,))
        return {decode_path(r[0]): decode_path(r[1]) for r in rows}

    def upsert_scanned(self, folder_id: int, records: Sequence[ScanRecord]) -> dict[str, str]:
        """Write scan results for one folder in one transaction.

        A new path whose content hash matches a photo whose file is gone is treated as that
        photo moved or renamed: it keeps its id, features, scores and flags. Returns
        {path: "added" | "updated" | "moved"}.

        RAW+JPEG pairs (``rec.companion_path``) are one photo: a JPEG already known as a photo
        of its own becomes the pair (its id, flags and features kept), and the JPEG of a pair
        whose RAW is gone carries the photo on alone.

        The photos the records may concern (by path, companion path and content hash) are
        read up front with a few IN queries, not three queries a record (a 100k library).
        """
        outcome: dict[str, str] = {}
        now = time.time()
        records = list(records)
        faces: list[tuple[Photo, list[dict] | None]] = []
        with self.session() as s:
            known = _ScanLookup(s, records)
            for rec in records:
                photo = known.path.get(rec.path)
                kind = "updated"
                photo, same_pixels = self._pair_photo(s, rec, photo, known)
                if photo is None and rec.content_hash:
                    for cand in known.with_hash(rec.content_hash):
                        if cand.missing or not known.lexists(cand.path):
                            photo, kind = cand, "moved"
                            break
                if photo is None:
                    photo, kind = Photo(path=rec.path, folder_id=folder_id), "added"
                    s.add(photo)
                content_changed = (kind == "updated" and not same_pixels
                                   and photo.content_hash != rec.content_hash)
                before = known.keys(photo) if kind != "added" else (None, None, None)
                photo.path = rec.path
                photo.companion_path = rec.companion_path
                photo.folder_id = folder_id
                photo.size, photo.mtime = rec.size, rec.mtime
                photo.content_hash = rec.content_hash
                photo.width, photo.height = rec.width, rec.height
                photo.capture_time, photo.camera = rec.capture_time, rec.camera
                photo.missing = False
                photo.error = rec.error
                photo.scanned_at = now
                checks = rec.checks or {}
                photo.sharpness = checks.get("sharpness")
                photo.exposure = checks.get("exposure")
                photo.noise = checks.get("noise")
                known.moved(photo, before)
                if content_changed and photo.id is not None:
                    # New pixels: stored features and scores describe the old image.
                    s.execute(delete(Feature).where(Feature.photo_id == photo.id))
                    s.execute(delete(Score).where(Score.photo_id == photo.id))
                faces.append((photo, rec.faces))
                outcome[rec.path] = kind
            s.flush()  # new photos get their ids in one go
            self._put_faces(s, [(photo.id, found) for photo, found in faces])
        return outcome

    @staticmethod
    def _put_faces(s: Session, results: Sequence[tuple[int, list[dict] | None]]) -> None:
        """Replace photos' faces: (photo id, faces; None: none known, as after an unreadable
        scan). Two statements for the whole batch, not two ORM round trips a photo."""
        import json

        from photosense.scoring.faces import FACES_VERSION

        if not results:
            return
        conn = s.connection()
        ids = [(photo_id,) for photo_id, _faces in results]
        conn.exec_driver_sql("DELETE FROM face_checks WHERE photo_id = ?", ids)
        rows = []
        for photo_id, found in results:
            if found is not None:
                summary = summarise_faces(found)
                rows.append((photo_id, summary["faces"], summary["eyes_closed"],
                             summary["eye_sharpness"], json.dumps(list(found)), FACES_VERSION))
        if rows:
            conn.exec_driver_sql(
                "INSERT INTO face_checks (photo_id, count, eyes_closed, eye_sharpness, faces, "
                "version) VALUES (?, ?, ?, ?, ?, ?)", rows)

    def store_faces(self, results: Iterable[tuple[int, list[dict]]]) -> None:
        """Store the faces found in photos already in the library: (photo id, faces)."""
        results = list(results)
        with self.session() as s:
            present = set()
            ids = [photo_id for photo_id, _faces in results]
            for start in range(0, len(ids), 500):
                present.update(s.scalars(select(Photo.id).where(Photo.id.in_(ids[start:start + 500]))))
            self._put_faces(s, [(photo_id, found) for photo_id, found in results
                                if photo_id in present])

    def photos_needing_faces(self, folder_id: int | None = None,
                             ) -> list[tuple[int, str, str | None]]:
        """(id, path, companion path) of present, readable photos whose faces were never
        looked for, or by an older face pipeline."""
        from photosense.scoring.faces import FACES_VERSION

        with self.session(write=False) as s:
            done = select(FaceCheck.photo_id).where(FaceCheck.version == FACES_VERSION)
            q = (select(Photo.id, Photo.path, Photo.companion_path)
                 .where(Photo.missing.is_(False), Photo.error.is_(None),
                        Photo.id.not_in(done))
                 .order_by(Photo.id))
            if folder_id is not None:
                q = q.where(Photo.folder_id == folder_id)
            return [(r[0], r[1], r[2]) for r in s.execute(q)]

    def face_summaries(self, ids: Iterable[int]) -> dict[int, tuple[int, int, float | None]]:
        """{photo id: (faces, faces with closed eyes, sharpest eyes)} for those of ``ids``
        whose faces were looked for."""
        ids = sorted({int(i) for i in ids})
        out: dict[int, tuple[int, int, float | None]] = {}
        with self.session(write=False) as s:
            for start in range(0, len(ids), 500):
                for pid, count, closed, sharp in s.execute(
                        select(FaceCheck.photo_id, FaceCheck.count, FaceCheck.eyes_closed,
                               FaceCheck.eye_sharpness)
                        .where(FaceCheck.photo_id.in_(ids[start:start + 500]))):
                    out[pid] = (count, closed, sharp)
        return out

    @staticmethod
    def _pair_photo(s: Session, rec: ScanRecord, photo: Photo | None,
                    known: _ScanLookup) -> tuple[Photo | None, bool]:
        """The photo a scanned RAW+JPEG pair, or a JPEG left alone, continues; and whether
        it was the JPEG's photo (its features, made from the JPEG, still hold)."""
        if rec.companion_path:
            alone = known.path.get(rec.companion_path)
            if alone is not None and photo is None:
                # The RAW appeared beside a known JPEG: its features hold if the JPEG is the same.
                return alone, rec.companion_hash in (None, alone.content_hash)
            if alone is not None and alone.id != photo.id:
                # Both were photos of their own: one photo now, with the decisions of either.
                if photo.flag == FLAG_NONE:
                    photo.flag = alone.flag
                photo.rating = photo.rating or alone.rating
                photo.color_label = photo.color_label or alone.color_label
                known.forget(alone)
                s.delete(alone)
                s.flush()
            return photo, False
        if photo is None:
            pair = known.with_companion(rec.path)
            if pair is not None and (pair.missing or not known.lexists(pair.path)):
                return pair, True  # the RAW of a pair is gone: the JPEG goes on alone
        return photo, False

    def set_missing(self, paths: Iterable[str], missing: bool = True) -> int:
        """Mark photos whose files are gone (flags and scores are kept), or back again."""
        paths = list(paths)
        n = 0
        with self.session() as s:
            for start in range(0, len(paths), 500):
                n += s.execute(
                    update(Photo)
                    .where(Photo.path.in_(paths[start:start + 500]), Photo.missing.is_(not missing))
                    .values(missing=missing)
                ).rowcount
        return n

    def paths_under(self, directory: str) -> list[str]:
        """Known photo paths inside ``directory`` (for a folder deleted or moved away)."""
        prefix = directory.rstrip(os.sep) + os.sep
        # Paths are stored as bytes and compared bytewise: everything starting with
        # "dir/" sorts between "dir/" and "dir0" ("0" follows "/"), so the unique index on
        # path answers this without reading every photo.
        upper = prefix[:-1] + chr(ord(os.sep) + 1)
        with self.session(write=False) as s:
            return list(s.scalars(select(Photo.path).where(Photo.path >= prefix, Photo.path < upper)))


class _ScanLookup:
    """The photos a batch of scan records may concern, read with a few IN queries and kept
    up to date as the batch changes them: by path (a record's path or companion), by
    companion path (a JPEG whose RAW may be gone) and by content hash (a moved photo), the
    last two in id order as the indexes give them. Only keys read up front are looked up,
    and for those every photo is known, so a lookup returns what a query would."""

    CHUNK = 500

    def __init__(self, s: Session, records: Sequence[ScanRecord]):
        paths = {r.path for r in records} | {r.companion_path for r in records if r.companion_path}
        alone = {r.path for r in records if not r.companion_path}
        hashes = {r.content_hash for r in records if r.content_hash}
        self.path: dict[str, Photo] = {p.path: p for p in self._load(s, Photo.path, paths)}
        self._by: dict[str, dict[str, list[Photo]]] = {"companion_path": {}, "content_hash": {}}
        self._keys = {"companion_path": alone, "content_hash": hashes}
        for column, values in ((Photo.companion_path, alone), (Photo.content_hash, hashes)):
            index = self._by[column.key]
            for p in self._load(s, column, values):
                index.setdefault(getattr(p, column.key), []).append(p)
        self._exists: dict[str, bool] = {}

    @classmethod
    def _load(cls, s: Session, column, values) -> list[Photo]:
        values = list(values)
        found: dict[int, Photo] = {}
        for start in range(0, len(values), cls.CHUNK):
            for p in s.scalars(select(Photo).where(column.in_(values[start:start + cls.CHUNK]))):
                found[p.id] = p
        return [found[i] for i in sorted(found)]

    def with_companion(self, path: str) -> Photo | None:
        """The first photo whose companion is ``path``."""
        group = self._by["companion_path"].get(path)
        return group[0] if group else None

    def with_hash(self, content_hash: str) -> list[Photo]:
        return list(self._by["content_hash"].get(content_hash, ()))

    def lexists(self, path: str) -> bool:
        if path not in self._exists:
            self._exists[path] = os.path.lexists(path)
        return self._exists[path]

    @staticmethod
    def keys(photo: Photo) -> tuple[str | None, str | None, str | None]:
        return photo.path, photo.companion_path, photo.content_hash

    def moved(self, photo: Photo, before: tuple[str | None, str | None, str | None]) -> None:
        """``photo`` (new, or changed by a record) now has its current path, companion and
        hash; ``before`` are the ones it had (all None for a new photo)."""
        old_path, *old = before
        if old_path != photo.path and self.path.get(old_path) is photo:
            del self.path[old_path]
        self.path[photo.path] = photo
        for name, old_key in zip(("companion_path", "content_hash"), old):
            index = self._by[name]
            if photo in index.get(old_key, ()):
                index[old_key].remove(photo)
            key = getattr(photo, name)
            if key in self._keys[name] and photo not in index.setdefault(key, []):
                index[key].append(photo)
                index[key].sort(key=_id_order)

    def forget(self, photo: Photo) -> None:
        """``photo`` is deleted."""
        for key in [k for k, p in self.path.items() if p is photo]:
            del self.path[key]
        for index in self._by.values():
            for group in index.values():
                if photo in group:
                    group.remove(photo)


def _id_order(photo: Photo) -> tuple[bool, int]:
    """Photos in id order, those not written yet (no id) last."""
    return photo.id is None, photo.id or 0
