"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists ``name -> submodule`` for names it re-exports without importing the submodule
up front (e.g. torch-based modules), and binds the returned functions::

    __getattr__, __dir__ = lazy_exports(__name__, {"train_model": "training"}, globals())

The first access imports the submodule and caches the value in the package namespace.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` resolving ``names`` on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping of str to str
        Exported name → submodule (relative to ``package``) that defines it.
    namespace : dict
        The package's ``globals()``; resolved values are cached there.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(import_module(f"{package}.{names[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())) | set(names))

    return __getattr__, __dir__
