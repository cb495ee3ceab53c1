"""Isolated real galaxies as deblender frames: the Hubble Deep Field (left half), COSMOS, user stamps.

Every reader returns :class:`RealFrames`: display frames ``(N, F, F, 3)`` in [0, 1] with the
galaxy centred, per-frame sky statistics (computed once here, so on-the-fly blending needs no
sigma clipping) and a catalogue. A frame is cut so that, after the blend recipe's central
``round(F·240/424)`` cut, the galaxy's half-light radius is drawn log-uniformly from
``hlr_range`` (the apparent-size spread a survey sees), within the zoom limits ``zoom_range``.

Sources
-------
``"hdf"``
    ``skimage.data.hubble_deep_field()`` (HST colour JPEG, unknown stretch). **Only columns
    0–499 are ever read**: the right half is reserved for an independent evaluation and
    :func:`hubble_deep_field` refuses it with :class:`ReservedDataError`. Galaxies are detected
    with SEP; other sources inside a frame are replaced by sky-like noise (their SEP footprints,
    dilated), and a galaxy whose own footprint touches another one (already blended) is left
    out. Rows ``< 580`` are the training split, rows ``≥ 580`` the test split; a frame never
    crosses the line.
``"cosmos"``
    The 100 GalSim COSMOS HST/ACS F814W postage stamps *as observed* (HST PSF and noise kept),
    tinted with a red- or blue-galaxy colour and shown with an asinh stretch. COSMOS index
    ``k % 5 == 4`` is the test split.
``fits`` / ``jpeg`` directories
    One isolated galaxy per file (:func:`frames_from_dir`): FITS ``(H, W)`` or ``(C, H, W)``
    flux, or 8-bit JPEG/PNG display images.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.transform import resize

from galaxai.choices import SPLITS as _SPLITS
from galaxai.data.background import noise_fill
from galaxai.data.sources import LoadReport, SourceError

__all__ = [
    "HDF_RESERVED_COLUMN",
    "HDF_TEST_ROW",
    "REAL_SOURCES",
    "ReservedDataError",
    "RealFrames",
    "hubble_deep_field",
    "hdf_frames",
    "cosmos_frames",
    "frames_from_dir",
    "real_frames",
    "frame_sky",
    "real_blends",
    "asinh_rgb",
]

#: First column of the Hubble Deep Field image that galaxai must never read.
HDF_RESERVED_COLUMN = 500
#: HDF rows at or below this line form the test split.
HDF_TEST_ROW = 580
#: Sources :func:`real_frames` knows by name.
REAL_SOURCES = ("hdf", "cosmos", "fits", "jpeg")


class ReservedDataError(SourceError):
    """Data reserved for an independent evaluation was asked for."""


@dataclass
class RealFrames:
    """Centred display frames of isolated real galaxies.

    Attributes
    ----------
    display : ndarray, shape (N, F, F, 3), float32 in [0, 1]
    sky_mean, sky_std : ndarray, shape (N, 3), float32
        Sigma-clipped sky level and noise of each frame and channel (sources masked).
    catalogue : pandas.DataFrame
        One row per frame: ``source``, ``split``, ``origin`` (file or position), ``hlr_native``
        and ``hlr_px`` (half-light radius before and after the zoom, in frame pixels), ``zoom``.
    report : LoadReport
    """

    display: np.ndarray
    sky_mean: np.ndarray
    sky_std: np.ndarray
    catalogue: pd.DataFrame
    report: LoadReport

    def __len__(self) -> int:
        return len(self.display)

    @classmethod
    def concat(cls, parts: "list[RealFrames]") -> "RealFrames":
        """One set from several (frames of one size), catalogues and reports appended."""
        if not parts:
            raise ValueError("concat needs at least one RealFrames")
        report = LoadReport([x for p in parts for x in p.report.loaded],
                            [x for p in parts for x in p.report.skipped])
        return cls(np.concatenate([p.display for p in parts]),
                   np.concatenate([p.sky_mean for p in parts]),
                   np.concatenate([p.sky_std for p in parts]),
                   pd.concat([p.catalogue for p in parts], ignore_index=True), report)


def _check_split(split: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    return split


def hubble_deep_field(columns: tuple[int, int] = (0, HDF_RESERVED_COLUMN)) -> np.ndarray:
    """The Hubble Deep Field colour image, columns ``[c0, c1)`` only, as float32 in [0, 1].

    Raises
    ------
    ReservedDataError
        When any column at or beyond :data:`HDF_RESERVED_COLUMN` (500) is asked for: the right
        half is reserved for an independent evaluation of galaxai, never for training, tuning,
        validation or tests.
    """
    c0, c1 = (int(c) for c in columns)
    if c1 > HDF_RESERVED_COLUMN or c0 < 0 or c0 >= c1:
        raise ReservedDataError(
            f"columns [{c0}, {c1}) of the Hubble Deep Field were asked for; only columns "
            f"0–{HDF_RESERVED_COLUMN - 1} (the left half) may be read: the right half is "
            "reserved for an independent evaluation. Ask for columns within (0, 500).")
    from skimage import data

    image = data.hubble_deep_field()[:, c0:c1]
    return np.ascontiguousarray(image, dtype=np.float32) / np.float32(255.0)


def frame_sky(display: np.ndarray, nsigma: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Sigma-clipped sky mean and standard deviation of ``(N, F, F, 3)`` frames, sources masked."""
    from galaxai.data.background import sky_statistics

    mean, _, std = sky_statistics(np.asarray(display, dtype=np.float32), channel_axis=-1,
                                  nsigma=nsigma)
    return np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)


