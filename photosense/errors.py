"""Error types shared by every layer.

``PhotosenseError`` is an expected, user-facing failure (missing folder, unknown attribute,
bad weights file, locked library): the CLI prints its message on one line and exits non-zero,
the GUI shows it in a message box. Anything else escaping is a bug and keeps its traceback.
"""


class PhotosenseError(Exception):
    """An expected failure with a one-line message meant for the user."""


class LibraryError(PhotosenseError):
    """The library database cannot be used (locked, newer schema, read-only, corrupt)."""


class WeightsUnavailable(PhotosenseError):
    """Model weights could not be found or loaded."""


class DecodeError(PhotosenseError):
    """A file could not be read as an image."""
