"""Checks of the numbers and settings a user gives, at the edges of the library: each failure is a
SettingsError that names the setting and the value, so nothing odd reaches the arithmetic."""

import json
import math
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from slmcnn.errors import SettingsError


def whole(value: Any, name: str, low: int = 0, high: int | None = None, optional: bool = False) -> Any:
    """`value` as a whole number in [low, high] (None allowed when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        limits = f"at least {low}" + (f" and at most {high}" if high is not None else "")
        raise SettingsError(f"`{name}` must be a whole number {limits} (got {value!r})")
    return value


def number(value: Any, name: str, low: float | None = None, high: float | None = None, optional: bool = False):
    """`value` as a finite number in [low, high] (None allowed when `optional`)."""
    if value is None and optional:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        limits = " and ".join(
            text
            for text in (f"at least {low}" if low is not None else "", f"at most {high}" if high is not None else "")
            if text
        )
        raise SettingsError(f"`{name}` must be a finite number{' ' + limits if limits else ''} (got {value!r})")
    return value


def settings_file(path: str | Path, settings_class: type, known: set[str], where: str = "`config`") -> dict:
    """Settings of `settings_class` from a JSON file: only `known` names, each of its default's kind."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{where} {path}: not a readable JSON file ({exc})") from None
    if isinstance(values, dict) and set(values) - known:
        unknown = sorted(set(values) - known)
        raise SettingsError(f"{where} {path}: unknown setting(s) {unknown}; known: {', '.join(sorted(known))}")
    return like_defaults(settings_class, values, f"{where} {path}")


def like_defaults(settings_class: type, values: dict, where: str) -> dict:
    """`values` (from a JSON file) checked against the defaults of a settings dataclass: a number
    where the default is a number, a [low, high] pair where it is a range, a list of names where it
    is one, true/false where it is a flag. Lists become tuples."""
    if not isinstance(values, dict):
        raise SettingsError(f"{where}: expected a JSON object of settings, got {type(values).__name__}")
    defaults = {}
    for f in fields(settings_class):
        default = (
            f.default
            if f.default is not MISSING
            else (f.default_factory() if f.default_factory is not MISSING else None)
        )
        defaults[f.name] = default
    checked = {}
    for name, value in values.items():
        default = defaults.get(name)
        value = tuple(value) if isinstance(value, list) else value
        if not _same_kind(default, value):
            raise SettingsError(f"{where}: {name!r} is {value!r:.60}, expected {_kind(default)}")
        checked[name] = value
    return checked


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same_kind(default: Any, value: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if _is_number(default):
        return _is_number(value)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple):
        if default and all(_is_number(d) for d in default):
            pair = isinstance(value, tuple) and len(value) == len(default) and all(_is_number(v) for v in value)
            return pair and (len(value) != 2 or value[0] <= value[1])
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    return True


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if _is_number(default):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, tuple) and default and all(_is_number(d) for d in default):
        return f"[low, high] numbers like {list(default)}" if len(default) == 2 else f"{len(default)} numbers"
    return "a list of names"
