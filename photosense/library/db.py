"""Opening the library database: SQLite pragmas, schema versions, migrations, error mapping.

The schema version lives in ``PRAGMA user_version``. A database from a newer photosense is
refused (never "upgraded down"); an older one is migrated step by step inside one transaction,
so a failed migration leaves the file as it was.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session

from photosense.errors import LibraryError
from photosense.library.models import Base
from photosense.library.records import feature_key

log = logging.getLogger("photosense.library")

SCHEMA_VERSION = 5
BUSY_TIMEOUT_S = 5.0


def _v1_to_v2(conn: Connection) -> None:
    """RAW+JPEG pairs (photos.companion_path) and non-prompt attribute kinds."""
    conn.exec_driver_sql("ALTER TABLE photos ADD COLUMN companion_path BLOB")
    conn.exec_driver_sql(
        "ALTER TABLE attributes ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'prompts'")
    conn.exec_driver_sql("ALTER TABLE attributes ADD COLUMN extra JSON")


def _v2_to_v3(conn: Connection) -> None:
    """XMP sidecars as photosense last read or wrote them (to notice external edits)."""
    conn.exec_driver_sql(
        "CREATE TABLE sidecars (path BLOB NOT NULL, photo_id INTEGER NOT NULL, "
        "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, flag INTEGER NOT NULL, "
        "rating INTEGER NOT NULL, color_label VARCHAR(16), PRIMARY KEY (path), "
        "FOREIGN KEY(photo_id) REFERENCES photos (id) ON DELETE CASCADE)")
    conn.exec_driver_sql("CREATE INDEX ix_sidecars_photo_id ON sidecars (photo_id)")


def _v3_to_v4(conn: Connection) -> None:
    """Per folder, the files of unsupported kinds its last scan skipped."""
    conn.exec_driver_sql("ALTER TABLE folders ADD COLUMN skipped JSON")


def _v4_to_v5(conn: Connection) -> None:
    """Features know their resolution: each model row becomes one set of comparable features,
    keyed by model, max side and precision (``KEY@1024px/fp32``); features an older photosense
    stored at other sizes under the same model move to rows of their own, with their scores
    and a copy of the text features. Older features are taken as fp32 (the CPU's precision).
    Also an index on photos.companion_path (every new photo's pair lookup used it)."""
    import json

    active = conn.exec_driver_sql("SELECT value FROM settings WHERE key = 'active_model'").scalar()
    active = json.loads(active) if active else None
    for model_id, key, dim, scale in conn.exec_driver_sql(
            "SELECT id, key, dim, logit_scale FROM models").all():
        sides = [r[0] for r in conn.exec_driver_sql(
            "SELECT max_side FROM features WHERE model_id = ? GROUP BY max_side "
            "ORDER BY count(*) DESC, max_side DESC", (model_id,)).all()] or [1024]
        main = feature_key(key, sides[0], "fp32")
        conn.exec_driver_sql("UPDATE models SET key = ? WHERE id = ?", (main, model_id))
        for side in sides[1:]:
            new_id = conn.exec_driver_sql(
                "INSERT INTO models (key, dim, logit_scale) VALUES (?, ?, ?)",
                (feature_key(key, side, "fp32"), dim, scale)).lastrowid
            conn.exec_driver_sql("UPDATE features SET model_id = ? WHERE model_id = ? AND max_side = ?",
                                 (new_id, model_id, side))
            conn.exec_driver_sql(
                "UPDATE scores SET model_id = ? WHERE model_id = ? AND photo_id IN "
                "(SELECT photo_id FROM features WHERE model_id = ?)", (new_id, model_id, new_id))
            conn.exec_driver_sql(
                "INSERT INTO text_features (model_id, prompt, vector) "
                "SELECT ?, prompt, vector FROM text_features WHERE model_id = ?", (new_id, model_id))
        if active == key:
            conn.exec_driver_sql("UPDATE settings SET value = ? WHERE key = 'active_model'",
                                 (json.dumps(main),))
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_photos_companion_path ON photos (companion_path)")


# MIGRATIONS[n] upgrades a database at version n to n + 1. Each step runs inside the one
# transaction opened by ``migrate``; it must not commit. Keep a saved database of every past
# version in tests/fixtures/libraries/ (vN.sqlite3) so the upgrade path stays tested.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3, 4: _v4_to_v5,
                                                        3: _v3_to_v4}


def describe_db_error(exc: BaseException, path: Path | str) -> str | None:
    """A one-line message when ``exc`` is the environment's fault (locked, read-only, full,
    not a database); None when it looks like our bug."""
    msg = str(getattr(exc, "orig", exc)).lower()
    if "locked" in msg or "busy" in msg:
        return (f"library {path} is locked by another program or process (another photosense, "
                "a backup or sync tool?); close it and retry")
    if "readonly" in msg or "read-only" in msg:
        return f"library {path} is read-only"
    if "disk" in msg and ("full" in msg or "i/o" in msg):
        return f"cannot write library {path}: disk full or I/O error"
    if "not a database" in msg or "malformed" in msg or "file is encrypted" in msg:
        return f"{path} is not a photosense library (corrupt or another kind of file)"
    if "unable to open" in msg:
        return f"cannot open library {path}: folder missing or not writable"
    return None


def _on_connect(dbapi_conn: sqlite3.Connection, _record) -> None:
    # Let SQLAlchemy own transactions (see _on_begin): the sqlite3 module's own implicit BEGIN
    # skips DDL, which would make migrations non-atomic.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def _on_connect_read_only(dbapi_conn: sqlite3.Connection, _record) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    cur.execute("PRAGMA query_only = ON")
    cur.close()


def create_db_engine(path: Path, read_only: bool = False) -> Engine:
    if read_only:
        # immutable: on read-only media SQLite cannot create the WAL index (-shm) a WAL
        # database needs even to be read; nothing can change the file there anyway.
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        engine = create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S,
                                                         check_same_thread=False))
        event.listen(engine, "connect", _on_connect_read_only)
    else:
        engine = create_engine(
            f"sqlite:///{path}",
            connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


def must_open_read_only(path: Path) -> bool:
    """Whether an existing library can only be read: its file, or its folder (where SQLite
    keeps the WAL and lock files), is not writable, or lies on read-only media."""
    if not path.is_file():
        return False
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except (OSError, AttributeError):  # no statvfs (Windows): the access checks decide
        pass
    return not (os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK))


