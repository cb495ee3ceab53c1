"""Galaxy ids and bar-length catalogues for the real-data steps.

Reads what a user names galaxies with: id lists and id files (:func:`parse_ids`) and bar-length
catalogues such as Hoyle et al. (2011) with an optional R90 table (:func:`read_bar_catalogue`),
and finds the Hoyle table without being told where (:func:`find_hoyle_catalogue`).
:mod:`.saliency_maps` uses them to choose the galaxies to explain and :mod:`.bars` to compare
the measured lengths with the catalogue.

Identifiers
-----------
Galaxies are keyed by their integer id: ``<id>.jpg`` in ``images_training_rev1/``,
``images_test_rev1/`` or the directory itself. Kaggle ``GalaxyID``s are **not** SDSS ``objid``s,
so the Hoyle galaxies are found only in a directory of Galaxy Zoo 2 cut-outs named
``<objid>.jpg``. The catalogue enters as ``length_scaled`` and, when a ``petroR90_r`` column (or
R90 table) is given, R90 (spec ``smoothgrad_barlength.md`` §6).

References
----------
D. Hoyle et al., MNRAS 415, 3627 (2011), arXiv:1104.5394.
S. Dieleman, K. W. Willett, J. Dambre, MNRAS 450, 1441 (2015) (the Kaggle challenge).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from galaxai.morphology._common import InputError

__all__ = [
    "HOYLE_ENV",
    "find_hoyle_catalogue",
    "read_bar_catalogue",
    "parse_ids",
]

#: Environment variable naming the Hoyle et al. (2011) table (``hoyle_barlengths.csv``).
HOYLE_ENV = "GALAXAI_HOYLE_CATALOGUE"
_ID_COLUMNS = ("objid", "dr7objid", "GalaxyID", "galaxy_id", "id")
_R90_COLUMNS = ("petroR90_r", "PETROR90_R", "petror90_r", "r90")


def find_hoyle_catalogue() -> Path:
    """The Hoyle et al. (2011) table: ``$GALAXAI_HOYLE_CATALOGUE`` if set, else the copy shipped
    inside the package (:func:`galaxai._data.hoyle_catalogue`).

    Raises
    ------
    InputError
        ``$GALAXAI_HOYLE_CATALOGUE`` is set but names no file.
    """
    from galaxai import _data

    env = os.environ.get(HOYLE_ENV)
    if env:
        if not Path(env).is_file():
            raise InputError(f"${HOYLE_ENV} names {env}, which is not a file; fix the variable "
                             "or pass the catalogue explicitly", "catalogue")
        return Path(env)
    return _data.hoyle_catalogue()


def _to_ids(values: Iterable, source: str, param: str) -> list[int]:
    ids: list[int] = []
    for value in values:
        if isinstance(value, (float, np.floating)):
            raise InputError(f"{source}: ids were read as floating-point numbers (a missing value "
                             "in the id column?), which loses the digits of SDSS objids; give "
                             "every row an integer id", param)
        text = str(value).strip()
        if not text.isdigit():
            raise InputError(f"{source}: {text!r} is not an integer galaxy id (Kaggle GalaxyID or "
                             "SDSS objid); pass ids such as 100008,100023 or a file with one id "
                             "per line", param)
        ids.append(int(text))
    return list(dict.fromkeys(ids))


def _id_column(df: pd.DataFrame, source: str, param: str) -> str:
    for name in _ID_COLUMNS:
        if name in df.columns:
            return name
    raise InputError(f"{source} has no id column; name one of {list(_ID_COLUMNS)} "
                     f"(columns are {list(df.columns)[:8]})", param)


def _read_table(path: Path, what: str, param: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist; check the path", param)
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError,
            ValueError) as exc:
        raise InputError(f"{what} {path} is not a readable CSV/Parquet table ({exc})",
                         param) from None


def parse_ids(spec: str | os.PathLike | Sequence[int], *, param: str = "ids") -> list[int]:
    """Galaxy ids from a comma-separated list, a file, or a sequence (duplicates dropped).

    A file holds one id per line (blank lines and ``#`` comments ignored), or is a CSV with a
    header naming an id column (``objid``, ``GalaxyID``, ``id``, …).

    Raises
    ------
    InputError
        A missing file, a token that is not an integer, or no id at all.
    """
    if not isinstance(spec, (str, os.PathLike)):
        ids = _to_ids(spec, "ids", param)
    else:
        text = os.fspath(spec).strip()
        path = Path(text)
        if path.is_file():
            lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
            lines = [ln for ln in lines if ln]
            if lines and not lines[0].split(",")[0].strip().isdigit():
                table = _read_table(path, "id file", param)
                ids = _to_ids(table[_id_column(table, str(path), param)], str(path), param)
            else:
                ids = _to_ids((ln.split(",")[0] for ln in lines), str(path), param)
        elif os.sep in text or text.endswith((".txt", ".csv")):
            raise InputError(f"id file {text} does not exist; give a file of ids or a "
                             "comma-separated list", param)
        else:
            ids = _to_ids((t for t in text.split(",") if t.strip()), "the id list", param)
    if not ids:
        raise InputError(f"no galaxy id in {spec!s}", param)
    return ids


def read_bar_catalogue(path: str | os.PathLike, *, r90: str | os.PathLike | None = None,
                       require_lengths: bool = True) -> pd.DataFrame:
    """Read a bar-length catalogue such as Hoyle et al. (2011) (CSV or Parquet).

    Parameters
    ----------
    path : path-like
        Table with an id column (``objid`` for Hoyle; also ``GalaxyID`` or ``id``) and
        ``length_scaled``; a ``petroR90_r`` (or ``r90``) column is used when present.
    r90 : path-like, optional
        A second table with the id and ``petroR90_r`` (e.g. from the GZ2 sample table), joined
        on the id; it takes precedence over an R90 column of the catalogue.
    require_lengths : bool
        Require ``length_scaled`` (needed for ρ; not for choosing galaxies).

    Returns
    -------
    pandas.DataFrame
        The catalogue with added columns ``id`` (int64), ``length_scaled`` and ``r90`` (float;
        NaN where unknown), one row per galaxy.

    Raises
    ------
    InputError
        Missing file or column, non-numeric values, duplicate ids, non-positive R90.
    """
    path = Path(path)
    cat = _read_table(path, "catalogue", "catalogue")
    id_col = _id_column(cat, str(path), "catalogue")
    if cat[id_col].duplicated().any():
        dup = cat.loc[cat[id_col].duplicated(), id_col].head(3).tolist()
        raise InputError(f"catalogue {path} lists id(s) {dup} more than once; keep one row per "
                         "galaxy", "catalogue")
    cat = cat.assign(id=np.asarray(_to_ids(cat[id_col], str(path), "catalogue"), np.int64))
    if "length_scaled" in cat.columns:
        cat["length_scaled"] = pd.to_numeric(cat["length_scaled"], errors="coerce")
    elif require_lengths:
        raise InputError(f"catalogue {path} lacks the column 'length_scaled' (the Hoyle et al. "
                         "2011 bar length over galaxy size); pass hoyle_barlengths.csv or rename "
                         "your length column", "catalogue")
    r90_col = next((c for c in _R90_COLUMNS if c in cat.columns), None)
    cat["r90"] = pd.to_numeric(cat[r90_col], errors="coerce") if r90_col else np.nan
    if r90 is not None:
        extra = _read_table(Path(r90), "R90 table", "r90")
        col = next((c for c in _R90_COLUMNS if c in extra.columns), None)
        if col is None:
            raise InputError(f"R90 table {r90} has none of the columns {list(_R90_COLUMNS)}; it "
                             "needs the id and petroR90_r (arcsec) of each galaxy", "r90")
        ids = _to_ids(extra[_id_column(extra, str(r90), "r90")], str(r90), "r90")
        if len(ids) != len(extra):
            raise InputError(f"R90 table {r90} lists a galaxy more than once", "r90")
        lookup = pd.Series(pd.to_numeric(extra[col], errors="coerce").to_numpy(), index=ids)
        cat["r90"] = cat["id"].map(lookup).astype(float)
    if (cat["r90"] <= 0).any():
        raise InputError(f"R90 must be positive; {int((cat['r90'] <= 0).sum())} galaxies of "
                         f"{r90 or path} have R90 <= 0", "r90" if r90 else "catalogue")
    return cat.reset_index(drop=True)
