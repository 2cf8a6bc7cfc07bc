"""Typed reading of a YAML mapping that names the file and the key at fault on every error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from auditreport.errors import ConfigError


class Reader:
    """Typed access to a nested mapping that names the file and key on error."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: key '{key}': {message}")

    def mapping(self, parent: dict, key: str, where: str, required: bool = True,
                allowed: set[str] | None = None) -> dict:
        full = f"{where}.{key}" if where else key
        if key not in parent or parent[key] is None:
            if required:
                raise self.fail(full, "is required but missing")
            return {}
        value = parent[key]
        if not isinstance(value, dict):
            raise self.fail(full, f"must be a mapping, got {type(value).__name__}")
        if allowed is not None:
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise self.fail(f"{full}.{unknown[0]}",
                                f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def get(self, parent: dict, key: str, where: str, types: type | tuple[type, ...],
            required: bool = True, default: Any = None) -> Any:
        full = f"{where}.{key}" if where else key
        if key not in parent or parent[key] is None:
            if required:
                raise self.fail(full, "is required but missing")
            return default
        value = parent[key]
        # YAML booleans are ints in Python; never accept one where a number is wanted.
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.fail(full, f"must be {type_names(types)}, got a boolean")
        if not isinstance(value, types):
            raise self.fail(full, f"must be {type_names(types)}, got {type(value).__name__} {value!r}")
        return value

    def date(self, parent: dict, key: str, where: str, required: bool = True) -> dt.date | None:
        full = f"{where}.{key}" if where else key
        value = parent.get(key)
        if value is None:
            if required:
                raise self.fail(full, "is required but missing")
            return None
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise self.fail(full, f"must be a date YYYY-MM-DD, got {value!r}") from None


def type_names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(t, t.__name__) for t in types)


