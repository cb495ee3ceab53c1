"""Real galaxy images: the Galaxy Zoo Kaggle directory, FITS stamps, Hubble Deep Field cut-outs.

Three readers, all local (``galaxai.data`` knows no network):

* :func:`load_galaxy_zoo` reads the Kaggle "galaxy-zoo-the-galaxy-challenge" layout
  (``images_training_rev1/<GalaxyID>.jpg`` and ``training_solutions_rev1.csv`` with the 37
  vote-fraction columns; ``images_test_rev1/`` without labels) into 424×424 float frames in [0, 1];
  :func:`paper_crop` is the paper's 424 → central 240 → 80 px cut (Reiman & Göhre 2019).
* :func:`load_fits_dir` reads a directory of FITS stamps, one galaxy per file: the first image HDU,
  ``(H, W)`` or a ``(C, H, W)`` cube of bands; header and WCS go to the catalogue, NaNs are counted
  per file.
* :func:`fits_cutouts` cuts stamps around given positions from a large image such as a Hubble Deep
  Field mosaic (one FITS file per band on a common pixel grid), with
  :class:`astropy.nddata.Cutout2D`.

Single-file readers raise :class:`SourceError` naming the file and the fix. Batch loaders never
stop on a bad file: they skip it and list it, with the reason, in the returned
:class:`LoadReport`; they raise only when nothing at all could be read.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D, NoOverlapError, PartialOverlapError
from astropy.wcs import WCS
from PIL import Image, UnidentifiedImageError

from galaxai.data.blend import crop_and_resize
from galaxai.data.errors import DataError

__all__ = [
    "GALAXY_ZOO_CLASSES",
    "SourceError",
    "LoadReport",
    "GalaxyZooData",
    "FitsStamps",
    "read_jpeg",
    "read_galaxy_zoo_labels",
    "load_galaxy_zoo",
    "paper_crop",
    "FitsStamp",
    "read_fits_stamp",
    "load_fits_dir",
    "fits_cutouts",
]

#: The 37 Galaxy Zoo 2 vote-fraction columns of ``training_solutions_rev1.csv``, in file order.
GALAXY_ZOO_CLASSES: tuple[str, ...] = tuple(
    f"Class{q}.{a}"
    for q, n_answers in enumerate((3, 2, 2, 2, 4, 2, 3, 7, 3, 3, 6), start=1)
    for a in range(1, n_answers + 1)
)

_GZ_LABELS = "training_solutions_rev1.csv"
_FITS_PATTERNS = ("*.fits", "*.fit", "*.fts", "*.fits.gz", "*.fit.gz")
NAN_POLICIES = ("skip", "keep", "noise")


class SourceError(DataError):
    """A source file or directory that cannot be used; the message names it and the fix."""


@dataclass
class LoadReport:
    """What a batch loader read and what it skipped.

    Attributes
    ----------
    loaded : list of str
        Files (or items) read, in output order.
    skipped : list of (str, str)
        ``(file or item, reason)`` for everything left out.
    """

    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was skipped."""
        return not self.skipped

    def summary(self, max_items: int = 10) -> str:
        """A short human-readable account (first ``max_items`` skipped items with reasons)."""
        lines = [f"{len(self.loaded)} loaded, {len(self.skipped)} skipped"]
        lines += [f"  skipped {item}: {reason}" for item, reason in self.skipped[:max_items]]
        if len(self.skipped) > max_items:
            lines.append(f"  ... and {len(self.skipped) - max_items} more")
        return "\n".join(lines)


@dataclass
class GalaxyZooData:
    """Galaxy Zoo frames with their ids and (training split) vote fractions.

    Attributes
    ----------
    frames : ndarray, shape (N, 424, 424, 3), float32 in [0, 1]
    ids : ndarray, shape (N,), int64
        ``GalaxyID`` of each frame.
    labels : pandas.DataFrame or None
        The 37 vote fractions (:data:`GALAXY_ZOO_CLASSES`), one row per frame, indexed by
        ``GalaxyID``; ``None`` for the test split or ``labels=False``.
    paths : list of str
    report : LoadReport
    """

    frames: np.ndarray
    ids: np.ndarray
    labels: pd.DataFrame | None
    paths: list[str]
    report: LoadReport


