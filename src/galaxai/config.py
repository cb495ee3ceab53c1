"""Frozen-dataclass configs with named presets and strict TOML round-trips.

Every configurable part of galaxai (simulator, blends, deblender, trainer) is a frozen dataclass
with presets ``paper`` (the publication exactly), ``small`` (a 2-core CPU in about an hour) and
``tiny`` (tests). This module holds the shared machinery: building a config from a mapping while
rejecting unknown keys by name, and writing/reading the resolved config as TOML.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
from pathlib import Path
from typing import Any, Mapping, TypeVar

import tomli_w

from galaxai._atomic import atomic_write_text

__all__ = ["config_from_mapping", "config_to_dict", "write_config", "read_config"]

T = TypeVar("T")


def config_from_mapping(cls: type[T], values: Mapping[str, Any], *, source: str = "config") -> T:
    """Build dataclass ``cls`` from ``values``; unknown keys raise a ``ValueError`` naming them.

    Nested dataclass fields accept nested mappings. Lists become tuples (configs are frozen).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {unknown} for {cls.__name__}; valid keys are {sorted(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        ftype = fields[name].type
        target = _resolve_type(cls, name, ftype)
        if dataclasses.is_dataclass(target) and isinstance(value, Mapping):
            value = config_from_mapping(target, value, source=f"{source}.{name}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _resolve_type(cls: type, name: str, ftype: Any) -> Any:
    """The field's type; of an optional field (``X | None``) its one non-None member."""
    import typing

    if isinstance(ftype, str):
        ftype = typing.get_type_hints(cls).get(name, ftype)
    if typing.get_origin(ftype) not in (typing.Union, types.UnionType):
        return ftype
    members = [t for t in typing.get_args(ftype) if t is not type(None)]
    return members[0] if len(members) == 1 else ftype


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A TOML-safe dict of a dataclass config (tuples become lists, ``None`` values are dropped)."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return clean(dataclasses.asdict(cfg))


def write_config(path: str | Path, cfg: Any) -> Path:
    """Write the resolved ``cfg`` to ``path`` as TOML, atomically."""
    return atomic_write_text(path, tomli_w.dumps(config_to_dict(cfg)))


def read_config(cls: type[T], path: str | Path) -> T:
    """Read a TOML file written by :func:`write_config` (or by hand) into ``cls``."""
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from None
    return config_from_mapping(cls, values, source=str(path))
