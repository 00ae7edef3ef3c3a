"""Typed settings: frozen dataclasses whose fields are checked against their annotations and ranges.

Every settings space of the project (rendering, adapters, the whole experiment config) is one
:class:`Settings` dataclass. Constructing one validates it, from code (``RenderSettings(footprint="x")``)
or from YAML (:func:`from_dict`), and raises :class:`~clip2point.errors.ConfigError` naming the key, the
bad value and what is allowed. Settings classes embed each other; the experiment config is the root.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``,
``tuple[X, ...]``, and nested settings dataclasses. Numeric ranges are declared with :func:`bounded`,
a short help text (used for command-line flags) with ``help=``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any, ClassVar, Literal

import yaml

from clip2point.errors import ConfigError, excerpt

C = typing.TypeVar("C")


def bounded(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    help: str = "",
):
    """A dataclass field whose numeric value must lie in ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
    hi = "" if high is None else f"<= {high}"
    allowed = " and ".join(p for p in (lo, hi) if p)

    def check(value: float) -> bool:
        if low is not None and (value <= low if low_open else value < low):
            return False
        return high is None or value <= high

    return field(default=default, metadata={"check": check, "allowed": allowed, "help": help})


def described(default: Any, help: str) -> Any:
    """A dataclass field with a help text and no range (choices come from its ``Literal`` type)."""
    return field(default=default, metadata={"help": help})


class Settings:
    """Base of every settings dataclass: fields are validated (and ints widened to floats, lists turned
    into tuples) when an instance is made. ``SECTION`` is the dotted key prefix in error messages;
    :meth:`check` is the hook for rules that involve several fields."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        prefix = f"{self.SECTION}." if self.SECTION else ""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            converted = _convert(value, hints[f.name], prefix + f.name)
            _check_range(f, converted, prefix + f.name, value)
            if converted is not value:
                object.__setattr__(self, f.name, converted)
        self.check()

    def check(self) -> None:
        """Raise :class:`ConfigError` if the fields do not fit together (override where that can happen)."""


def _check_range(f: dataclasses.Field, value: Any, key: str, given: Any) -> None:
    check: Callable[[Any], bool] | None = f.metadata.get("check")
    if check is not None and value is not None and not check(value):
        raise ConfigError(
            f"config key {key!r}: {excerpt(given)} is out of range; allowed: {f.metadata['allowed']}"
        )


def describe(tp: Any) -> str:
    """Human-readable name of an allowed type, e.g. ``one of 'disk', 'square'``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    return {bool: "true/false", int: "an integer", float: "a finite number", str: "a string"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float, list -> tuple,
    mapping -> settings dataclass)."""

    def bad() -> ConfigError:
        return ConfigError(f"config key {key!r}: {excerpt(value)} is not allowed; expected {describe(tp)}")

    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise bad()
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise bad()
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise bad()
        converted = tuple(_convert(v, typing.get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(value))
        return value if isinstance(value, tuple) and converted == value else converted
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise bad()
        return from_dict(tp, value, prefix=f"{key}.")
    scalar = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(tp)
    if scalar is None:
        raise TypeError(f"unsupported settings annotation {tp!r} for {key!r}")
    if not isinstance(value, scalar) or (tp is not bool and isinstance(value, bool)):
        raise bad()
    if tp is float and not math.isfinite(value):  # .nan, .inf: no setting means them
        raise bad()
    return float(value) if tp is float and not isinstance(value, float) else value


def from_dict(cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    """Build settings dataclass ``cls`` from a mapping, validating every key and value.

    Missing keys take their defaults. Raises :class:`ConfigError` for an unknown key (listing the
    known ones), a value of the wrong type, or one outside its declared range.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config section {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {excerpt(data)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {excerpt(prefix + str(unknown[0]))}; allowed keys in "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(fields)}"
        )
    values = {}
    for name, value in data.items():
        converted = _convert(value, hints[name], prefix + name)
        _check_range(fields[name], converted, prefix + name, value)
        values[name] = converted
    return cls(**values)


def to_dict(settings: Any) -> dict[str, Any]:
    """Settings as plain nested dicts and lists (YAML-ready); inverse of :func:`from_dict`."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return plain(settings)


def flatten(settings: Any) -> dict[str, Any]:
    """Dotted-key view, e.g. ``{"render.dilation": 2, ...}`` (MLflow params, sweep axes)."""
    out: dict[str, Any] = {}

    def walk(v: Any, prefix: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{prefix}{k}.")
        else:
            out[prefix.rstrip(".")] = v

    walk(to_dict(settings), "")
    return out


def with_overrides(settings: C, overrides: Mapping[str, Any]) -> C:
    """A copy of ``settings`` with dotted-key overrides applied and validated (all at once, so fields
    that must change together can).

    >>> from clip2point.config import ExperimentConfig
    >>> with_overrides(ExperimentConfig(), {"render.dilation": 4}).render.dilation
    4
    """
    tree = to_dict(settings)
    for dotted, value in overrides.items():
        node = tree
        parts = dotted.split(".")
        for i, part in enumerate(parts[:-1]):
            if part not in node:
                raise ConfigError(
                    f"unknown config key {excerpt(dotted)}: no section {'.'.join(parts[: i + 1])!r}"
                )
            if not isinstance(node[part], dict):
                raise ConfigError(
                    f"unknown config key {excerpt(dotted)}: {'.'.join(parts[: i + 1])!r} is not a section"
                )
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"unknown config key {excerpt(dotted)}; allowed keys here: {', '.join(node)}")
        node[parts[-1]] = value
    return from_dict(type(settings), tree)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a command-line override ``key=value``; the value is read as YAML (``4``, ``true``, ``null``),
    safely: a Python tag or malformed YAML is a :class:`ConfigError` naming the override."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {excerpt(text)} must look like section.key=value")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"override {excerpt(text)}: the value is not plain YAML ({excerpt(problem)}); "
            "allowed: a number, true/false, null, a string or a [list]"
        ) from None
