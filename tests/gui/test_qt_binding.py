"""The window survives many signal emits (PySide6 6.12.0 leaks a reference per emit)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

import photosense.gui  # noqa: F401  (installs the fix when the binding needs it)


class _Sender(QObject):
    value = Signal(object)


def test_emits_do_not_consume_references_of_true_or_none(qtbot):
    sender = _Sender()
    got = []
    sender.value.connect(got.append)
    before = sys.getrefcount(True), sys.getrefcount(None)
    for i in range(20000):  # far more than True's references at start-up
        sender.value.emit(i)
    after = sys.getrefcount(True), sys.getrefcount(None)
    assert len(got) == 20000
    assert abs(after[0] - before[0]) < 50 and abs(after[1] - before[1]) < 50