@dataclass
class FitsStamps:
    """Stamps read from FITS files (or cut from one image), with their catalogue.

    Attributes
    ----------
    images : ndarray, shape (N, C, H, W), float32
        Flux images as stored (no stretch). NaNs only with ``nan_policy="keep"``.
    catalogue : pandas.DataFrame
        One row per stamp: source file, HDU, shape, NaN count, WCS centre and the header/WCS as
        text (``header``, ``wcs``); cut-outs add the requested and actual positions.
    report : LoadReport
    """

    images: np.ndarray
    catalogue: pd.DataFrame
    report: LoadReport


def _check_dir(directory: str | Path, what: str) -> Path:
    directory = Path(directory)
    if not directory.exists():
        raise SourceError(f"{what} {directory} does not exist; check the path")
    if not directory.is_dir():
        raise SourceError(f"{what} {directory} is not a directory")
    try:
        next(directory.iterdir(), None)
    except PermissionError:
        raise SourceError(f"{what} {directory} is not readable; check its permissions") from None
    return directory


# --------------------------------------------------------------------------- Galaxy Zoo (Kaggle)


def read_jpeg(path: str | Path, size: int | None = 424) -> np.ndarray:
    """Read one RGB JPEG as float32 in [0, 1], shape ``(H, W, 3)``.

    Parameters
    ----------
    path : path-like
    size : int or None
        Required side (424 for Galaxy Zoo); ``None`` accepts any square or rectangular image.

    Raises
    ------
    SourceError
        Missing, unreadable or corrupt file, a non-RGB image or the wrong size.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode, arr = img.mode, np.asarray(img)
    except FileNotFoundError:
        raise SourceError(f"{path} does not exist") from None
    except PermissionError:
        raise SourceError(f"{path} is not readable; check its permissions") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise SourceError(f"{path} is not a readable JPEG ({exc}); re-download or delete it") from None
    if mode != "RGB" or arr.ndim != 3 or arr.shape[2] != 3:
        raise SourceError(f"{path} is a {mode} image of shape {arr.shape}; Galaxy Zoo frames must be "
                          "RGB (gri composites), e.g. convert it with PIL's Image.convert('RGB')")
    if size is not None and arr.shape[:2] != (size, size):
        raise SourceError(f"{path} is {arr.shape[1]}x{arr.shape[0]} px, expected {size}x{size}; "
                          "pass size=None or resample it")
    return arr.astype(np.float32) / np.float32(255.0)


def read_galaxy_zoo_labels(path: str | Path) -> pd.DataFrame:
    """Read ``training_solutions_rev1.csv`` (or the Kaggle root holding it).

    Returns
    -------
    pandas.DataFrame
        Index ``GalaxyID`` (int64), the 37 columns of :data:`GALAXY_ZOO_CLASSES` as float64.
    """
    path = Path(path)
    if path.is_dir():
        path = path / _GZ_LABELS
    if not path.is_file():
        raise SourceError(f"{path} not found; it comes with the Kaggle galaxy-zoo-the-galaxy-challenge "
                          "download (or pass labels=False)")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path} is not a readable CSV ({exc})") from None
    if df.columns[0] != "GalaxyID":
        raise SourceError(f"{path}: first column is {df.columns[0]!r}, expected 'GalaxyID'")
    missing = [c for c in GALAXY_ZOO_CLASSES if c not in df.columns]
    if missing:
        raise SourceError(f"{path} lacks vote-fraction column(s) {missing[:5]}"
                          f"{' ...' if len(missing) > 5 else ''}; is it training_solutions_rev1.csv?")
    try:
        values = df[list(GALAXY_ZOO_CLASSES)].astype(np.float64)
        ids = df["GalaxyID"].astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise SourceError(f"{path} has non-numeric entries ({exc})") from None
    values.index = pd.Index(ids, name="GalaxyID")
    if values.index.duplicated().any():
        dup = values.index[values.index.duplicated()][:5].tolist()
        raise SourceError(f"{path} lists GalaxyID(s) {dup} more than once")
    return values


def _galaxy_id(path: Path) -> int | None:
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return int(stem) if stem.isdigit() else None


def load_galaxy_zoo(root: str | Path, split: str = "training", *, ids: Iterable[int] | None = None,
                    limit: int | None = None, size: int | None = 424,
                    labels: bool = True) -> GalaxyZooData:
    """Load Galaxy Zoo JPEGs (and vote fractions) from the Kaggle directory layout.

    Parameters
    ----------
    root : path-like
        Directory holding ``images_<split>_rev1/`` (and ``training_solutions_rev1.csv``).
    split : {"training", "test"}
        Kaggle split; the paper builds training blends from ``training`` and test blends from
        ``test`` (disjoint galaxies).
    ids : iterable of int, optional
        GalaxyIDs to load (in this order); default all, sorted by id.
    limit : int, optional
        Load at most this many (after ``ids``); a 424² frame takes 2.2 MB as float32.
    size : int or None
        Required frame side (424); ``None`` accepts any size that matches the first frame.
    labels : bool
        Attach the 37 vote fractions (training split only). Images without a CSV row are skipped.

    Returns
    -------
    GalaxyZooData
        Bad files (corrupt, wrong mode or size, missing, unlabelled) are skipped and listed in
        ``report``.
    """
    if split not in ("training", "test"):
        raise ValueError(f"split must be 'training' or 'test', got {split!r}")
    root = _check_dir(root, "Galaxy Zoo directory")
    image_dir = root / f"images_{split}_rev1"
    if not image_dir.is_dir():
        raise SourceError(f"{image_dir} not found: expected the Kaggle layout "
                          f"<root>/images_{split}_rev1/<GalaxyID>.jpg")
    _check_dir(image_dir, "Galaxy Zoo image directory")
    table = read_galaxy_zoo_labels(root) if labels and split == "training" else None
    report = LoadReport()
    if ids is None:
        found = sorted((p for p in image_dir.glob("*.jpg") if _galaxy_id(p) is not None),
                       key=_galaxy_id)
        for p in sorted(image_dir.glob("*.jpg")):
            if _galaxy_id(p) is None:
                report.skipped.append((str(p), "file name is not <GalaxyID>.jpg"))
    else:
        found = [image_dir / f"{int(i)}.jpg" for i in ids]
    if limit is not None:
        found = found[:limit]
    frames: list[np.ndarray] = []
    got_ids: list[int] = []
    for p in found:
        gid = _galaxy_id(p)
        if table is not None and gid not in table.index:
            report.skipped.append((str(p), f"GalaxyID {gid} has no row in {_GZ_LABELS}"))
            continue
        try:
            frame = read_jpeg(p, size=size)
        except SourceError as exc:
            report.skipped.append((str(p), str(exc)))
            continue
        if frames and frame.shape != frames[0].shape:
            report.skipped.append((str(p), f"shape {frame.shape} differs from the first frame "
                                           f"{frames[0].shape}"))
            continue
        frames.append(frame)
        got_ids.append(gid)
        report.loaded.append(str(p))
    if not frames:
        raise SourceError(f"no Galaxy Zoo image could be read from {image_dir}:\n{report.summary()}")
    id_arr = np.asarray(got_ids, dtype=np.int64)
    return GalaxyZooData(
        frames=np.stack(frames),
        ids=id_arr,
        labels=None if table is None else table.loc[id_arr],
        paths=list(report.loaded),
        report=report,
    )


def paper_crop(frames: np.ndarray, out_size: int = 80, *, resize: str = "bilinear") -> np.ndarray:
    """The paper's cut of Galaxy Zoo frames: central 240 of 424 px, then ×1/3 to 80 px.

    Parameters
    ----------
    frames : ndarray, shape (N, F, F, 3)
        Channel-last display frames; other frame sizes keep the ratio (``round(F·240/424)``).
    out_size : int
    resize : {"bilinear", "area"}
        ``"bilinear"`` without anti-aliasing is the paper's (it samples every third pixel).

    Returns
    -------
    ndarray, shape (N, out_size, out_size, 3), float32
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"paper_crop expects (N, F, F, 3) frames, got shape {frames.shape}")
    out = crop_and_resize(np.moveaxis(frames, -1, 1), out_size, resize=resize)
    return np.ascontiguousarray(np.moveaxis(out, 1, -1), dtype=np.float32)


