"""Bar lengths from real Galaxy Zoo images: train, explain, measure, report.

The three steps a user with the Kaggle Galaxy Zoo data and the Hoyle et al. (2011) bar-length
catalogue runs (``galaxai morphology train | saliency | bars``), as library calls. Each step
reuses the building blocks of :mod:`galaxai.morphology` and writes files the next step reads:

1. :func:`train_classifier` reads the Kaggle layout (``images_training_rev1/<GalaxyID>.jpg`` and
   ``training_solutions_rev1.csv``, via :mod:`galaxai.data.sources`), resizes each frame to the
   preset's input size with nearest-neighbour sampling (the Keras default the authors trained
   with), splits 80/20 with seed 123 (spec ``smoothgrad_barlength.md`` §1), trains a 37-output
   sigmoid classifier with the authors' recipe (:func:`galaxai.morphology.training.train_model`,
   MSE loss, RMSE metric) and writes a **run directory**: ``model.safetensors`` (the weights,
   its header repeating the model config), ``model.json`` (the sidecar: model and training
   configs, validation RMSE, epochs, initialisation, split) written last, ``history.csv`` and
   ``split.csv``. All writes are atomic.
2. :func:`compute_saliency` explains the pre-sigmoid ``Class3.1`` ("bar: yes") logit with
   SmoothGrad exactly as the authors did (spec §2: N = 256, S = 0.1, |∂s/∂x| averaged, max over
   colours, per-image min–max; images resized bilinearly to the model's input) and writes one
   ``.npz`` file or Zarr group holding ``ids``, ``saliency`` (N, S, S) float32, ``images``
   (N, S, S, 3) uint8 (the network inputs, for ``x_input`` and figures), ``logits`` and the
   provenance. Galaxies are processed in batches; each finished batch is written at once to
   ``<out>.partial/``, so an interrupted run loses nothing and the same call resumes it.
   Unreadable or missing images are skipped and listed (in the result and the file).
3. :func:`measure_bars` runs Algorithm 1 (:func:`galaxai.morphology.measure_bar`) on every map,
   with fixed thresholds or a grid search on the catalogue's validation split
   (:func:`galaxai.morphology.grid_search`), writes the per-galaxy lengths (CSV or Parquet) and,
   with a catalogue, the §7 report (:func:`galaxai.morphology.rho_report`: faithful ρ, the
   constant-length null, ρ in scaled units, partial ρ controlling for R90, Spearman, permutation
   null, bootstrap intervals), the through-origin fit and a static HTML report with the
   analogues of the paper's Fig. 3 (image | saliency | isolated bar) and Fig. 4 (measured vs
   catalogue length).

Identifiers and units
---------------------
Images are found by their integer id: ``<id>.jpg`` in ``images_training_rev1/``,
``images_test_rev1/`` or the directory itself. Kaggle ``GalaxyID``s are **not** SDSS ``objid``s,
so the Hoyle galaxies are found only in a directory of Galaxy Zoo 2 cut-outs named
``<objid>.jpg``. Measured lengths are ``L424`` (pixels of the 424² GZ2 frame,
:func:`galaxai.morphology.bar_length`); the catalogue enters as ``length_scaled`` and, when a
``petroR90_r`` column (or ``--r90`` table) is given, R90 (spec §6). Without R90 only the
statistics that need no galaxy size are reported (ρ of ``L424/100`` vs ``length_scaled``,
Spearman), since ``L424/100`` is already a length in units of 2·R90 (R90 = 50 px at 424²).

``T_l`` counts map pixels. The published values (40; the grid 10 … 50) are for 224² maps; the
defaults here scale them with the map area, ``round(T_l · (S/224)²)``, so the ``paper`` preset
uses them unchanged.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288.
D. Hoyle et al., MNRAS 415, 3627 (2011), arXiv:1104.5394.
S. Dieleman, K. W. Willett, J. Dambre, MNRAS 450, 1441 (2015) (the Kaggle challenge).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import galaxai
from galaxai._atomic import atomic_write, atomic_write_json, atomic_write_text
from galaxai.config import config_from_mapping, config_to_dict
from galaxai.data.sources import SourceError, read_galaxy_zoo_labels, read_jpeg
from galaxai.explain.saliency import smoothgrad
from galaxai.models.morphology import (
    GZ_COLUMNS,
    MorphologyClassifier,
    MorphologyConfig,
    build_classifier,
    gz_column_index,
    load_weights,
)
from galaxai.morphology.barlength import GZ_FRAME_SIZE, measure_bar, x_input
from galaxai.morphology.gridsearch import (
    OriginFit,
    bootstrap_rho,
    fit_through_origin,
    grid_search,
    measurement_table,
    origin_fit_weights,
    paper_plot_units,
    rho_report,
    split_catalogue,
)
from galaxai.morphology.training import TrainConfig, predict, train_model

__all__ = [
    "InputError",
    "MODEL_FILE",
    "SIDECAR_FILE",
    "DEFAULT_TARGET",
    "HOYLE_ENV",
    "find_hoyle_catalogue",
    "read_bar_catalogue",
    "parse_ids",
    "scaled_t_l",
    "TrainedClassifier",
    "train_classifier",
    "load_classifier",
    "SaliencyRun",
    "compute_saliency",
    "MapSet",
    "read_maps",
    "BarsResult",
    "measure_bars",
]

#: Weights file and JSON sidecar of a run directory written by :func:`train_classifier`.
MODEL_FILE = "model.safetensors"
SIDECAR_FILE = "model.json"
#: The explained output (spec §2): the pre-sigmoid logit of "bar: yes".
DEFAULT_TARGET = "Class3.1"
#: Environment variable naming the Hoyle et al. (2011) table (``hoyle_barlengths.csv``).
HOYLE_ENV = "GALAXAI_HOYLE_CATALOGUE"
_HOYLE_FILE = "hoyle_barlengths.csv"
_MAPS_FORMAT = "galaxai-saliency-v1"
_MAP_ARRAYS = ("ids", "saliency", "images", "logits")
_ID_COLUMNS = ("objid", "dr7objid", "GalaxyID", "galaxy_id", "id")
_R90_COLUMNS = ("petroR90_r", "PETROR90_R", "petror90_r", "r90")
_IMAGE_DIRS = ("images_training_rev1", "images_test_rev1")
_IMAGE_SUFFIXES = (".jpg", ".jpeg")
_SPLIT_SEED = 123
_PUBLISHED_T_C, _PUBLISHED_T_L = 0.85, 40
_GRID_T_C = (0.70, 0.75, 0.80, 0.85, 0.90)
_GRID_T_L = (10, 20, 30, 40, 50)
_AUTHORS_MAP_SIZE = 224


class InputError(ValueError):
    """Unusable user input; the message names the file and the fix.

    Attributes
    ----------
    param : str or None
        The argument at fault (``"data"``, ``"model"``, ``"ids"``, ``"maps"``, …), so a command
        line can name its option.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


