"""Saliency map files: SmoothGrad maps of a trained classifier, written and read (step 2).

:func:`compute_saliency` (``galaxai morphology saliency``) explains the pre-sigmoid
``Class3.1`` ("bar: yes") logit with SmoothGrad exactly as the authors did (spec
``smoothgrad_barlength.md`` §2: N = 256, S = 0.1, |∂s/∂x| averaged, max over colours, per-image
min–max; images resized bilinearly to the model's input) and writes one ``.npz`` file or Zarr
group holding ``ids``, ``saliency`` (N, S, S) float32, ``images`` (N, S, S, 3) uint8 (the network
inputs, for ``x_input`` and figures), ``logits`` and the provenance. Galaxies are processed in
batches; each finished batch is written at once to ``<out>.partial/``, so an interrupted run
loses nothing and the same call resumes it. Unreadable or missing images are skipped and listed
(in the result and the file). :func:`read_maps` reads such a file back for :mod:`.bars`.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

import galaxai
from galaxai._atomic import atomic_write, atomic_write_json
from galaxai.explain.saliency import smoothgrad
from galaxai.models.morphology import MorphologyClassifier, gz_column_index
from galaxai.morphology._common import _IMAGE_DIRS, _IMAGE_SUFFIXES, InputError, _read_images
from galaxai.morphology.catalogues import (
    _to_ids,
    find_hoyle_catalogue,
    parse_ids,
    read_bar_catalogue,
)
from galaxai.morphology.classifier_runs import MODEL_FILE, load_classifier

__all__ = [
    "DEFAULT_TARGET",
    "SaliencyRun",
    "compute_saliency",
    "MapSet",
    "read_maps",
]

#: The explained output (spec §2): the pre-sigmoid logit of "bar: yes".
DEFAULT_TARGET = "Class3.1"
_MAPS_FORMAT = "galaxai-saliency-v1"
_MAP_ARRAYS = ("ids", "saliency", "images", "logits")


@dataclass(frozen=True)
class SaliencyRun:
    """What :func:`compute_saliency` wrote.

    Attributes
    ----------
    path : Path
        The maps file (``.npz``) or Zarr group (``.zarr``).
    ids : list of int
        Galaxies in the file, in file order.
    skipped : list of dict
        Requested galaxies left out (``id``, ``file``, ``reason``): no image, or unreadable.
    resumed : int
        Galaxies taken over from an interrupted run of the same call.
    """

    path: Path
    ids: list
    skipped: list
    resumed: int = 0


def _image_index(data: Path) -> dict[int, Path]:
    if not data.is_dir():
        raise InputError(f"image directory {data} does not exist or is not a directory; pass the "
                         "Kaggle root (with images_training_rev1/) or a folder of <id>.jpg files",
                         "data")
    index: dict[int, Path] = {}
    for folder in [data / d for d in _IMAGE_DIRS if (data / d).is_dir()] + [data]:
        for p in folder.iterdir():
            if p.suffix.lower() in _IMAGE_SUFFIXES and p.stem.isdigit():
                index.setdefault(int(p.stem), p)
    if not index:
        raise InputError(f"no <id>.jpg image in {data} (nor in its {' or '.join(_IMAGE_DIRS)}); "
                         "images must be named by their integer galaxy id", "data")
    return index


def _default_ids(index: dict[int, Path], catalogue: str | os.PathLike | None, data: Path
                 ) -> list[int]:
    path = Path(catalogue) if catalogue is not None else find_hoyle_catalogue()
    cat = read_bar_catalogue(path, require_lengths=False)
    ids = [i for i in cat["id"] if i in index]
    if not ids:
        raise InputError(
            f"none of the {len(cat)} galaxies of {path} has an image in {data}. Kaggle GalaxyIDs "
            "are not SDSS objids: explain the Hoyle galaxies from Galaxy Zoo 2 cut-outs named "
            "<objid>.jpg, or pass the galaxy ids to explain", "ids")
    return ids


class _Parts:
    """Finished batches of an unfinished maps file, in ``<out>.partial/`` (one npz per batch)."""

    def __init__(self, out: Path, settings: dict) -> None:
        self.dir = out.with_name(out.name + ".partial")
        settings_file = self.dir / "settings.json"
        if settings_file.is_file():
            old = json.loads(settings_file.read_text(encoding="utf-8"))
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            if changed:
                raise InputError(f"{self.dir} holds an interrupted run with other settings "
                                 f"({', '.join(changed)}); rerun with the same settings to resume "
                                 "it, or delete it", "out")
        else:
            atomic_write_json(settings_file, settings)
        self.files = sorted(self.dir.glob("part-*.npz"))

    def done(self) -> set[int]:
        done: set[int] = set()
        for f in self.files:
            with np.load(f, allow_pickle=False) as z:
                done.update(int(i) for i in z["ids"])
        return done

    def add(self, arrays: dict[str, np.ndarray]) -> None:
        path = self.dir / f"part-{len(self.files):06d}.npz"

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        self.files.append(atomic_write(path, write))

    def arrays(self) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {k: [] for k in _MAP_ARRAYS}
        for f in self.files:
            with np.load(f, allow_pickle=False) as z:
                for k in _MAP_ARRAYS:
                    parts[k].append(z[k])
        return {k: np.concatenate(v) for k, v in parts.items() if v}


def _write_maps(out: Path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    if out.suffix == ".npz":
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, meta=np.array(json.dumps(meta)), **arrays)

        return atomic_write(out, write)
    import zarr

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        root = zarr.open_group(store=str(tmp), mode="w", zarr_format=3)
        for name, arr in arrays.items():
            chunks = (max(1, min(len(arr), 64)),) + arr.shape[1:]
            root.create_array(name, data=arr, chunks=chunks)
        root.attrs["galaxai"] = meta
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def compute_saliency(model: str | os.PathLike | MorphologyClassifier, data: str | os.PathLike,
                     out: str | os.PathLike, *, ids: str | Sequence[int] | None = None,
                     catalogue: str | os.PathLike | None = None, n_samples: int = 256,
                     noise: float = 0.1, use_x_input: bool = False,
                     target: str = DEFAULT_TARGET, chunk: int = 64, batch_size: int = 8,
                     seed: int = 0, progress: bool = False) -> SaliencyRun:
    """SmoothGrad maps of a trained classifier for many galaxies, written batch by batch (step 2).

    Parameters
    ----------
    model : path-like or MorphologyClassifier
        Run directory of :func:`~galaxai.morphology.classifier_runs.train_classifier` (or its
        ``model.safetensors``), or a model.
    data : path-like
        Kaggle root or a directory of ``<id>.jpg`` images (any size; resized bilinearly to the
        model's input).
    out : path-like
        ``<name>.npz`` or ``<name>.zarr``; refused if it exists. Finished batches go to
        ``<out>.partial/`` first; calling again with the same settings resumes.
    ids : str or sequence of int, optional
        Galaxies to explain (see :func:`~galaxai.morphology.catalogues.parse_ids`); default:
        the catalogue's galaxies that have an image in ``data``.
    catalogue : path-like, optional
        Catalogue choosing the default ids (default:
        :func:`~galaxai.morphology.catalogues.find_hoyle_catalogue`).
    n_samples, noise : int, float
        SmoothGrad ``N`` and ``S`` (the authors': 256 and 0.1).
    use_x_input : bool
        Record that the bar lengths are to be measured on ``x_input`` maps (saliency × grayscale
        image, spec §3); the raw maps and images are stored either way.
    target : str
        Explained Galaxy Zoo column (``Class3.1``: bar).
    chunk : int
        Noisy copies per forward/backward pass (memory bound; does not change the maps).
    batch_size : int
        Galaxies per written batch.
    seed : int
        Seed of the SmoothGrad noise.
    progress : bool
        tqdm bar over galaxies.

    Returns
    -------
    SaliencyRun
    """
    data, out = Path(data), Path(out)
    if out.suffix not in (".npz", ".zarr"):
        raise InputError(f"maps output {out} must end in .npz (one NumPy file) or .zarr (a Zarr "
                         "group)", "out")
    if out.exists():
        raise InputError(f"{out} already exists; choose another output or delete it", "out")
    for name, value, low in (("n_samples", n_samples, 1), ("noise", noise, 0),
                             ("chunk", chunk, 1), ("batch_size", batch_size, 1)):
        if not value >= low:
            raise InputError(f"{name} must be >= {low}, got {value!r}", name)
    try:
        target_index = gz_column_index(target)
    except ValueError as exc:
        raise InputError(str(exc), "target") from None
    if isinstance(model, MorphologyClassifier):
        net, info, model_ref, digest = model.eval(), {}, "<in-memory model>", ""
    else:
        net, info = load_classifier(model)
        model_ref = str(Path(model).resolve())
        weights = Path(model) / MODEL_FILE if Path(model).is_dir() else Path(model)
        with open(weights, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    size = net.config.image_size
    index = _image_index(data)
    wanted = _default_ids(index, catalogue, data) if ids is None else (
        parse_ids(ids) if isinstance(ids, (str, os.PathLike)) else _to_ids(ids, "ids", "ids"))
    settings = {"model": model_ref, "model_sha256": digest, "target": target,
                "n_samples": int(n_samples), "noise": float(noise), "seed": int(seed),
                "x_input": bool(use_x_input), "map_size": int(size)}
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = _Parts(out, settings)
    done = parts.done()
    skipped = [{"id": str(i), "file": "", "reason": f"no {i}.jpg in {data}"}
               for i in wanted if i not in index]
    todo = [(i, index[i]) for i in wanted if i in index and i not in done]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="smoothgrad", unit="galaxy")
    for lo in range(0, len(todo), batch_size):
        got, x = _read_images(todo[lo:lo + batch_size], size, "bilinear", skipped)
        if got:
            att = smoothgrad(net, torch.from_numpy(x), target=target_index, n=n_samples,
                             noise=noise, chunk=chunk, seed=seed)
            images = np.round(np.moveaxis(x, 1, -1) * 255.0).astype(np.uint8)
            parts.add({"ids": np.asarray(got, np.int64),
                       "saliency": att.maps.detach().cpu().numpy().astype(np.float32),
                       "images": images, "logits": att.logits.cpu().numpy().astype(np.float32)})
        if bar is not None:
            bar.update(min(batch_size, len(todo) - lo))
    if bar is not None:
        bar.close()
    arrays = parts.arrays()
    order = {gid: k for k, gid in enumerate(wanted)}
    if arrays:  # the requested galaxies in the requested order (a resumed run may hold others)
        keep = [k for k in np.argsort([order.get(int(i), -1) for i in arrays["ids"]],
                                      kind="stable") if int(arrays["ids"][k]) in order]
        arrays = {k: v[keep] for k, v in arrays.items()}
    if not arrays or not len(arrays["ids"]):
        if not parts.files:
            shutil.rmtree(parts.dir, ignore_errors=True)
        raise InputError(f"no image could be explained ({len(skipped)} skipped, e.g. "
                         f"{skipped[:2]}); check the images in {data} and the ids", "data")
    meta = {"format": _MAPS_FORMAT, **settings, "target_index": target_index,
            "architecture": net.config.architecture, "preset": info.get("preset"),
            "resize": "bilinear", "aggregate": "abs_mean", "channel_reduce": "max",
            "normalise": "minmax", "chunk": int(chunk), "data": str(data.resolve()),
            "n": int(len(arrays["ids"])), "skipped": skipped,
            "galaxai_version": galaxai.__version__}
    _write_maps(out, arrays, meta)
    shutil.rmtree(parts.dir, ignore_errors=True)
    return SaliencyRun(out, arrays["ids"].tolist(), skipped, resumed=len(done))


@dataclass(frozen=True)
class MapSet:
    """Saliency maps read by :func:`read_maps`.

    Attributes
    ----------
    path : Path
    ids : numpy.ndarray, shape (N,), int64
    saliency : numpy.ndarray, shape (N, S, S), float32
        Min–max normalised SmoothGrad maps.
    images : numpy.ndarray, shape (N, S, S, 3), uint8
        The network inputs the maps explain.
    logits : numpy.ndarray, shape (N,), float32
        The explained logit of each clean image.
    meta : dict
        Provenance (model, target, N, S, ``x_input``, skipped galaxies, …).
    """

    path: Path
    ids: np.ndarray
    saliency: np.ndarray
    images: np.ndarray
    logits: np.ndarray
    meta: dict

    @property
    def map_size(self) -> int:
        """Side ``S`` of the maps in pixels."""
        return int(self.saliency.shape[-1])


def read_maps(path: str | os.PathLike) -> MapSet:
    """Read a maps file written by :func:`compute_saliency` (``.npz`` or ``.zarr``).

    Raises
    ------
    InputError
        Missing or unreadable file, missing arrays, inconsistent shapes, NaN maps.
    """
    path = Path(path)
    fix = "write it with `galaxai morphology saliency`"
    if not path.exists():
        raise InputError(f"maps file {path} does not exist; {fix}", "maps")
    try:
        if path.is_dir():
            import zarr

            root = zarr.open_group(store=str(path), mode="r")
            arrays = {k: np.asarray(root[k][...]) for k in _MAP_ARRAYS if k in root}
            meta = dict(root.attrs.get("galaxai", {}))
        else:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in _MAP_ARRAYS if k in z.files}
                meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise InputError(f"maps file {path} is not readable ({type(exc).__name__}: {exc}); "
                         f"{fix}", "maps") from None
    missing = [k for k in _MAP_ARRAYS if k not in arrays]
    if missing or meta.get("format") != _MAPS_FORMAT:
        raise InputError(f"{path} is not a galaxai maps file (missing {missing or ['meta']}); "
                         f"{fix}", "maps")
    ids, sal, img, logits = (arrays[k] for k in _MAP_ARRAYS)
    n = ids.shape[0]
    shapes_ok = (ids.ndim == 1 and sal.ndim == 3 and sal.shape[0] == n
                 and sal.shape[1] == sal.shape[2] and img.shape == sal.shape + (3,)
                 and logits.shape == (n,))
    if not shapes_ok:
        raise InputError(f"{path} has inconsistent arrays: ids {ids.shape}, saliency {sal.shape}, "
                         f"images {img.shape}, logits {logits.shape}; expected (N,), (N, S, S), "
                         f"(N, S, S, 3), (N,); {fix}", "maps")
    if not np.isfinite(sal).all():
        raise InputError(f"{path}: saliency maps contain NaN or infinite values; {fix}", "maps")
    if len(set(ids.tolist())) != n:
        raise InputError(f"{path} lists a galaxy id more than once", "maps")
    return MapSet(path, ids.astype(np.int64), sal.astype(np.float32), img.astype(np.uint8),
                  logits.astype(np.float32), meta)
