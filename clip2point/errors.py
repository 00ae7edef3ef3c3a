"""The exceptions users can cause: every bad file, key or value raises one of these.

All derive from :class:`Clip2PointError` (a ``ValueError``), so callers can catch one type; the
message always names the offending file, key or value and, where it is a choice, what is allowed.
"""

import reprlib
from typing import Any

EXCERPT_LIMIT = 120  # characters of a user's value that an error message echoes

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, EXCERPT_LIMIT, EXCERPT_LIMIT
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8


def excerpt(value: Any, limit: int = EXCERPT_LIMIT) -> str:
    """A short ``repr`` of ``value`` for an error message: nested containers shown to 3 levels and 8
    items, the text cut to ``limit`` characters, so that a message stays short whatever the input (a few
    hundred bytes of YAML with nested aliases is a value whose full ``repr`` runs to megabytes)."""
    text = repr(value) if isinstance(value, str | int | float | bool | None) else _REPR.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Clip2PointError(ValueError):
    """Base class for errors caused by user input (files, configs, arguments)."""


class ConfigError(Clip2PointError):
    """A configuration key is unknown or its value is invalid."""


class InputError(Clip2PointError):
    """Input data (points, files, tensors) is malformed: wrong shape, non-finite, empty, unreadable."""


class StorageError(Clip2PointError):
    """The run storage (a folder or a bucket) cannot be reached, does not exist or refuses the credentials."""


class LeaseError(Clip2PointError):
    """A run is held by another process (its lease in the storage is live), so this one may not write it."""