# --------------------------------------------------------------------------------------------
# small shared pieces


def scaled_t_l(t_l: int | Sequence[int], map_size: int) -> int | list[int]:
    """Scale published ``T_l`` pixel counts (for 224² maps) to ``map_size``² maps.

    ``max(1, round(T_l · (map_size/224)²))``; a sequence gives the sorted distinct values.
    """
    factor = (int(map_size) / _AUTHORS_MAP_SIZE) ** 2
    if isinstance(t_l, (int, np.integer)):
        return max(1, int(round(t_l * factor)))
    return sorted({max(1, int(round(v * factor))) for v in t_l})


def _resize(frame: np.ndarray, size: int, mode: str) -> np.ndarray:
    """One ``(H, W, 3)`` frame in [0, 1] → ``(3, size, size)`` float32.

    ``"nearest"`` samples pixel ``floor((i + ½)·H/size)`` like PIL/Keras ``load_img``
    (training, spec §1); ``"bilinear"`` is ``align_corners=False`` without anti-aliasing
    (saliency, spec §2).
    """
    t = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).permute(2, 0, 1)[None]
    if t.shape[-2:] != (size, size):
        if mode == "nearest":
            t = F.interpolate(t, size=(size, size), mode="nearest-exact")
        else:
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=False)
    return t[0].clamp(0.0, 1.0).numpy()


def _read_images(items: Sequence[tuple[int, Path]], size: int, mode: str,
                 skipped: list[dict[str, str]]) -> tuple[list[int], np.ndarray]:
    """Read and resize JPEGs; unreadable ones go to ``skipped`` (id, file, reason)."""
    ids, frames = [], []
    for gid, path in items:
        try:
            frame = read_jpeg(path, size=None)
        except SourceError as exc:
            skipped.append({"id": str(gid), "file": str(path), "reason": str(exc)})
            continue
        frames.append(_resize(frame, size, mode))
        ids.append(int(gid))
    stack = np.stack(frames) if frames else np.empty((0, 3, size, size), np.float32)
    return ids, stack


