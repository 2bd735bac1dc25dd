"""User-facing errors.

Anything a user can cause (a missing file, a corrupt image, a wrong checkpoint, an unknown preset) raises a
:class:`UserError` whose message is one line naming the offending thing and the fix. The CLI prints that line
and exits non-zero; it never shows a traceback for a ``UserError``. Internal invariants use ``assert``.
"""


class UserError(Exception):
    """A mistake the user can fix; ``str(err)`` is one line: what is wrong, where, and what to do."""


class ImageError(UserError, ValueError):
    """An input image cannot be read or used (missing, empty, truncated, not an image, too large, wrong size)."""


class CheckpointError(UserError, ValueError):
    """A model directory or checkpoint is missing, corrupt, or does not match the expected layout."""


class RestorationError(RuntimeError):
    """The restorer produced no valid restoration (e.g. NaN or infinite values); the face counts as failed."""
