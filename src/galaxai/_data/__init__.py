"""Small public data shipped inside the package (see README.md beside this file).

Nothing at run time reads a path outside the installed package: these helpers return the
shipped copies, and the readers that use them keep their environment-variable overrides.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["cosmos_dir", "hoyle_catalogue"]


def _path(*parts: str) -> Path:
    return Path(str(resources.files(__name__).joinpath(*parts)))


def cosmos_dir() -> Path:
    """Folder of the shipped GalSim COSMOS example sample (100 HST F814W galaxies)."""
    return _path("cosmos")


def hoyle_catalogue() -> Path:
    """The shipped Hoyle et al. (2011) Galaxy Zoo 2 bar-length table."""
    return _path("hoyle_barlengths.csv")