def _progress(iterable: Iterable, enabled: bool, **kwargs: Any):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_table(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
    return atomic_write_text(path, df.to_csv(index=False))


# --------------------------------------------------------------------------------------------
# ids and catalogues


def find_hoyle_catalogue() -> Path | None:
    """The Hoyle et al. (2011) table, if it can be found without being told where.

    Looks at ``$GALAXAI_HOYLE_CATALOGUE``, then ``../shared/data/hoyle_barlengths.csv`` beside
    a source checkout, then ``./hoyle_barlengths.csv``.

    Raises
    ------
    InputError
        ``$GALAXAI_HOYLE_CATALOGUE`` is set but names no file.
    """
    env = os.environ.get(HOYLE_ENV)
    if env:
        if not Path(env).is_file():
            raise InputError(f"${HOYLE_ENV} names {env}, which is not a file; fix the variable "
                             "or pass the catalogue explicitly", "catalogue")
        return Path(env)
    here = Path(__file__).resolve().parents
    candidates = [here[4] / "shared" / "data" / _HOYLE_FILE] if len(here) > 4 else []
    candidates.append(Path.cwd() / _HOYLE_FILE)
    return next((p for p in candidates if p.is_file()), None)


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


# --------------------------------------------------------------------------------------------
# 1. training


@dataclass(frozen=True)
class TrainedClassifier:
    """What :func:`train_classifier` wrote.

    Attributes
    ----------
    run_dir : Path
    model : MorphologyClassifier
        The model after the last epoch, in eval mode.
    info : dict
        The sidecar contents (``model.json``).
    history : pandas.DataFrame
        Per-epoch losses (:class:`galaxai.morphology.training.TrainResult`).
    skipped : list of dict
        Unreadable images (``id``, ``file``, ``reason``).
    """

    run_dir: Path
    model: MorphologyClassifier
    info: dict
    history: pd.DataFrame
    skipped: list = field(default_factory=list)


def _kaggle_training_items(root: Path, limit: int | None) -> tuple[list[tuple[int, Path]],
                                                                   pd.DataFrame, dict]:
    if not root.is_dir():
        raise InputError(f"Galaxy Zoo directory {root} does not exist or is not a directory; "
                         "pass the folder of the Kaggle galaxy-zoo-the-galaxy-challenge download",
                         "data")
    image_dir = root / _IMAGE_DIRS[0]
    if not image_dir.is_dir():
        raise InputError(f"{image_dir} not found: training needs the Kaggle layout "
                         f"<root>/{_IMAGE_DIRS[0]}/<GalaxyID>.jpg with "
                         "<root>/training_solutions_rev1.csv", "data")
    try:
        labels = read_galaxy_zoo_labels(root)
    except SourceError as exc:
        raise InputError(str(exc), "data") from None
    files = {int(p.stem): p for p in image_dir.iterdir()
             if p.suffix.lower() in _IMAGE_SUFFIXES and p.stem.isdigit()}
    ids = sorted(set(files) & set(labels.index))
    counts = {"images": len(files), "labelled": len(labels),
              "images_without_labels": len(set(files) - set(labels.index)),
              "labels_without_images": len(set(labels.index) - set(files))}
    if not ids:
        raise InputError(f"no image in {image_dir} has a row in training_solutions_rev1.csv "
                         f"({counts['images']} images, {counts['labelled']} rows); file names "
                         "must be <GalaxyID>.jpg", "data")
    ids = ids[:limit] if limit is not None else ids
    return [(i, files[i]) for i in ids], labels, counts


def _save_model(run_dir: Path, model: MorphologyClassifier, sidecar: dict) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "pt", "galaxai_network": "morphology-classifier",
            "galaxai_version": galaxai.__version__,
            "model_config": json.dumps(config_to_dict(model.config), sort_keys=True)}
    atomic_write(run_dir / MODEL_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    atomic_write_json(run_dir / SIDECAR_FILE, sidecar)  # last: marks the run complete


def train_classifier(data: str | os.PathLike, out: str | os.PathLike, *,
                     architecture: str = "vgg16", preset: str = "small",
                     weights: str | os.PathLike | None = None, backbone_only: bool = False,
                     limit: int | None = None, epochs: int | None = None, seed: int = 0,
                     val_fraction: float = 0.2, progress: bool = False) -> TrainedClassifier:
    """Train a 37-output Galaxy Zoo vote-fraction classifier on the Kaggle data (step 1).

    Parameters
    ----------
    data : path-like
        Kaggle root: ``images_training_rev1/<GalaxyID>.jpg`` and
        ``training_solutions_rev1.csv``. Images of any size are resized (nearest) to the
        preset's input; unreadable ones are skipped and reported.
    out : path-like
        Run directory to create (refused if it already holds a model).
    architecture : {"vgg16", "resnet50v2", "xception"}
    preset : {"tiny", "small", "paper"}
        Both the :class:`~galaxai.models.morphology.MorphologyConfig` (width, depth, input size
        64/128/224) and the :class:`~galaxai.morphology.training.TrainConfig` preset.
    weights : path-like, optional
        Local initial weights (``.safetensors`` or a ``torch.save`` state dict; never
        downloaded). Without it the network trains from scratch, as recorded in the sidecar.
    backbone_only : bool
        Load only the convolutional backbone from ``weights`` (e.g. torchvision's ImageNet
        ``vgg16`` state dict at the ``paper`` preset).
    limit : int, optional
        Use only the first ``limit`` labelled images (by GalaxyID). The training set is held in
        memory as float32: ``N · 3 · S² · 4`` bytes (about 600 kB per image at 224²).
    epochs : int, optional
        Override the preset's maximum number of epochs.
    seed : int
        Seed of the initialisation, shuffling and augmentation. The 80/20 split uses seed 123.
    val_fraction : float
        Validation share (0.2).
    progress : bool
        tqdm bars for reading and training.

    Returns
    -------
    TrainedClassifier
    """
    data, out = Path(data), Path(out)
    if (out / MODEL_FILE).exists() or (out / SIDECAR_FILE).exists():
        raise InputError(f"{out} already holds a trained model; choose another output directory "
                         "or delete it", "out")
    if limit is not None and limit < 2:
        raise InputError(f"limit must be at least 2 (one training and one validation image), "
                         f"got {limit}", "limit")
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}", "val_fraction")
    model_cfg = MorphologyConfig.preset(preset, architecture)
    train_cfg = TrainConfig.preset(preset, seed=int(seed),
                                   **({} if epochs is None else {"epochs": int(epochs)}))
    items, labels, counts = _kaggle_training_items(data, limit)
    size = model_cfg.image_size
    skipped: list[dict[str, str]] = []
    x = np.empty((len(items), 3, size, size), np.float32)
    got: list[int] = []
    batches = [items[i:i + 256] for i in range(0, len(items), 256)]
    for batch in _progress(batches, progress, desc="read images", unit="batch"):
        ids, frames = _read_images(batch, size, "nearest", skipped)
        x[len(got):len(got) + len(ids)] = frames
        got += ids
    x = x[:len(got)]
    if len(got) < 2:
        raise InputError(f"only {len(got)} readable labelled image(s) in {data}; need at least 2. "
                         f"Skipped: {skipped[:3]}", "data")
    y = labels.loc[got, list(GZ_COLUMNS)].to_numpy(np.float32)
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(got))
    n_val = min(len(got) - 1, max(1, int(round(len(got) * val_fraction))))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    torch.manual_seed(train_cfg.seed)
    try:
        model = build_classifier(architecture, preset, weights=weights,
                                 backbone_only=backbone_only)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc), "weights") from None
    result = train_model(model, x[train], y[train], x[val], y[val], train_cfg, progress=progress)
    ids = np.asarray(got, dtype=np.int64)
    pred = predict(result.model, x[val], ids[val].tolist(), columns=GZ_COLUMNS)
    val_rmse = float(np.sqrt(np.mean((pred.to_numpy() - y[val]) ** 2)))
    constant = float(np.sqrt(np.mean((y[val] - y[train].mean(0)) ** 2)))
    history = result.history
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "history.csv", history.to_csv(index=False))
    split = pd.DataFrame({"GalaxyID": ids, "split": "train"})
    split.loc[val, "split"] = "validation"
    atomic_write_text(out / "split.csv", split.to_csv(index=False))
    init = "from scratch (no weights file)" if weights is None else (
        f"{weights}{' (backbone only)' if backbone_only else ''}")
    sidecar = {
        "kind": "galaxai-morphology-classifier", "architecture": architecture, "preset": preset,
        "model_config": config_to_dict(model_cfg), "train_config": config_to_dict(train_cfg),
        "columns": list(GZ_COLUMNS),
        "input": {"image_size": size, "scale": "RGB / 255, no ImageNet normalisation",
                  "train_resize": "nearest", "saliency_resize": "bilinear"},
        "init": init, "data": str(data.resolve()), "n_train": int(train.size),
        "n_val": int(val.size), "split_seed": _SPLIT_SEED, "n_skipped": len(skipped),
        "val_rmse": val_rmse, "val_rmse_constant": constant,
        "val_rmse_augmented_last": float(history["val_rmse"].iloc[-1]),
        "epochs": int(len(history)), "stopped_early": bool(history["stopped"].iloc[-1]),
        "data_counts": counts, "galaxai_version": galaxai.__version__,
        "torch_version": torch.__version__,
    }
    _save_model(out, result.model, sidecar)
    return TrainedClassifier(out, result.model, sidecar, history, skipped)