# --------------------------------------------------------------------------- FITS stamps


def _first_image_hdu(hdul: fits.HDUList, path: Path) -> int:
    for i, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.data is not None:
            return i
    raise SourceError(f"{path} has no image HDU with data; stamps must be image HDUs")


class FitsStamp(NamedTuple):
    """One stamp read by :func:`read_fits_stamp`."""

    data: np.ndarray
    header: fits.Header
    hdu: int
    notes: str


def read_fits_stamp(path: str | Path, *, hdu: int | None = None, allow_nan: bool = True
                    ) -> FitsStamp:
    """Read one stamp: the first image HDU (or ``hdu``) as float32 ``(C, H, W)``.

    Parameters
    ----------
    path : path-like
    hdu : int, optional
        HDU index; default the first image HDU with data.
    allow_nan : bool
        With ``False`` a stamp containing NaN or inf raises.

    Returns
    -------
    FitsStamp
        ``data`` (C, H, W) float32 (``(H, W)`` images get ``C = 1``), the HDU's ``header``, the
        ``hdu`` index read and ``notes`` (astropy warnings met while reading, e.g. non-standard
        header cards).

    Raises
    ------
    SourceError
        Missing, unreadable, corrupt or truncated file, no image data, a shape other than
        (H, W) or (C, H, W), or (with ``allow_nan=False``) NaN pixels.
    """
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False) as hdul:
                index = _first_image_hdu(hdul, path) if hdu is None else hdu
                if index >= len(hdul):
                    raise SourceError(f"{path} has {len(hdul)} HDU(s); HDU {index} does not exist")
                data = hdul[index].data
                header = hdul[index].header.copy()
                data = None if data is None else np.array(data, dtype=np.float32)
        except FileNotFoundError:
            raise SourceError(f"{path} does not exist") from None
        except PermissionError:
            raise SourceError(f"{path} is not readable; check its permissions") from None
        except SourceError:
            raise
        except (OSError, ValueError, TypeError, IndexError) as exc:
            raise SourceError(f"{path} is not a readable FITS file ({exc}); re-download or delete it"
                              ) from None
    messages = [str(w.message).replace("\n", " ") for w in caught]
    if any("truncated" in m for m in messages):
        raise SourceError(f"{path} is truncated ({'; '.join(messages)}); re-download it")
    if data is None:
        raise SourceError(f"{path}: HDU {index} holds no data")
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or min(data.shape) < 1:
        raise SourceError(f"{path}: image of shape {data.shape}; stamps must be (H, W) or a "
                          "(C, H, W) cube of bands")
    if not allow_nan and not np.isfinite(data).all():
        raise SourceError(f"{path} contains {int((~np.isfinite(data)).sum())} NaN/inf pixel(s); "
                          "mask or fill them (nan_policy='noise' in load_fits_dir) first")
    return FitsStamp(data, header, index, "; ".join(messages))


