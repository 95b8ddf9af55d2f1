"""``photosense.gui.app.run``: a library that cannot be opened is explained, exit code 1."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox


def test_unusable_library_shows_a_message_and_exits_1(qtbot, tmp_path, monkeypatch):
    from photosense.gui import app

    bad = tmp_path / "broken.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *args, **kw: shown.append(args[2]))
    assert app.run(str(bad)) == 1
    assert shown and "cannot be opened" in shown[0]