def load_classifier(path: str | os.PathLike) -> tuple[MorphologyClassifier, dict]:
    """Load a classifier written by :func:`train_classifier`, in eval mode.

    Parameters
    ----------
    path : path-like
        The run directory, or its ``model.safetensors`` (the sidecar beside it is read if
        present, else the model config in the file's header).

    Returns
    -------
    (MorphologyClassifier, dict)
        The model and the sidecar contents (``{}`` without a sidecar).

    Raises
    ------
    InputError
        Not a run directory, a missing or corrupt file, or weights that do not fit.
    """
    path = Path(path)
    weights = path / MODEL_FILE if path.is_dir() else path
    sidecar = weights.with_suffix(".json")
    hint = ("pass a run directory written by `galaxai morphology train` (model.safetensors + "
            "model.json) or its model.safetensors")
    if not weights.is_file() or weights.suffix != ".safetensors":
        raise InputError(f"no trained classifier at {path}: {weights} is missing; {hint}", "model")
    info: dict = {}
    try:
        if sidecar.is_file():
            info = json.loads(sidecar.read_text(encoding="utf-8"))
            values = info["model_config"]
        else:
            with safe_open(str(weights), framework="pt", device="cpu") as fh:
                values = json.loads((fh.metadata() or {})["model_config"])
        config = config_from_mapping(MorphologyConfig, values, source=f"model config of {path}")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{sidecar if sidecar.is_file() else weights} holds no valid model "
                         f"config ({type(exc).__name__}: {exc}); {hint}", "model") from None
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{weights} is not a readable safetensors file ({exc}); {hint}",
                         "model") from None
    model = MorphologyClassifier(config)
    try:
        load_weights(model, weights)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc), "model") from None
    return model.eval(), info


