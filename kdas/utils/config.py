"""Typed configs: dataclasses built from TOML/YAML/JSON dicts, with errors that name the key.

Every stage has one dataclass config; it is saved beside the artifact it made (`config.json`)
and its hash decides whether a pipeline stage is up to date.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kdas.errors import KdasError

T = TypeVar("T")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file into a dict; one clear error when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise KdasError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KdasError(f"config {path} is not UTF-8 text") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise KdasError(
                f"config {path}: unknown extension {path.suffix!r} (use .toml, .yaml or .json)"
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise KdasError(f"config {path} does not parse: {exc}") from None
    except Exception as exc:  # yaml.YAMLError, without importing yaml for TOML users
        if type(exc).__module__.startswith("yaml"):
            message = " ".join(str(exc).split())
            raise KdasError(f"config {path} does not parse: {message}") from None
        raise
    if not isinstance(data, dict):
        raise KdasError(f"config {path} must hold a table/mapping at the top level")
    return data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `override` into `base` recursively; `None` values in `override` are ignored, so
    CLI options that were not given leave the file's value alone."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            base_value = merged.get(key)
            nested = deep_merge(base_value if isinstance(base_value, Mapping) else {}, value)
            if nested or key in merged:
                merged[key] = nested
        else:
            merged[key] = value
    return merged


def _convert_union(value: Any, args: tuple[Any, ...], where: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(value, arg, where)
        except KdasError as exc:
            errors.append(str(exc))
    raise KdasError(errors[0] if errors else f"{where}: bad value {value!r}")


def _convert_sequence(value: Any, origin: Any, args: tuple[Any, ...], where: str) -> Any:
    if not isinstance(value, list | tuple):
        raise KdasError(f"{where}: expected a list, got {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise KdasError(f"{where}: expected {len(args)} values, got {list(value)!r}")
        return tuple(
            _convert(v, a, f"{where}[{i}]")
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    item_type = args[0] if args else Any
    items = [_convert(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _convert_table(value: Any, annotation: Any, where: str) -> Any:
    """A nested dataclass config, or a free-form dict (layout options)."""
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    if not isinstance(value, Mapping):
        raise KdasError(f"{where}: expected a table, got {value!r}")
    return (
        from_dict(annotation, value, where) if dataclasses.is_dataclass(annotation) else dict(value)
    )


# Scalars: what a value must be an instance of, how it is taken, and what the error calls it.
_SCALARS: dict[type, tuple[Callable[[Any], bool], Callable[[Any], Any], str]] = {
    bool: (lambda v: isinstance(v, bool), bool, "true or false"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), float, "a number"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), int, "an integer"),
    str: (lambda v: isinstance(v, str), str, "a string"),
}


def _convert(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _convert_union(value, args, where)
    if origin is typing.Literal:
        if value not in args:
            raise KdasError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(annotation) or origin is dict:
        return _convert_table(value, annotation, where)
    if origin in (list, tuple):
        return _convert_sequence(value, origin, args, where)
    if annotation in _SCALARS:
        accepts, make, name = _SCALARS[annotation]
        if not accepts(value):
            raise KdasError(f"{where}: expected {name}, got {value!r}")
        return make(value)
    return value


def _overlay(default: Any, value: Any) -> Any:
    """`value` (a table) laid over a dataclass instance's fields, recursively, so nested tables
    that name some keys keep the others from `default`."""
    if not isinstance(value, Mapping) or not dataclasses.is_dataclass(default):
        return value
    base = {g.name: getattr(default, g.name) for g in dataclasses.fields(default) if g.init}
    return {**base, **{k: _overlay(base.get(k), v) for k, v in value.items()}}


def _over_field_default(f: dataclasses.Field[Any], value: Any) -> Any:
    """A partial table lands on the field's own default, not on its type's bare defaults:
    `[loss.kd] t0 = 4` in a search config must keep the search's `mode = "dynamic"`."""
    if not isinstance(value, Mapping) or f.default_factory is dataclasses.MISSING:
        return value
    default = f.default_factory()
    if isinstance(default, type):
        return value
    return _overlay(default, value)


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The range a numeric config value must lie in (each element, for a tuple of numbers)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def violation(self, value: Any) -> str | None:
        """Why `value` is out of range; None when it is in range (or None, i.e. unset)."""
        if value is None:
            return None
        if isinstance(value, list | tuple):
            return next((v for v in map(self.violation, value) if v), None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        for limit, holds, text in (
            (self.ge, lambda v, x: v >= x, ">="),
            (self.gt, lambda v, x: v > x, ">"),
            (self.le, lambda v, x: v <= x, "<="),
            (self.lt, lambda v, x: v < x, "<"),
        ):
            if limit is not None and not holds(value, limit):
                return f"must be {text} {limit:g}, got {value!r}"
        return None


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field with a checked range: `epochs: int = bounded(60, ge=1)`."""
    return dataclasses.field(default=default, metadata={"bounds": Bounds(ge, gt, le, lt)})


def check_bounds(config: Any, where: str = "config") -> None:
    """Every bounded field of a config and of the configs nested in it, for configs built in
    Python (from_dict checks the ones read from files and options as it builds them)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        bounds = f.metadata.get("bounds")
        if bounds is not None and (problem := bounds.violation(value)):
            raise KdasError(f"{where}.{f.name} {problem}")
        check_bounds(value, f"{where}.{f.name}")


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from a mapping, converting nested tables and checking types.

    Unknown keys are an error (a typo must not be silently ignored); missing keys take defaults.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise KdasError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(fields))})")
    kwargs = {
        name: _convert(_over_field_default(fields[name], value), hints[name], f"{where}.{name}")
        for name, value in data.items()
    }
    for name, value in kwargs.items():
        bounds = fields[name].metadata.get("bounds")
        if bounds is not None and (problem := bounds.violation(value)):
            raise KdasError(f"{where}.{name} {problem}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise KdasError(f"{where}: {exc}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_hash(config: Any) -> str:
    """A short stable hash of a config, used to tell whether an artifact is up to date."""
    payload = json.dumps(
        to_dict(config) if dataclasses.is_dataclass(config) else config, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_typed_config(
    cls: type[T], path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> T:
    """File values, then CLI overrides on top, into the typed config `cls`."""
    data = load_config_file(path) if path else {}
    if overrides:
        data = deep_merge(data, overrides)
    return from_dict(cls, data, where=str(path) if path else "config")