def _wcs_info(header: fits.Header, shape: tuple[int, ...]) -> dict:
    """Celestial WCS of a header as text plus the sky position of the stamp centre."""
    info = {"has_wcs": False, "ra": np.nan, "dec": np.nan, "wcs": "", "wcs_note": ""}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            wcs = WCS(header).celestial
        except (ValueError, KeyError, MemoryError) as exc:
            info["wcs_note"] = f"invalid WCS: {exc}"
            return info
    if caught:
        info["wcs_note"] = "; ".join(str(w.message).replace("\n", " ") for w in caught)
    if wcs.has_celestial and wcs.naxis == 2:
        cy, cx = (shape[-2] - 1) / 2.0, (shape[-1] - 1) / 2.0
        ra, dec = wcs.pixel_to_world_values(cx, cy)
        info.update(has_wcs=True, ra=float(ra), dec=float(dec), wcs=wcs.to_header_string())
    return info


def _noise_fill_nan(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from galaxai.data import background

    mask = ~np.isfinite(data)
    clean = np.where(mask, np.float32(0.0), data)
    filled = background.noise_fill(clean[None], mask[None], rng, channel_axis=1)
    return np.asarray(filled, dtype=np.float32)[0]


def _stack_common_shape(items: list[tuple[str, np.ndarray, dict]], report: LoadReport, what: str):
    """Keep the items of the most common shape (ties: the first seen); report the others."""
    if not items:
        return [], None
    counts = Counter(arr.shape for _, arr, _ in items)
    best = max(counts.values())
    shape = next(arr.shape for _, arr, _ in items if counts[arr.shape] == best)
    kept = []
    for name, arr, row in items:
        if arr.shape != shape:
            report.skipped.append((name, f"shape {arr.shape} differs from the {what} shape {shape}; "
                                         "cut or resample stamps to one size"))
        else:
            kept.append((name, arr, row))
    return kept, shape


def load_fits_dir(directory: str | Path, *, patterns: Sequence[str] = _FITS_PATTERNS,
                  hdu: int | None = None, nan_policy: str = "skip", seed: int = 0) -> FitsStamps:
    """Load a directory of FITS stamps, one galaxy per file.

    Parameters
    ----------
    directory : path-like
    patterns : sequence of str
        Glob patterns of the files to read (``*.fits``, ``*.fit``, ``*.fts``, gzipped too).
    hdu : int, optional
        HDU to read in every file; default the first image HDU with data.
    nan_policy : {"skip", "keep", "noise"}
        Files with NaN/inf pixels are skipped and reported (``"skip"``), kept as they are
        (``"keep"``), or their bad pixels filled with sky-like noise from the stamp's own
        sigma-clipped sky (``"noise"``, :func:`galaxai.data.background.noise_fill`). The count is
        in the catalogue's ``n_nan`` column in every case.
    seed : int
        Seed of the noise fill.

    Returns
    -------
    FitsStamps
        Files are read in name order. Stamps of a shape other than the most common one are
        skipped and reported, as are unreadable files.
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy={nan_policy!r} is not one of {list(NAN_POLICIES)}")
    directory = _check_dir(directory, "FITS directory")
    files = sorted({p for pattern in patterns for p in directory.glob(pattern) if p.is_file()})
    if not files:
        raise SourceError(f"no FITS files matching {list(patterns)} in {directory}")
    report = LoadReport()
    items = []
    for i, p in enumerate(files):
        try:
            data, header, index, notes = read_fits_stamp(p, hdu=hdu)
        except SourceError as exc:
            report.skipped.append((str(p), str(exc)))
            continue
        n_nan = int((~np.isfinite(data)).sum())
        if n_nan and nan_policy == "skip":
            report.skipped.append((str(p), f"{n_nan} NaN/inf pixel(s); use nan_policy='noise' to "
                                           "fill them or 'keep' to keep them"))
            continue
        if n_nan and nan_policy == "noise":
            data = _noise_fill_nan(data, np.random.default_rng([seed, i]))
        row = {"file": str(p), "hdu": index, "shape": str(tuple(data.shape)), "n_nan": n_nan,
               **_wcs_info(header, data.shape), "header": header.tostring(sep="\n"), "notes": notes}
        items.append((str(p), data, row))
    kept, shape = _stack_common_shape(items, report, "most common")
    if not kept:
        raise SourceError(f"no usable FITS stamp in {directory}:\n{report.summary()}")
    report.loaded = [name for name, _, _ in kept]
    return FitsStamps(images=np.stack([arr for _, arr, _ in kept]),
                      catalogue=pd.DataFrame([row for _, _, row in kept]), report=report)


# --------------------------------------------------------------------------- cut-outs


def fits_cutouts(images: str | Path | Sequence[str | Path], positions, size: int, *,
                 hdu: int | None = None, mode: str = "strict", fill_value: float = 0.0) -> FitsStamps:
    """Cut square stamps around ``positions`` from a large FITS image (e.g. a Hubble Deep Field).

    Parameters
    ----------
    images : path-like or sequence of path-like
        One file per band, all on the same pixel grid (e.g. the HDF F450W, F606W, F814W
        drizzled mosaics); the stamps get one channel per file, in this order.
    positions : array_like (N, 2) or astropy.coordinates.SkyCoord
        Pixel positions ``(x, y)`` (0-based, x along columns) or sky positions (needs a
        celestial WCS in the first file's header).
    size : int
        Stamp side in pixels.
    hdu : int, optional
        HDU to read; default the first image HDU with data.
    mode : {"strict", "partial"}
        ``"strict"`` skips (and reports) positions whose stamp leaves the image; ``"partial"``
        keeps them and fills the missing pixels with ``fill_value``.
    fill_value : float

    Returns
    -------
    FitsStamps
        ``images`` (N, C, size, size) float32; the catalogue has ``position`` (the index into
        ``positions``), ``x``, ``y`` (requested pixel centre), ``ra``, ``dec`` and the stamp's WCS.
    """
    if mode not in ("strict", "partial"):
        raise ValueError(f"mode must be 'strict' or 'partial', got {mode!r}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    paths = [Path(images)] if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if not paths:
        raise ValueError("fits_cutouts needs at least one image file")
    planes, header0 = [], None
    for p in paths:
        data, header, _, _ = read_fits_stamp(p, hdu=hdu)
        if data.shape[0] != 1:
            raise SourceError(f"{p}: expected one 2-D image per band, got shape {data.shape}")
        if planes and data.shape[1:] != planes[0].shape:
            raise SourceError(f"{p}: image shape {data.shape[1:]} differs from {paths[0]} "
                              f"{planes[0].shape}; the bands must share one pixel grid")
        planes.append(data[0])
        header0 = header if header0 is None else header0
    wcs_info = _wcs_info(header0, planes[0].shape)
    wcs = WCS(wcs_info["wcs"]) if wcs_info["has_wcs"] else None
    if isinstance(positions, SkyCoord):
        if wcs is None:
            raise SourceError(f"{paths[0]} has no celestial WCS; give pixel positions (x, y) instead")
        pos_list = [positions[i] for i in range(len(positions))] if positions.shape else [positions]
    else:
        arr = np.asarray(positions, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"positions must be (N, 2) pixel (x, y) or a SkyCoord, got shape {arr.shape}")
        pos_list = [tuple(p) for p in arr]
    report = LoadReport()
    stamps, rows = [], []
    for k, pos in enumerate(pos_list):
        try:
            cuts = [Cutout2D(plane, pos, (size, size), wcs=wcs, mode=mode, fill_value=fill_value,
                             copy=True) for plane in planes]
        except (NoOverlapError, PartialOverlapError, ValueError) as exc:
            report.skipped.append((f"position {k}", f"{exc}; use mode='partial' to keep edge stamps"))
            continue
        stamp = np.stack([c.data for c in cuts]).astype(np.float32)
        x, y = cuts[0].input_position_original
        row = {"position": k, "x": float(x), "y": float(y), "file": str(paths[0]),
               "n_nan": int((~np.isfinite(stamp)).sum()), "ra": np.nan, "dec": np.nan, "wcs": ""}
        if wcs is not None:
            ra, dec = wcs.pixel_to_world_values(x, y)
            row.update(ra=float(ra), dec=float(dec), wcs=cuts[0].wcs.to_header_string())
        stamps.append(stamp)
        rows.append(row)
        report.loaded.append(f"position {k}")
    if not stamps:
        raise SourceError(f"no stamp could be cut from {paths[0]}:\n{report.summary()}")
    return FitsStamps(images=np.stack(stamps), catalogue=pd.DataFrame(rows), report=report)
