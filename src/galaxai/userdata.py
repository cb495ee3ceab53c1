"""Deblend users' own files: stamps (FITS, PNG/JPEG, .npy) and whole FITS images.

:func:`read_stamps` turns one input file into display stamps ``(N, H, W, 3)`` in [0, 1]:

* PNG/JPEG: the 8-bit RGB image as it is (one stamp);
* ``.npy``: ``(H, W, 3)`` or ``(N, H, W, 3)`` floats in [0, 1];
* FITS: a ``(3, H, W)`` cube of bands g, r, i or one ``(H, W)`` band, shown with
  :func:`galaxai.data.real.asinh_rgb` against the stamp's own sky noise. Files named
  ``<stem>_g.fits``, ``<stem>_r.fits``, ``<stem>_i.fits`` are read together as one cube.

:func:`find_blended_pairs` works on a whole FITS image: SEP detects sources, and two sources whose
footprints touch are a blended pair; :func:`cut_pair_stamps` cuts a square stamp centred on the
brighter member, large enough to hold both (a stamp that is not 80×80 is resampled by
:func:`galaxai.deblend` with a warning). :func:`deblend_files` runs the whole job and writes one
FITS and one PNG per output plus a catalogue (Parquet and CSV).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from galaxai.data.sources import LoadReport, SourceError

__all__ = ["STAMP_SUFFIXES", "read_stamps", "find_blended_pairs", "cut_pair_stamps",
           "DeblendJob", "deblend_files"]

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")
STAMP_SUFFIXES = _FITS_SUFFIXES + (".png", ".jpg", ".jpeg", ".npy")
_BAND_FILE = re.compile(r"^(?P<stem>.+)_(?P<band>[gri])\.(fits|fit|fts)(\.gz)?$")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".fits.gz" if name.endswith(".fits.gz") else path.suffix.lower()


def _sky(data: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-band sigma-clipped sky level and the noise of the band sum."""
    from galaxai.data.background import sky_statistics

    levels = sky_statistics(data[None], detect=False)[1][0]
    total = (data - levels[:, None, None]).sum(axis=0)
    return levels, float(sky_statistics(total[None, None], detect=False)[2][0, 0])


def flux_to_display(data: np.ndarray) -> np.ndarray:
    """FITS flux ``(C, H, W)`` (C = 1 or 3) to a display image, sky subtracted and asinh-stretched."""
    from galaxai.data.real import asinh_rgb

    levels, sigma = _sky(data)
    flux = data - levels[:, None, None]
    return asinh_rgb(flux[0] if len(flux) == 1 else flux, sigma).astype(np.float32)


def _read_fits_bands(paths: list[Path]) -> np.ndarray:
    from galaxai.data.sources import read_fits_stamp

    planes = [read_fits_stamp(p, allow_nan=False).data for p in paths]
    data = np.concatenate(planes) if len(planes) > 1 else planes[0]
    if data.shape[0] not in (1, 3):
        raise SourceError(f"{paths[0]}: {data.shape[0]} bands; give one band or three (g, r, i)")
    return data.astype(np.float64)


