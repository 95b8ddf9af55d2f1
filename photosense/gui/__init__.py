"""The desktop window (PySide6). The only package that imports Qt.

Importing this package guards against a binding bug seen with PySide6 6.12.0 on Python 3.11:
``SignalInstance.emit()`` returns ``True`` without owning a reference, so every emit from
Python takes one reference from ``True``; after a few thousand emits (thumbnails arriving,
progress, a dragged histogram line) the interpreter aborts with "deallocating True or False".
A probe at import measures the leak; only when it is there, ``emit`` is wrapped to give the
reference back. On fixed bindings (or Python >= 3.12, where ``True`` is immortal) nothing is
changed.
"""

from __future__ import annotations

import ctypes
import logging
import sys

from PySide6.QtCore import QObject, Signal, SignalInstance

log = logging.getLogger("photosense.gui")

_PROBE_EMITS = 16


def _emit_leaks_references() -> bool:
    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(_PROBE_EMITS):
        probe.ping.emit()
    lost = before - sys.getrefcount(True)
    for _ in range(max(0, lost)):  # give back what the probe itself took
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(True))
    return lost >= _PROBE_EMITS


def _install_emit_fix() -> bool:
    if getattr(SignalInstance.emit, "_photosense_fixed", False) or not _emit_leaks_references():
        return False
    original = SignalInstance.emit
    incref = ctypes.pythonapi.Py_IncRef

    def emit(self, *args):
        result = original(self, *args)
        incref(ctypes.py_object(result))
        return result

    emit._photosense_fixed = True  # type: ignore[attr-defined]
    SignalInstance.emit = emit
    log.info("working around the reference leak of SignalInstance.emit in this PySide6 build")
    return True


EMIT_FIX_INSTALLED = _install_emit_fix()
