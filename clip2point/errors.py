"""The exceptions users can cause: every bad file, key or value raises one of these.

All derive from :class:`Clip2PointError` (a ``ValueError``), so callers can catch one type; the
message always names the offending file, key or value and, where it is a choice, what is allowed.
"""


class Clip2PointError(ValueError):
    """Base class for errors caused by user input (files, configs, arguments)."""


class ConfigError(Clip2PointError):
    """A configuration key is unknown or its value is invalid."""


class InputError(Clip2PointError):
    """Input data (points, files, tensors) is malformed: wrong shape, non-finite, empty, unreadable."""


class StorageError(Clip2PointError):
    """The run storage (a folder or a bucket) cannot be reached, does not exist or refuses the credentials."""