def _draw_zoom(rng: np.random.Generator, hlr_native: float, hlr_range: tuple[float, float],
               zoom_range: tuple[float, float]) -> float:
    """Zoom that puts the half-light radius at a log-uniform draw of ``hlr_range`` in the cut."""
    target = math.exp(rng.uniform(math.log(hlr_range[0]), math.log(hlr_range[1])))
    # hlr in the cut stamp = hlr_native · zoom (the cut keeps the frame's pixel scale).
    return float(np.clip(target / max(hlr_native, 1e-3), *zoom_range))


def _resample(box: np.ndarray, frame: int) -> np.ndarray:
    """(h, w, C) box to (frame, frame, C), anti-aliased when shrinking, bilinear."""
    shrink = box.shape[0] > frame
    out = resize(box, (frame, frame, box.shape[2]), order=1, mode="reflect",
                 anti_aliasing=shrink, preserve_range=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def hdf_frames(split: str = "train", *, frame: int = 142, copies: int = 1, seed: int = 0,
               hlr_range: tuple[float, float] = (2.0, 30.0),
               zoom_range: tuple[float, float] = (0.5, 4.0), min_pixels: int = 25,
               thresh: float = 2.0) -> RealFrames:
    """Isolated galaxies of the Hubble Deep Field's left half as centred frames.

    Parameters
    ----------
    split : {"train", "test", "all"}
        Rows ``< HDF_TEST_ROW`` (train) or ``≥`` (test); a frame never crosses the line.
    frame : int
        Frame side (142: the simulator's, whose central cut is 80 px without resampling).
    copies : int
        Frames per galaxy, each at its own zoom draw.
    seed : int
    hlr_range : (float, float)
        Half-light radii (pixels of the cut stamp) drawn log-uniformly.
    zoom_range : (float, float)
        Limits of the zoom (frame px per image px); small galaxies are not blown up beyond it.
    min_pixels : int
        Smallest SEP footprint kept as a galaxy.
    thresh : float
        SEP detection threshold in units of the background RMS.
    """
    import sep

    _check_split(split)
    image = hubble_deep_field()
    grey = np.ascontiguousarray(image.mean(axis=2), dtype=np.float64)
    bkg = sep.Background(grey)
    objects, segmap = sep.extract(grey - bkg, thresh, err=bkg.globalrms, minarea=8,
                                  segmentation_map=True, deblend_cont=0.05)
    hlr, _ = sep.flux_radius(grey - bkg, objects["x"], objects["y"], 6.0 * objects["a"], 0.5,
                             normflux=objects["flux"], subpix=5)
    rng = np.random.default_rng(seed)
    rows_lo, rows_hi = {"train": (0, HDF_TEST_ROW), "test": (HDF_TEST_ROW, image.shape[0]),
                        "all": (0, image.shape[0])}[split]
    grown = ndimage.grey_dilation(segmap, size=(5, 5))
    frames, cat, report = [], [], LoadReport()
    for i, obj in enumerate(objects):
        label = i + 1
        name = f"hdf:{obj['x']:.0f},{obj['y']:.0f}"
        own = segmap == label
        if (obj["npix"] < min_pixels or not np.isfinite(hlr[i]) or hlr[i] <= 0
                or not rows_lo <= obj["y"] < rows_hi):
            continue
        ys, xs = np.nonzero(own)
        near = grown[max(ys.min() - 3, 0):ys.max() + 4, max(xs.min() - 3, 0):xs.max() + 4]
        ring = ndimage.binary_dilation(own, iterations=3)[max(ys.min() - 3, 0):ys.max() + 4,
                                                         max(xs.min() - 3, 0):xs.max() + 4]
        if np.any((near[ring] != 0) & (near[ring] != label)):
            report.skipped.append((name, "its footprint touches another source (already blended)"))
            continue
        for copy in range(copies):
            zoom = _draw_zoom(rng, float(hlr[i]), hlr_range, zoom_range)
            side = int(round(frame / zoom))
            y0 = int(round(obj["y"])) - side // 2
            x0 = int(round(obj["x"])) - side // 2
            # parts of the frame beyond the split's rows or the left half become sky noise
            ya, yb = max(y0, rows_lo), min(y0 + side, rows_hi)
            xa, xb = max(x0, 0), min(x0 + side, image.shape[1])
            box = np.zeros((side, side, 3), dtype=np.float32)
            seg = np.full((side, side), -1, dtype=segmap.dtype)
            box[ya - y0:yb - y0, xa - x0:xb - x0] = image[ya:yb, xa:xb]
            seg[ya - y0:yb - y0, xa - x0:xb - x0] = segmap[ya:yb, xa:xb]
            keep = ndimage.binary_dilation(seg == label, iterations=2)
            if (keep & (seg < 0)).any():
                report.skipped.append((f"{name}#{copy}", f"the galaxy reaches the edge of the "
                                                         f"{split} region"))
                continue
            others = ndimage.binary_dilation((seg > 0) & (seg != label), iterations=2) & ~keep
            # sky drawn from the box's own background pixels (sources detected and excluded),
            # which matches the JPEG's zero-clipped, non-Gaussian display sky
            clean = noise_fill(box[None], others | (seg < 0), rng, channel_axis=-1,
                               method="resample", clip=(0.0, 1.0))[0].astype(np.float32)
            frames.append(_resample(clean, frame))
            cat.append({"source": "hdf", "split": "test" if obj["y"] >= HDF_TEST_ROW else "train",
                        "origin": name, "x": float(obj["x"]), "y": float(obj["y"]),
                        "hlr_native": float(hlr[i]), "zoom": frame / side,
                        "hlr_px": float(hlr[i]) * frame / side,
                        "flux": float(obj["flux"]),
                        "filled_fraction": float((others | (seg < 0)).mean())})
            report.loaded.append(f"{name}#{copy}")
    return _finish(frames, cat, report, f"HDF {split} split")


def _finish(frames: list[np.ndarray], cat: list[dict], report: LoadReport, what: str) -> RealFrames:
    if not frames:
        raise SourceError(f"no usable galaxy frames from the {what}:\n{report.summary()}")
    display = np.stack(frames).astype(np.float32)
    mean, std = frame_sky(display)
    return RealFrames(display, mean, std, pd.DataFrame(cat), report)


#: (R, G, B) tints of COSMOS galaxies (F814W is one band): red-sequence and blue-cloud colours.
_TINTS = {"red": np.array([1.0, 0.78, 0.58]), "blue": np.array([0.72, 0.86, 1.0])}


def asinh_rgb(flux: np.ndarray, sigma: float, *, softening: float = 4.0, pedestal: float = 0.04,
              tint=None) -> np.ndarray:
    """Flux to an ``(h, w, 3)`` asinh display image in [0, 1] with a dark sky pedestal.

    Parameters
    ----------
    flux : ndarray, (h, w) or (3, h, w)
        Sky-subtracted flux; one band (shown grey, or with ``tint``) or bands g, r, i (shown as
        B, G, R, Lupton-style: the total is stretched and the band ratios kept).
    sigma : float
        Sky noise; the asinh softening is ``softening · sigma`` and the top of the stretch the
        99.5th percentile of the total (at least 5 softenings).
    pedestal : float
        Display level of the sky.
    tint : array_like of 3 floats, optional
        RGB colour of a one-band image.
    """
    bands = flux[None] if flux.ndim == 2 else flux
    total = bands.sum(axis=0)
    soft = max(sigma, 1e-6) * softening
    top = max(float(np.percentile(total, 99.5)), 5.0 * soft)
    if flux.ndim == 2:
        colour = np.ones(3) if tint is None else np.asarray(tint, dtype=np.float64)
        grey = np.arcsinh(total / soft) / np.arcsinh(top / soft)
        rgb = grey[..., None] * (colour / colour.max())
    else:
        gain = np.arcsinh(total / soft) / np.arcsinh(top / soft) / np.where(total > 0, total, np.inf)
        rgb = np.moveaxis(bands[::-1] * gain[None], 0, -1) * 3.0 / 1.2
    return np.clip(pedestal + (1 - pedestal) * 0.95 * rgb, 0.0, 1.0)


def _asinh_display(flux: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """:func:`asinh_rgb` with a random softening, pedestal and (one band) galaxy colour."""
    tint = _TINTS["red" if rng.uniform() < 0.35 else "blue"] * rng.uniform(0.9, 1.1, 3)
    return asinh_rgb(flux, sigma, softening=rng.uniform(2.0, 8.0),
                     pedestal=rng.uniform(0.02, 0.07), tint=tint)


def cosmos_frames(split: str = "train", *, frame: int = 142, copies: int = 1, seed: int = 0,
                  hlr_range: tuple[float, float] = (2.0, 30.0),
                  zoom_range: tuple[float, float] = (0.33, 4.0),
                  cosmos_dir: str | Path | None = None) -> RealFrames:
    """The COSMOS HST stamps as observed (HST PSF and noise), tinted, as centred frames.

    Each stamp is padded with Gaussian noise of its own border statistics to the frame's field
    of view, then zoomed so its SExtractor half-light radius lands at a draw of ``hlr_range``.
    Parameters as :func:`hdf_frames`; ``cosmos_dir`` as :func:`galaxai.data.simulate.find_cosmos_dir`.
    """
    from astropy.io import fits

    from galaxai.data.simulate import find_cosmos_dir

    _check_split(split)
    folder = find_cosmos_dir(cosmos_dir)
    cat_file = folder / "real_galaxy_catalog_26_extension_example_fits.fits"
    with fits.open(cat_file) as hdul:
        hlr_all = np.asarray(hdul[1].data["flux_radius"], dtype=float)
    rng = np.random.default_rng(seed)
    frames, cat, report = [], [], LoadReport()
    with fits.open(folder / "real_galaxy_images_extension.fits") as hdul:
        for k, hdu in enumerate(hdul):
            in_test = k % 5 == 4
            if (split == "train" and in_test) or (split == "test" and not in_test):
                continue
            stamp = np.asarray(hdu.data, dtype=np.float64)
            edge = np.concatenate([stamp[:2].ravel(), stamp[-2:].ravel(), stamp[:, :2].ravel(),
                                   stamp[:, -2:].ravel()])
            sigma = float(np.median(np.abs(edge - np.median(edge))) * 1.4826) or float(edge.std())
            for copy in range(copies):
                zoom = _draw_zoom(rng, hlr_all[k], hlr_range, zoom_range)
                side = max(int(round(frame / zoom)), 8)
                canvas = sigma * rng.standard_normal((side, side))
                h = min(side, stamp.shape[0])
                s0, c0 = (stamp.shape[0] - h) // 2, (side - h) // 2
                canvas[c0:c0 + h, c0:c0 + h] = stamp[s0:s0 + h, s0:s0 + h]
                frames.append(_resample(_asinh_display(canvas, sigma, rng), frame))
                cat.append({"source": "cosmos", "split": "test" if in_test else "train",
                            "origin": f"cosmos:{k}", "hlr_native": float(hlr_all[k]),
                            "zoom": frame / side, "hlr_px": float(hlr_all[k]) * frame / side})
                report.loaded.append(f"cosmos:{k}#{copy}")
    return _finish(frames, cat, report, f"COSMOS {split} split")


def _stamp_display(path: Path, rng: np.random.Generator) -> np.ndarray:
    """One user stamp as an (h, w, 3) display image in [0, 1]."""
    from galaxai.data.sources import read_fits_stamp, read_jpeg

    if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
        return np.asarray(read_jpeg(path, size=None), dtype=np.float64)
    data = read_fits_stamp(path, allow_nan=False).data.astype(np.float64)
    if data.shape[0] not in (1, 3):
        raise SourceError(f"{path}: {data.shape[0]} bands; give 1 band or 3 (g, r, i)")
    edge = np.concatenate([data[:, :2].reshape(len(data), -1), data[:, -2:].reshape(len(data), -1)],
                          axis=1)
    sky = np.median(edge, axis=1)
    sigma = float(np.median(np.abs(edge - sky[:, None])) * 1.4826) or 1e-6
    flux = data - sky[:, None, None]
    return _asinh_display(flux[0] if len(flux) == 1 else flux, sigma, rng)


def frames_from_dir(directory: str | Path, kind: str = "fits", *, frame: int = 142,
                    seed: int = 0) -> RealFrames:
    """Frames from a folder of isolated-galaxy stamps (one galaxy per file, centred).

    ``kind="fits"`` reads ``*.fits``/``*.fit``/``*.fits.gz`` flux stamps (shown with an asinh
    stretch); ``kind="jpeg"`` reads ``*.jpg``/``*.jpeg``/``*.png`` display stamps as they are.
    Each stamp is resampled to the frame's central cut (its field of view kept). Bad files are
    skipped and listed in ``report``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"{directory} is not a folder; pass a folder of stamps")
    patterns = {"fits": ("*.fits", "*.fit", "*.fits.gz"), "jpeg": ("*.jpg", "*.jpeg", "*.png")}
    if kind not in patterns:
        raise ValueError(f"kind must be 'fits' or 'jpeg', got {kind!r}")
    files = sorted({p for pat in patterns[kind] for p in directory.glob(pat)})
    if not files:
        raise SourceError(f"{directory} holds no {kind} stamps ({', '.join(patterns[kind])})")
    rng = np.random.default_rng(seed)
    crop = int(round(frame * 240 / 424))
    frames, cat, report = [], [], LoadReport()
    for path in files:
        try:
            disp = _stamp_display(path, rng)
        except SourceError as exc:
            report.skipped.append((str(path), str(exc)))
            continue
        side = max(disp.shape[:2])
        # the stamp fills the central cut; pad the rest of the frame with its own sky
        pad = int(round(side * (frame - crop) / (2 * crop)))
        big = np.pad(disp, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        frames.append(_resample(big, frame))
        cat.append({"source": kind, "split": "all", "origin": str(path), "hlr_native": np.nan,
                    "zoom": frame / big.shape[0], "hlr_px": np.nan})
        report.loaded.append(str(path))
    return _finish(frames, cat, report, str(directory))


def real_frames(source: str, split: str = "train", *, directory: str | Path | None = None,
                **kwargs) -> RealFrames:
    """Frames from a named source: ``"hdf"``, ``"cosmos"``, or a ``"fits"``/``"jpeg"`` folder."""
    if source == "hdf":
        return hdf_frames(split, **kwargs)
    if source == "cosmos":
        return cosmos_frames(split, **kwargs)
    if source in ("fits", "jpeg"):
        if directory is None:
            raise ValueError(f"source {source!r} needs directory=<folder of stamps>")
        kwargs.pop("copies", None)
        kwargs = {k: v for k, v in kwargs.items() if k in ("frame", "seed")}
        return frames_from_dir(directory, source, **kwargs)
    raise ValueError(f"source must be one of {list(REAL_SOURCES)}, got {source!r}")


def real_blends(frames: RealFrames, n: int, seed: int, config=None, *, merge: str = "max"):
    """Blends of real galaxies with the paper's recipe: A centred, B augmented, sky-noise padding.

    Pairs are drawn uniformly (A ≠ B) with :func:`galaxai.data.blend.draw_pairs`; noise padding
    draws from B's own warped border pixels (``noise_method="border"``). ``merge="max"`` is the paper's per-channel maximum;
    ``"sum"`` adds B's sky-subtracted display to A (light adds up; one sky).

    Returns
    -------
    galaxai.data.blend.BlendBatch
        Its catalogue also names each galaxy's ``origin`` and source.
    """
    from galaxai.data.blend import BlendConfig, draw_pairs, make_blends

    if merge not in ("max", "sum"):
        raise ValueError(f'merge must be "max" or "sum", got {merge!r}')
    config = config or BlendConfig()
    if config.padding == "noise":
        config = dataclasses.replace(config, noise_method="border")
    if len(frames) < 2:
        raise ValueError("real_blends needs at least two galaxies")
    ia, ib = draw_pairs(len(frames), n, seed)
    same = ia == ib
    ib[same] = (ib[same] + 1 + np.random.default_rng(seed).integers(0, len(frames) - 1, same.sum())
                ) % len(frames)
    batch = make_blends(frames.display[ia], frames.display[ib], seed, config, ids_a=ia, ids_b=ib)
    if merge == "sum":
        signal_b = batch.target_b - frames.sky_mean[ib][:, :, None, None]
        batch.blend = np.clip(batch.target_a + signal_b, 0.0, 1.0).astype(np.float32)
        batch.catalogue["merge"] = "sum"
    cat = frames.catalogue
    for side, idx in (("a", ia), ("b", ib)):
        batch.catalogue[f"origin_{side}"] = cat["origin"].to_numpy()[idx]
        batch.catalogue[f"source_{side}"] = cat["source"].to_numpy()[idx]
        batch.catalogue[f"hlr_px_{side}"] = cat["hlr_px"].to_numpy()[idx]
    return batch
