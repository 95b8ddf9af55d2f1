"""Error types shared by every layer.

``PhotosenseError`` is an expected, user-facing failure (missing folder, unknown attribute,
bad weights file, locked library): the CLI prints its message on one line and exits non-zero,
the GUI shows it in a message box. Anything else escaping is a bug and keeps its traceback.
"""

import logging


class PhotosenseError(Exception):
    """An expected failure with a one-line message meant for the user."""

    #: How a background job that ends with this error logs it (the person sees the message
    #: either way): a warning, unless the error is a state of the library rather than a fault.
    log_level = logging.WARNING


class LibraryError(PhotosenseError):
    """The library database cannot be used (locked, newer schema, read-only, corrupt)."""


class WeightsUnavailable(PhotosenseError):
    """Model weights could not be found or loaded."""


class NothingScored(PhotosenseError):
    """The work needs scored photos and the library has none yet (search, taste, prompts)."""

    log_level = logging.INFO  # not a fault: the window says it in its own words

    def __init__(self, message: str = "nothing scored yet: run 'photosense score' first"):
        super().__init__(message)


class DecodeError(PhotosenseError):
    """A file could not be read as an image.

    ``transient``: the file could not be read *now* (it vanished, its drive was unplugged, a
    permission or I/O error) rather than being a bad image. Such a failure is reported but
    never stored as the photo's error: the photo is tried again once its file is back."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


# Messages an older photosense stored as a photo's error for what was a transient failure:
# a photo carrying one is analysed again when it is seen.
TRANSIENT_ERROR_PREFIXES = ("file disappeared", "permission denied", "cannot read file:",
                            "broken symbolic link")


def is_transient_error(message: str | None) -> bool:
    return bool(message) and message.startswith(TRANSIENT_ERROR_PREFIXES)
