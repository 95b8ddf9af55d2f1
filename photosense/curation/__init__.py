"""Acting on culling decisions: exporting the chosen photos. No Qt here."""

from photosense.curation.export import ExportOptions, ExportReport, export_photos, select_photos

__all__ = ["ExportOptions", "ExportReport", "export_photos", "select_photos"]