# --------------------------------------------------------------------------------------------
# 2. saliency


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
    if path is None:
        raise InputError("no ids given and no Hoyle catalogue found: pass the galaxy ids, or the "
                         f"catalogue whose galaxies to explain (or set ${HOYLE_ENV})", "ids")
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
        Run directory of :func:`train_classifier` (or its ``model.safetensors``), or a model.
    data : path-like
        Kaggle root or a directory of ``<id>.jpg`` images (any size; resized bilinearly to the
        model's input).
    out : path-like
        ``<name>.npz`` or ``<name>.zarr``; refused if it exists. Finished batches go to
        ``<out>.partial/`` first; calling again with the same settings resumes.
    ids : str or sequence of int, optional
        Galaxies to explain (see :func:`parse_ids`); default: the catalogue's galaxies that
        have an image in ``data``.
    catalogue : path-like, optional
        Catalogue choosing the default ids (default: :func:`find_hoyle_catalogue`).
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
    if n_samples < 1 or noise < 0 or batch_size < 1 or chunk < 1:
        raise InputError(f"n_samples, batch_size and chunk must be positive and noise >= 0; got "
                         f"n_samples={n_samples}, noise={noise}, batch_size={batch_size}, "
                         f"chunk={chunk}", "n_samples")
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
        digest = _sha256(weights)
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

    def measured_maps(self, use_x_input: bool) -> np.ndarray:
        """The maps Algorithm 1 runs on: the saliency, or ``x_input`` (× grayscale image)."""
        if not use_x_input:
            return self.saliency.astype(np.float64)
        images = self.images.astype(np.float64) / 255.0
        return np.stack([x_input(m, im) for m, im in zip(self.saliency, images)])


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


# --------------------------------------------------------------------------------------------
# 3. bar lengths and the report


@dataclass(frozen=True)
class BarsResult:
    """What :func:`measure_bars` wrote and computed.

    Attributes
    ----------
    lengths : pandas.DataFrame
        One row per galaxy (also written to ``table_path``).
    settings : dict
        Method, ``t_c``, ``t_l`` (map pixels), ``x_input``, how they were chosen, counts.
    rho : pandas.DataFrame or None
        ``statistic, value, low, high`` on the evaluated galaxies (with a catalogue).
    fit : OriginFit or None
        Weighted fit through the origin of measured on catalogue length.
    grid : pandas.DataFrame or None
        The grid-search table (validation ρ per setting, best first).
    table_path, report_path : Path
    """

    lengths: pd.DataFrame
    settings: dict
    rho: pd.DataFrame | None
    fit: OriginFit | None
    grid: pd.DataFrame | None
    table_path: Path
    report_path: Path


def _aligned(sets: list[MapSet]) -> tuple[list[int], list[np.ndarray]]:
    """Ids present in every map set (first set's order) and each set's row index for them."""
    common = set(sets[0].ids.tolist())
    for s in sets[1:]:
        common &= set(s.ids.tolist())
    ids = [int(i) for i in sets[0].ids if int(i) in common]
    if not ids:
        raise InputError("the maps files share no galaxy id; average only maps of the same "
                         "galaxies", "maps")
    rows = []
    for s in sets:
        pos = {int(g): k for k, g in enumerate(s.ids)}
        rows.append(np.array([pos[i] for i in ids], dtype=np.int64))
    return ids, rows


def _labels(sets: list[MapSet]) -> list[str]:
    labels = []
    for k, s in enumerate(sets):
        base = str(s.meta.get("architecture") or f"model{k}")
        labels.append(base if base not in labels else f"{base}{k}")
    return labels


def _grid(sets, rows, ids, cat, method, n_boot, n_perm, seed, have_r90):
    """Grid search over (x_input, T_c, T_l) on the catalogue's validation split (spec §5)."""
    size = sets[0].map_size
    t_l = scaled_t_l(_GRID_T_L, size)
    tables = []
    for s, r in zip(sets, rows):
        for xi in (False, True):
            tables.append(measurement_table(s.measured_maps(xi)[r], ids, t_c=_GRID_T_C, t_l=t_l,
                                            method=method, x_input=xi))
    table = pd.concat(tables, ignore_index=True)
    table = table.groupby(["id", "x_input", "t_c", "t_l"], as_index=False)["length_px"].mean()
    validation, test = split_catalogue(cat)
    cat_in = cat[["id", "length_scaled"]].assign(r90=cat["r90"] if have_r90 else 1.0)
    try:
        result = grid_search(table, cat_in, list(validation["id"]), list(test["id"]),
                             settings=["x_input", "t_c", "t_l"],
                             units="faithful" if have_r90 else "scaled", n_boot=n_boot,
                             n_perm=n_perm, seed=seed)
    except ValueError as exc:
        raise InputError(f"grid search impossible: {exc}. The catalogue is split like the "
                         "authors' (shuffle seed 123, first third validation); measure more of "
                         "its galaxies or give fixed thresholds", "grid_search") from None
    best = result.best
    split_of = {**dict.fromkeys(validation["id"], "validation"),
                **dict.fromkeys(test["id"], "test")}
    return bool(best["x_input"]), float(best["t_c"]), int(best["t_l"]), result.table, split_of


def _rho_table(measured: np.ndarray, cat: pd.DataFrame, have_r90: bool, n_boot: int,
               n_perm: int, seed: int) -> tuple[pd.DataFrame, OriginFit, dict]:
    ls = cat["length_scaled"].to_numpy(float)
    if have_r90:
        r90 = cat["r90"].to_numpy(float)
        report = rho_report(measured, ls, r90, n_boot=n_boot, n_perm=n_perm, seed=seed)
        table = report.to_frame()
        y, x = paper_plot_units(measured * r90, ls * r90)
        extra = {"permutation_p": report.permutation_p,
                 "axes": ("catalogue length (authors' plot units, 'h⁻¹ kpc')",
                          "measured length (authors' plot units, 'h⁻¹ kpc')")}
    else:
        rows = []
        for name, how in (("scaled units (L424/100 vs length_scaled)", "pearson"),
                          ("Spearman (scaled units)", "spearman")):
            est = bootstrap_rho(measured / 100.0, ls, method=how, n_boot=n_boot, seed=seed)
            rows.append((name, est.value, est.low, est.high))
        table = pd.DataFrame(rows, columns=["statistic", "value", "low", "high"])
        x, y = ls, measured / 100.0
        extra = {"axes": ("catalogue length_scaled (bar length / 2 R90)",
                          "measured L424 / 100 (bar length / 2 R90)")}
    fit = fit_through_origin(x, y, origin_fit_weights(x))
    return table, fit, {**extra, "x": x, "y": y}


def _figures(out: Path, images: np.ndarray, maps: np.ndarray, t_c: float, t_l: int,
             method: str, scatter: dict | None, fit: OriginFit | None) -> dict[str, Path]:
    """Fig. 3 analogue (image | map | mask per row) and, with a fit, the Fig. 4 analogue."""
    from galaxai.viz.render import heatmap, montage, scatter_plot

    figures = {}
    tiles = []
    for image, m in zip(images, maps):
        image = image.astype(np.float32) / 255.0
        mask = measure_bar(m, t_c, t_l, method).mask
        tiles += [image, heatmap(m), np.repeat(mask[..., None].astype(np.float32), 3, -1)]
    if tiles:
        figures["fig3"] = montage(tiles, ncols=3, size=160, path=out / "fig3_saliency_bars.png")
    if scatter is not None and fit is not None:
        xlabel, ylabel = scatter["axes"]
        figures["fig4"] = scatter_plot(
            {f"galaxies (n = {fit.n})": (scatter["x"], scatter["y"])},
            lines={"1:1": 1.0, f"fit through origin, slope {fit.slope:.3f}": fit.slope},
            xlabel=xlabel, ylabel=ylabel, title="measured vs catalogue bar length",
            path=out / "fig4_measured_vs_catalogue.png")
    return figures


def measure_bars(maps: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike,
                 *, catalogue: str | os.PathLike | None = None,
                 r90: str | os.PathLike | None = None, t_c: float | None = None,
                 t_l: int | None = None, use_grid_search: bool = False, method: str = "fast",
                 table_format: str = "csv", n_figure: int = 6, n_boot: int = 2000,
                 n_perm: int = 2000, seed: int = 0, progress: bool = False) -> BarsResult:
    """Bar lengths of every map, the ρ report against a catalogue and an HTML report (step 3).

    Parameters
    ----------
    maps : path-like or sequence of path-like
        Maps files of :func:`compute_saliency`. Several files (one per model, same map size)
        are averaged as the authors' ``averagemeasurements``: the mean of the per-model lengths.
    out : path-like
        Output directory: ``bar_lengths.csv`` (or ``.parquet``), ``rho.csv``, ``grid_search.csv``,
        ``summary.json``, the figures and ``report/index.html``.
    catalogue : path-like, optional
        Bar-length catalogue with ``length_scaled`` (:func:`read_bar_catalogue`), e.g. Hoyle
        et al. (2011); enables ρ, the fit and the Fig. 4 analogue.
    r90 : path-like, optional
        Table of ``petroR90_r`` per galaxy, for the faithful ρ and its nulls.
    t_c, t_l : float, int, optional
        Fixed thresholds (default 0.85 and 40 scaled to the map area, :func:`scaled_t_l`).
        ``t_l`` counts map pixels.
    use_grid_search : bool
        Choose ``(x_input, t_c, t_l)`` by validation ρ on the authors' catalogue split instead;
        ρ is then reported on the test split only.
    method : {"paper", "fast", "elongation"}
        Algorithm 1 (``fast`` gives the same lengths as ``paper``) or the rotation-invariant
        variant.
    table_format : {"csv", "parquet"}
    n_figure : int
        Galaxies in the Fig. 3 analogue.
    n_boot, n_perm, seed : int
        Bootstrap resamples, permutations and their seed.
    progress : bool
        tqdm bar over galaxies.

    Returns
    -------
    BarsResult
    """
    paths = [maps] if isinstance(maps, (str, os.PathLike)) else list(maps)
    _check_bars_arguments(paths, catalogue, r90, t_c, t_l, use_grid_search, table_format)
    sets = [read_maps(p) for p in paths]
    sizes = sorted({s.map_size for s in sets})
    if len(sizes) > 1:
        raise InputError(f"the maps files have different map sizes {sizes}; average only maps of "
                         "models with one input size", "maps")
    ids, rows = _aligned(sets)
    cat = read_bar_catalogue(catalogue, r90=r90) if catalogue is not None else None
    have_r90, notes = _match_catalogue(cat, ids, catalogue)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid, split_of = None, {}
    if use_grid_search:
        usable = cat[cat["length_scaled"].notna() & (cat["r90"].notna() if have_r90 else True)]
        use_xi, t_c, t_l, grid, split_of = _grid(sets, rows, ids, usable, method, n_boot, n_perm,
                                                 seed, have_r90)
        chosen = "grid search (validation ρ)"
        atomic_write_text(out / "grid_search.csv", grid.to_csv(index=False))
    else:
        use_xi = bool(sets[0].meta.get("x_input", False))
        chosen = ("published T_c" if t_c is None else "given T_c") + ", " + (
            "published T_l scaled to the map area" if t_l is None else "given T_l")
        t_c = _PUBLISHED_T_C if t_c is None else float(t_c)
        t_l = scaled_t_l(_PUBLISHED_T_L, sizes[0]) if t_l is None else int(t_l)
    labels = _labels(sets)
    measured = [s.measured_maps(use_xi)[r] for s, r in zip(sets, rows)]
    logits = np.mean([s.logits[r] for s, r in zip(sets, rows)], axis=0)
    lengths = _length_table(ids, measured, labels, logits, t_c, t_l, method, progress)
    lengths = lengths.assign(method=method, t_c=t_c, t_l=t_l, x_input=use_xi)
    if cat is not None:
        lengths = lengths.merge(cat[["id", "length_scaled", "r90"]], on="id", how="left")
        if split_of:
            lengths["split"] = lengths["id"].map(split_of).fillna("")
    table_path = _write_table(lengths, out / f"bar_lengths.{table_format}")

    rho = fit = scatter = None
    evaluated = lengths.iloc[0:0]
    if cat is not None:
        keep = lengths["length_scaled"].notna() & (lengths["r90"].notna() if have_r90 else True)
        evaluated = lengths[keep & (lengths["split"] == "test" if split_of else True)]
        if len(evaluated) >= 3:
            rho, fit, scatter = _rho_table(evaluated["length_424"].to_numpy(float), evaluated,
                                           have_r90, n_boot, n_perm, seed)
            atomic_write_text(out / "rho.csv", rho.to_csv(index=False))
        else:
            notes.append(f"Only {len(evaluated)} measured galaxies have catalogue lengths: too "
                         "few (< 3) for ρ.")
    position = {gid: k for k, gid in enumerate(ids)}
    fig_rows = [position[int(i)] for i in (evaluated["id"] if len(evaluated) else ids)][:n_figure]
    figures = _figures(out, sets[0].images[rows[0][fig_rows]], measured[0][fig_rows], t_c, t_l,
                       method, scatter, fit)
    skipped = [item for s in sets for item in s.meta.get("skipped", [])]
    settings = {"maps": [str(s.path) for s in sets], "models": labels, "method": method,
                "t_c": t_c, "t_l": int(t_l), "x_input": use_xi, "thresholds": chosen,
                "map_size": sizes[0], "n_measured": len(ids), "n_evaluated": int(len(evaluated)),
                "faithful_units": have_r90, "catalogue": None if catalogue is None
                else str(catalogue), "n_skipped_in_maps": len(skipped)}
    report_path = _report(out, settings, lengths, rho, fit, grid, figures, notes, skipped)
    atomic_write_json(out / "summary.json", {
        **settings, "rho": None if rho is None else rho.to_dict(orient="records"),
        "fit": None if fit is None else {"slope": fit.slope, "rmse": fit.rmse,
                                         "rmse_identity": fit.rmse_identity, "n": fit.n},
        "permutation_p": None if scatter is None else scatter.get("permutation_p"),
        "notes": notes, "table": str(table_path), "report": str(report_path)})
    return BarsResult(lengths, settings, rho, fit, grid, table_path, report_path)


def _check_bars_arguments(paths, catalogue, r90, t_c, t_l, use_grid_search, table_format) -> None:
    if not paths:
        raise InputError("no maps file given", "maps")
    if table_format not in ("csv", "parquet"):
        raise InputError(f"table format must be 'csv' or 'parquet', got {table_format!r}",
                         "table_format")
    if use_grid_search and (t_c is not None or t_l is not None):
        raise InputError("give either fixed thresholds (t_c, t_l) or the grid search, not both",
                         "grid_search")
    if t_c is not None and not 0.0 <= float(t_c) <= 1.0:
        raise InputError(f"t_c must be in [0, 1] (a correlation threshold), got {t_c}", "t_c")
    if t_l is not None and (int(t_l) != t_l or t_l < 0):
        raise InputError(f"t_l must be a non-negative pixel count, got {t_l}", "t_l")
    if use_grid_search and catalogue is None:
        raise InputError("the grid search chooses thresholds by ρ with true lengths: pass a "
                         "catalogue with length_scaled", "grid_search")
    if r90 is not None and catalogue is None:
        raise InputError("an R90 table is used only with a catalogue; pass the catalogue too",
                         "r90")


def _match_catalogue(cat: pd.DataFrame | None, ids: list[int], source) -> tuple[bool, list[str]]:
    """Whether the measured galaxies have R90 (faithful units), and notes for the report."""
    if cat is None:
        return False, []
    matched = cat[cat["id"].isin(set(ids))]
    if matched.empty:
        raise InputError(f"none of the {len(ids)} measured galaxies is in the catalogue {source} "
                         f"(maps ids e.g. {ids[:3]}, catalogue ids e.g. "
                         f"{cat['id'].head(3).tolist()}); use the catalogue of these galaxies",
                         "catalogue")
    missing = int(matched["r90"].isna().sum())
    if missing == len(matched):
        return False, ["No R90 (petroR90_r) given: the faithful ρ, the constant-length null and "
                       "the partial ρ need it (add a petroR90_r column or an R90 table); shown "
                       "are the statistics in scaled units, which need no galaxy size."]
    notes = [f"{missing} catalogue galaxies without R90 are left out of ρ."] if missing else []
    return True, notes


def _length_table(ids: list[int], measured: list[np.ndarray], labels: list[str],
                  logits: np.ndarray, t_c: float, t_l: int, method: str,
                  progress: bool) -> pd.DataFrame:
    """One row per galaxy: the (model-averaged) length and, for one model, how it stopped."""
    records = []
    for k in _progress(range(len(ids)), progress, desc="bar lengths", unit="galaxy"):
        bars = [measure_bar(m[k], t_c, t_l, method) for m in measured]
        rec = {"id": ids[k], "length_px": float(np.mean([b.length_px for b in bars])),
               "length_424": float(np.mean([b.length(GZ_FRAME_SIZE) for b in bars]))}
        if len(bars) == 1:
            b = bars[0]
            rec.update(threshold=b.threshold, stopped_by=b.stopped_by, statistic=b.statistic,
                       mask_pixels=b.count)
        else:
            rec.update({f"length_424_{lab}": b.length(GZ_FRAME_SIZE)
                        for lab, b in zip(labels, bars)})
        rec["p_target"] = 1.0 / (1.0 + math.exp(-float(logits[k])))
        records.append(rec)
    return pd.DataFrame(records)


def _report(out: Path, settings: dict, lengths: pd.DataFrame, rho, fit, grid, figures, notes,
            skipped) -> Path:
    from galaxai.viz.report import Report

    report = Report("galaxai bar lengths", ", ".join(settings["maps"]))
    report.add_section(
        "Bar lengths",
        f"{settings['n_measured']} galaxies measured by Algorithm 1 (method "
        f"{settings['method']}) on {'x_input' if settings['x_input'] else 'SmoothGrad'} maps of "
        f"{settings['map_size']}² pixels, T_c = {settings['t_c']}, T_l = {settings['t_l']} map "
        f"pixels ({settings['thresholds']}). Lengths are L424, pixels of the 424² Galaxy Zoo "
        "frame; with several models they are the mean of the per-model lengths.")
    report.add_table(lengths.describe().T[["count", "mean", "std", "min", "50%", "max"]]
                     .loc[["length_424", "p_target"]], "Distribution of the measured lengths "
                     "and of the model's target probability")
    if rho is not None:
        report.add_section(
            "Correlation with the catalogue",
            f"On {settings['n_evaluated']} galaxies"
            f"{' of the test split' if grid is not None else ''}, with bootstrap 95 % intervals. "
            "The faithful ρ multiplies both sides by R90, a shared size factor: compare it with "
            "the constant-length null (one length for every galaxy) and the partial ρ "
            "controlling for R90.")
        report.add_table(rho, "ρ with bootstrap 95 % intervals (permutation null: its interval)",
                         float_format="{:.3f}")
        if settings["faithful_units"]:
            faithful, null = rho["value"].iloc[0], rho["value"].iloc[1]
            if np.isfinite(faithful) and np.isfinite(null) and null >= faithful - 0.05:
                report.add_note(f"The constant-length null (ρ = {null:.3f}) is within 0.05 of the "
                                f"faithful ρ ({faithful:.3f}): most of the correlation is galaxy "
                                "size, not the measured bar.", kind="warning")
    for note in notes:
        report.add_note(note, kind="warning")
    if "fig3" in figures:
        report.add_section("Saliency and isolated bars (Fig. 3 analogue)",
                           "Each row: the network input | its SmoothGrad map"
                           f"{' × grayscale image (x_input)' if settings['x_input'] else ''} | "
                           "the mask at Algorithm 1's stopping threshold (its largest extent "
                           "is the bar length). With several models, the first model's map.")
        report.add_figure(figures["fig3"], "image | saliency | isolated bar")
    if "fig4" in figures:
        report.add_section(
            "Measured vs catalogue length (Fig. 4 analogue)",
            f"Weighted least squares through the origin (weights 1/(0.17·catalogue)): slope "
            f"{fit.slope:.3f}, RMSE {fit.rmse:.3g} about the fit, {fit.rmse_identity:.3g} about "
            "the 1:1 line. "
            + ("The authors' plot units multiply L424·R90 by 0.02·0.396 and the catalogue by "
               "0.7; they change the slope and RMSE, never ρ."
               if settings["faithful_units"] else "Both axes are bar length over 2·R90."))
        report.add_figure(figures["fig4"], "measured vs catalogue bar length")
    if grid is not None:
        report.add_section("Grid search", "Validation ρ of every (x_input, T_c, T_l), best first "
                           "(T_l in map pixels).")
        report.add_table(grid.head(10), float_format="{:.3f}")
    if skipped:
        shown = "; ".join(f"{s['id']}: {s['reason']}" for s in skipped[:5])
        report.add_note(f"{len(skipped)} requested galaxies had no usable image when the maps were "
                        f"made: {shown}{' …' if len(skipped) > 5 else ''}")
    return report.write(out / "report")