WRITE_OPTION = "photosense_write"


def _on_begin(conn: Connection) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
    # reads and then writes fails at once with "database is locked" when another connection
    # committed in between, without waiting for the busy timeout. Readers stay deferred, so
    # in WAL mode they never wait for writers.
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def open_engine(path: Path, read_only: bool = False) -> Engine:
    """Create (or open and migrate) the library at ``path``; LibraryError on any problem.
    ``read_only`` opens an existing library for reading only (no migration)."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise LibraryError(f"library path {path} is a folder; give a file name")
    if read_only:
        return _open_read_only(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LibraryError(f"cannot create folder for library {path}: {exc.strerror}") from exc
    engine = create_db_engine(path)
    try:
        migrate(engine, path)
    except (OperationalError, DatabaseError) as exc:
        engine.dispose()
        message = describe_db_error(exc, path)
        if message is None:
            raise
        raise LibraryError(message) from exc
    except LibraryError:
        engine.dispose()
        raise
    return engine


def _open_read_only(path: Path) -> Engine:
    if not path.is_file():
        raise LibraryError(f"library {path} does not exist (and its folder is read-only)")
    engine = create_db_engine(path, read_only=True)
    try:
        with engine.connect() as conn:
            version = schema_version(conn)
            conn.rollback()
    except (OperationalError, DatabaseError) as exc:
        engine.dispose()
        raise LibraryError(describe_db_error(exc, path) or f"cannot read library {path}: {exc}") from exc
    if version != SCHEMA_VERSION:
        engine.dispose()
        newer = version > SCHEMA_VERSION
        raise LibraryError(
            f"library {path} is read-only and was written by {'a newer' if newer else 'an older'} "
            f"photosense (schema {version}, this one uses {SCHEMA_VERSION}): "
            + ("upgrade photosense" if newer else "copy it to a writable folder to upgrade it"))
    return engine


def schema_version(conn: Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())


def migrate(engine: Engine, path: Path | str = "library") -> None:
    """Bring the schema to SCHEMA_VERSION, or refuse a database from a newer photosense."""
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        version = schema_version(conn)
        has_tables = bool(
            conn.execute(text("SELECT count(*) FROM sqlite_master WHERE type='table'")).scalar()
        )
        if version > SCHEMA_VERSION:
            raise LibraryError(
                f"library {path} was written by a newer photosense (schema {version}, "
                f"this version reads up to {SCHEMA_VERSION}); upgrade photosense"
            )
        if version == 0 and not has_tables:
            Base.metadata.create_all(conn)
            conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
            log.info("created library %s (schema %d)", path, SCHEMA_VERSION)
            return
        if version == 0:
            raise LibraryError(f"{path} is an SQLite database but not a photosense library")
        while version < SCHEMA_VERSION:
            step = MIGRATIONS.get(version)
            if step is None:
                raise LibraryError(f"no migration from schema {version}; library {path}")
            log.info("migrating library %s from schema %d to %d", path, version, version + 1)
            step(conn)
            version += 1
            conn.exec_driver_sql(f"PRAGMA user_version = {version}")
        # New tables/indexes of the current schema that an older step did not create.
        Base.metadata.create_all(conn)


# -- plain reads: rows straight from the driver, for the 100k-row paths ---------------------

_FS_ENCODING = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def decode_path(value: bytes | None) -> str | None:
    """A stored path (raw bytes, see ``models.FsPath``) as Python sees file names: what
    ``os.fsdecode`` gives, without its per-call type checks."""
    return None if value is None else bytes(value).decode(*_FS_ENCODING)


def fetch_plain(s: Session, sql: str, params: tuple = ()) -> list[tuple]:
    """Every row of ``sql`` as plain tuples from the session's DBAPI connection; driver
    errors come out as SQLAlchemy's (so ``Library.session`` explains them)."""
    cursor = s.connection().connection.cursor()
    try:
        return cursor.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        kind = OperationalError if isinstance(exc, sqlite3.OperationalError) else DatabaseError
        raise kind(sql, params, exc) from exc
    finally:
        cursor.close()