def read_stamps(path: str | Path) -> np.ndarray:
    """One input file (or a ``<stem>_g|r|i.fits`` band set) as ``(N, H, W, 3)`` display stamps.

    Raises
    ------
    SourceError
        Unreadable file, unknown suffix, wrong shape or range; the message names the file.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix in (".png", ".jpg", ".jpeg"):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0)
        except (OSError, UnidentifiedImageError) as exc:
            raise SourceError(f"{path} is not a readable image ({exc})") from None
        return rgb[None]
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SourceError(f"{path} is not a readable .npy array ({exc})") from None
        arr = arr[None] if arr.ndim == 3 else arr
        if arr.ndim != 4 or arr.shape[-1] != 3 or not np.issubdtype(arr.dtype, np.floating):
            raise SourceError(f"{path}: array of shape {arr.shape} and dtype {arr.dtype}; give "
                              "float (H, W, 3) or (N, H, W, 3) display images in [0, 1]")
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise SourceError(f"{path}: values outside [0, 1] or NaN; give display images")
        return arr.astype(np.float32)
    if suffix in _FITS_SUFFIXES:
        return flux_to_display(_read_fits_bands(_band_set(path)))[None]
    raise SourceError(f"{path}: unknown file type; give one of {', '.join(STAMP_SUFFIXES)}")


def _band_set(path: Path) -> list[Path]:
    """``[path]``, or the g, r, i files of a ``<stem>_<band>.fits`` set (all three must exist)."""
    match = _BAND_FILE.match(path.name)
    if not match:
        return [path]
    files = [path.with_name(_BAND_FILE.sub(lambda m: f"{m['stem']}_{b}.{m.group(3)}"
                                           + (m.group(4) or ""), path.name)) for b in "gri"]
    missing = [f for f in files if not f.is_file()]
    if missing:
        return [path]
    return files


@dataclass
class BlendedPair:
    """Two sources of a field whose footprints touch."""

    x_a: float
    y_a: float
    x_b: float
    y_b: float
    flux_a: float
    flux_b: float

    @property
    def separation(self) -> float:
        return float(np.hypot(self.x_b - self.x_a, self.y_b - self.y_a))


def find_blended_pairs(data: np.ndarray, *, thresh: float = 3.0, minarea: int = 10,
                       max_separation: float = 40.0) -> list[BlendedPair]:
    """Pairs of SEP sources in a ``(C, H, W)`` image whose segmentation footprints touch.

    A is the brighter member (it is centred in the stamp). A source touching several others
    appears in one pair per neighbour.
    """
    import sep
    from scipy import ndimage

    total = np.ascontiguousarray(data.sum(axis=0), dtype=np.float64)
    bkg = sep.Background(total)
    objects, segmap = sep.extract(total - bkg, thresh, err=bkg.globalrms, minarea=minarea,
                                  segmentation_map=True)
    pairs, seen = [], set()
    for i in range(len(objects)):
        grown = ndimage.binary_dilation(segmap == i + 1)
        for j in np.unique(segmap[grown]):
            j = int(j) - 1
            if j < 0 or j == i or (min(i, j), max(i, j)) in seen:
                continue
            seen.add((min(i, j), max(i, j)))
            a, b = (i, j) if objects["flux"][i] >= objects["flux"][j] else (j, i)
            pair = BlendedPair(float(objects["x"][a]), float(objects["y"][a]),
                               float(objects["x"][b]), float(objects["y"][b]),
                               float(objects["flux"][a]), float(objects["flux"][b]))
            if pair.separation <= max_separation:
                pairs.append(pair)
    return pairs


def cut_pair_stamps(data: np.ndarray, pairs: list[BlendedPair], *, size: int = 80,
                    separation_in_stamp: float = 16.0) -> tuple[np.ndarray, list[int]]:
    """Square flux stamps ``(N, C, S, S)`` centred on each pair's A (sky-noise padded at edges).

    The side is ``size`` unless the pair is wider apart than ``separation_in_stamp`` pixels (the
    training blends' largest axis shift in an 80 px stamp: 50 of 424 px × 142/424); then it
    grows so the separation maps to that, and :func:`galaxai.deblend` resamples it with a warning. Returns the stamps (one
    side for all: the largest needed) and the side used for each pair.
    """
    sides = [max(size, int(np.ceil(size * p.separation / separation_in_stamp))) for p in pairs]
    side = max(sides) if sides else size
    levels, sigma = _sky(data)
    rng = np.random.default_rng(0)
    out = np.empty((len(pairs), data.shape[0], side, side))
    h, w = data.shape[1:]
    for k, p in enumerate(pairs):
        y0, x0 = int(round(p.y_a)) - side // 2, int(round(p.x_a)) - side // 2
        stamp = levels[:, None, None] + sigma / np.sqrt(len(data)) * rng.standard_normal(
            (data.shape[0], side, side))
        ya, yb, xa, xb = max(y0, 0), min(y0 + side, h), max(x0, 0), min(x0 + side, w)
        stamp[:, ya - y0:yb - y0, xa - x0:xb - x0] = data[:, ya:yb, xa:xb]
        out[k] = stamp
    return out, sides


@dataclass
class DeblendJob:
    """What :func:`deblend_files` wrote and skipped."""

    catalogue: pd.DataFrame
    report: LoadReport
    out: Path


def _write_outputs(out: Path, name: str, blend: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    from astropy.io import fits

    from galaxai._atomic import atomic_write
    from galaxai.viz.render import save_png

    for label, image in (("a", a), ("b", b)):
        hdu = fits.PrimaryHDU(np.moveaxis(image, -1, 0).astype(np.float32))
        hdu.header["GXOUTPUT"] = (label, "galaxai deblend output: a centred, b neighbour")
        hdu.header["BUNIT"] = ("display", "display units in [0, 1] (R, G, B planes)")
        atomic_write(out / f"{name}_{label}.fits", lambda tmp, h=hdu: h.writeto(tmp))
    save_png(np.concatenate([blend, a, b], axis=1), out / f"{name}.png")


def deblend_files(inputs: list[str | Path], out: str | Path, *, checkpoint=None,
                  progress: bool = False, field_threshold: float = 3.0,
                  self_ensemble: bool | None = None) -> DeblendJob:
    """Deblend stamps and whole FITS images; write outputs and a catalogue into ``out``.

    A FITS file larger than 2 × 80 px on a side is treated as a whole image
    (:func:`find_blended_pairs`, :func:`cut_pair_stamps`); every other file as stamps. Bad files
    are skipped and listed; outputs already written are kept when a later file fails.

    The catalogue has one row per deblended stamp: ``pair_id``, ``input``, the pair's positions
    and ``separation_px`` (whole images; NaN for stamps), SEP's detected fluxes, ``flux_blend``,
    ``flux_a_out`` and ``flux_b_out`` (display units summed above the stamp's median sky, so
    before/after compare within one stamp), D's ``p_real_a``/``p_real_b`` and the file names.
    ``self_ensemble`` is passed to :func:`galaxai.deblend` (``None``: the model's own setting).
    """
    import warnings

    from galaxai._atomic import atomic_write
    from galaxai.api import StampSizeWarning, deblend, discriminate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report, rows = LoadReport(), []
    files = [Path(p) for p in inputs]
    done_bands: set[Path] = set()
    used: set[str] = set()
    # the discriminator trained with the generator: a shipped name or a checkpoint folder's D
    d_checkpoint = checkpoint if checkpoint is not None and (
        not Path(checkpoint).suffix or (Path(checkpoint) / "D.safetensors").is_file()) else None
    iterator = files
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(files, desc="deblend", unit="file")
    for path in iterator:
        if path in done_bands:
            continue
        try:
            stamps, meta = _stamps_of(path, field_threshold)
        except SourceError as exc:
            report.skipped.append((str(path), str(exc)))
            continue
        done_bands.update(_band_set(path) if _suffix(path) in _FITS_SUFFIXES else [])
        if len(stamps) == 0:
            report.skipped.append((str(path), "no blended pair found"))
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StampSizeWarning)
            a, b = deblend(stamps, checkpoint=checkpoint, self_ensemble=self_ensemble)
            p_a, p_b = discriminate(a, checkpoint=d_checkpoint), discriminate(b, checkpoint=d_checkpoint)
        for message in dict.fromkeys(str(w.message) for w in caught):
            warnings.warn(f"{path}: {message}", StampSizeWarning, stacklevel=2)
        stem = re.sub(r"(_[gri])?\.(fits|fit|fts)(\.gz)?$|\.(png|jpe?g|npy)$", "", path.name,
                      flags=re.IGNORECASE)
        if any(name.startswith(f"{stem}_") for name in used):  # two inputs with one stem
            stem = f"{stem}_{_suffix(path).lstrip('.').replace('.', '_')}"
        for k in range(len(stamps)):
            name = f"{stem}_{k:04d}"
            used.add(name)
            _write_outputs(out, name, stamps[k], a[k], b[k])
            sky = np.median(stamps[k], axis=(0, 1))
            rows.append({"pair_id": name, "input": str(path), **meta[k],
                         "flux_blend": float((stamps[k] - sky).clip(0).sum()),
                         "flux_a_out": float((a[k] - sky).clip(0).sum()),
                         "flux_b_out": float((b[k] - sky).clip(0).sum()),
                         "p_real_a": float(p_a[k]), "p_real_b": float(p_b[k]),
                         "fits_a": f"{name}_a.fits", "fits_b": f"{name}_b.fits",
                         "png": f"{name}.png"})
        report.loaded.append(str(path))
        table = pd.DataFrame(rows)
        atomic_write(out / "catalogue.parquet", lambda tmp: table.to_parquet(tmp, index=False))
        atomic_write(out / "catalogue.csv", lambda tmp: table.to_csv(tmp, index=False))
    if not rows:
        raise SourceError(f"nothing could be deblended:\n{report.summary()}")
    return DeblendJob(pd.DataFrame(rows), report, out)


def _stamps_of(path: Path, field_threshold: float) -> tuple[np.ndarray, list[dict]]:
    """Display stamps of one input and per-stamp catalogue fields."""
    if _suffix(path) in _FITS_SUFFIXES:
        data = _read_fits_bands(_band_set(path))
        if min(data.shape[1:]) > 160:
            pairs = find_blended_pairs(data, thresh=field_threshold)
            cut, sides = cut_pair_stamps(data, pairs)
            stamps = np.stack([flux_to_display(c) for c in cut]) if pairs else np.empty((0,))
            meta = [{"x_a": p.x_a, "y_a": p.y_a, "x_b": p.x_b, "y_b": p.y_b,
                     "separation_px": p.separation, "flux_a_detected": p.flux_a,
                     "flux_b_detected": p.flux_b, "stamp_side": s} for p, s in zip(pairs, sides)]
            return stamps, meta
        stamps = flux_to_display(data)[None]  # a stamp: the file is read once
    else:
        stamps = read_stamps(path)
    side = stamps.shape[1]
    meta = [{"x_a": (side - 1) / 2, "y_a": (side - 1) / 2, "x_b": np.nan, "y_b": np.nan,
             "separation_px": np.nan, "flux_a_detected": np.nan, "flux_b_detected": np.nan,
             "stamp_side": side} for _ in range(len(stamps))]
    return stamps, meta
