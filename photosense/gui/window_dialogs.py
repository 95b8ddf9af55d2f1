"""Dialogs and file outputs: attributes, settings, export, XMP sidecars, reports, messages.

A part of ``MainWindow`` (photosense.gui.main_window): the methods use the widgets and
state the window builds."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import (
    Qt,
    Slot,
)
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QMessageBox,
)

from photosense.fsutil import fsync_batch
from photosense.gui.jobs import Job, JobContext
from photosense.gui.settings_dialog import SettingsDialog, SidecarSettings, UiPrefs
from photosense.gui.window_common import _photos
from photosense.library import (
    CHECK_NAMES,
)
from photosense.pipeline import save_engine_config
from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig


class DialogActions:
    """Mixed into ``MainWindow``; see the module docstring."""

    def show_add_attribute(self) -> None:
        from photosense.gui.attribute_dialog import AttributeDialog

        dlg = AttributeDialog(self, None, {a.name for a in self.attributes})
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.add_attribute(dlg.spec(), dlg.direction())

    def show_edit_attribute(self, name: str) -> None:
        from photosense.gui.attribute_dialog import AttributeDialog

        info = next((a for a in self.attributes if a.name == name), None)
        if info is None:
            return
        dlg = AttributeDialog(self, info.spec, {a.name for a in self.attributes if a.name != name},
                              direction=info.direction)
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.edit_attribute(name, dlg.spec(), dlg.direction() if dlg.direction() != info.direction else None)

    def write_xmp(self, ids: list[int] | None = None) -> Job:
        """Write XMP sidecars of ``ids`` (default: the selected photos when several are
        selected, else every photo: one selected photo is just the grid's cursor)."""
        from photosense.curation.xmp import write_sidecars

        if ids is None:
            selected = self.selected_ids()
            ids = selected if len(selected) > 1 else None
        library = self.library

        def work(ctx: JobContext):
            with fsync_batch():  # each folder's renames synced once, at the end
                return write_sidecars(library, ids, progress=ctx.scan_progress, cancel=ctx.cancel)

        job = Job(work, "xmp")
        job.result.connect(self._on_xmp_written)
        job.error.connect(lambda msg: self.report_error(f"Writing XMP sidecars failed: {msg}"))
        self._track(job, "Writing XMP sidecars" + (f" of {_photos(len(ids))}" if ids else ""))
        self.jobs.start(job, "background")
        return job

    @Slot(object)
    def _on_xmp_written(self, report) -> None:
        self.statusBar().showMessage(f"XMP sidecars: {report.summary()}", 8000)
        for path, message in report.errors[:50]:
            self.report_error(f"XMP sidecar {path}: {message}", quiet=True)
        self.notify("XMP sidecars", report.summary())

    def read_xmp(self) -> Job:
        """Import flags, ratings and labels from the sidecars of every present photo (other
        apps' edits), by the library's conflict policy."""
        from photosense.curation.xmp import import_sidecars
        from photosense.library import PhotoQuery

        library = self.library

        def work(ctx: JobContext):
            paths = [r.path for r in library.rows(library.query_ids(PhotoQuery(include_missing=False)))]
            errors: list[tuple[str, str]] = []
            n = import_sidecars(library, paths, errors=errors, progress=ctx.scan_progress, cancel=ctx.cancel)
            return n, errors

        return self._background_job(work, "xmp-import", "Reading XMP sidecars",
                                    "Reading XMP sidecars", self._on_xmp_read)

    def _background_job(self, work, name: str, label: str, failed: str, on_result) -> Job:
        """Run ``work`` as a background job with its own status-bar row (``label``, with
        Cancel); its result goes to ``on_result``, its error to Problems as "FAILED failed"."""
        job = Job(work, name)
        job.result.connect(on_result)
        job.error.connect(lambda msg: self.report_error(f"{failed} failed: {msg}"))
        self._track(job, label)
        self.jobs.start(job, "background")
        return job

    def _on_xmp_read(self, result) -> None:
        n, errors = result
        for path, message in errors[:50]:
            self.report_error(f"XMP sidecar {path}: {message}", quiet=True, subject=path)
        skipped = f", {len(errors)} sidecar{'s' if len(errors) != 1 else ''} skipped" if errors else ""
        self.statusBar().showMessage(f"XMP sidecars: {_photos(n)} updated{skipped}", 8000)
        if n:
            self.model.refresh_rows()

    def choose_report(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(self, "Export report", "photosense-report.csv",
                                                   "CSV (*.csv);;JSON (*.json)")
        if not path:
            return
        if not path.lower().endswith((".csv", ".json")):
            path += ".json" if "json" in chosen.lower() else ".csv"
        self.export_report(path)

    def export_report(self, path: str) -> Job:
        """A CSV or JSON report (by extension) of the photos the filters show, in view order."""
        from photosense.curation.report import write_report

        library, query = self.library, replace(self.model.query)

        def work(ctx: JobContext):
            return write_report(library, path, query, progress=ctx.scan_progress, cancel=ctx.cancel)

        def saved(n):
            self.statusBar().showMessage(f"Report of {_photos(n)} saved to {path}", 8000)
            self.notify("Report saved", f"{_photos(n)} written to\n{path}")

        # Cancelled: any previous report stays (the report is written atomically).
        return self._background_job(work, "report", "Writing the report", "Report", saved)

    def show_export_dialog(self) -> None:
        from photosense.gui.export_dialog import ExportDialog

        dlg = ExportDialog(self, [a.name for a in self.attributes] + list(CHECK_NAMES))
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.export(dlg.options())

    def export(self, options) -> Job:
        from photosense.curation.export import export_photos

        library = self.library

        def work(ctx: JobContext):
            return export_photos(library, options, progress=ctx.scan_progress, cancel=ctx.cancel)

        return self._background_job(work, "export", "Exporting", "Export", self._on_exported)

    @Slot(object)
    def _on_exported(self, report) -> None:
        self.statusBar().showMessage(f"Export: {report.summary().splitlines()[0]}", 8000)
        for path, message in report.errors:
            self.report_error(f"export {path}: {message}", quiet=True)
        self.notify("Export finished", report.summary())

    def show_settings(self) -> None:
        dlg = SettingsDialog(self, self.engine_config, self.prefs, self.sidecar_settings)
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.apply_settings(dlg.engine_config(), dlg.prefs(), dlg.sidecar_settings())

    def apply_settings(self, engine_config: EngineConfig, prefs: UiPrefs,
                       sidecars: SidecarSettings | None = None) -> None:
        engine_changed = engine_config != self.engine_config
        bursts_changed = (prefs.burst_window_s, prefs.burst_threshold) != (self.prefs.burst_window_s,
                                                                          self.prefs.burst_threshold)
        self.prefs = prefs
        if sidecars is not None and sidecars != self.sidecar_settings:
            self.sidecar_settings = sidecars
            self.db.submit(lambda: sidecars.write(self.library), None, self.report_error)
        if bursts_changed:
            self._bursts_changed()
        self.set_thumb_size(prefs.thumb_size)
        try:
            prefs.save()
        except OSError as exc:
            self.report_error(f"Cannot save settings: {exc}")
        if engine_changed:
            self.engine_config = engine_config
            self.engine = ClipIQAEngine(engine_config)
            self.db.submit(lambda: save_engine_config(self.library, engine_config), None, self.report_error)
            self.banner.hide()
            if self._score_job is not None:
                self._score_job.cancel()
            self.start_scoring()

    def notify(self, title: str, text: str) -> QMessageBox:
        """A non-blocking message box (the window stays usable)."""
        box = QMessageBox(QMessageBox.Icon.Information, title, text, QMessageBox.StandardButton.Ok, self)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()
        self.last_message = box
        return box
