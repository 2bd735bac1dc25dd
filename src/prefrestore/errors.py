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


class MetricUnavailable(UserError):
    """A metric cannot run here (missing weight file or package); the message names what to provide and where."""

    def __init__(self, metric: str, reason: str) -> None:
        super().__init__(f"{metric} unavailable: {reason}")
        self.metric = metric
        self.reason = reason


class RestorationError(RuntimeError):
    """The restorer produced no valid restoration (e.g. NaN or infinite values); the face counts as failed."""
