"""Classifier runs on the Kaggle Galaxy Zoo data: train one, load it back (step 1).

:func:`train_classifier` (``galaxai morphology train``) reads the Kaggle layout
(``images_training_rev1/<GalaxyID>.jpg`` and ``training_solutions_rev1.csv``, via
:mod:`galaxai.data.sources`), resizes each frame to the preset's input size with
nearest-neighbour sampling (the Keras default the authors trained with), splits 80/20 with seed
123 (spec ``smoothgrad_barlength.md`` §1), trains a 37-output sigmoid classifier with the
authors' recipe (:func:`galaxai.morphology.training.train_model`, MSE loss, RMSE metric) and
writes a **run directory**: ``model.safetensors`` (the weights, its header repeating the model
config), ``model.json`` (the sidecar: model and training configs, validation RMSE, epochs,
initialisation, split) written last, ``history.csv`` and ``split.csv``. All writes are atomic.
:func:`load_classifier` reads a run directory back for :mod:`.saliency_maps`.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288.
S. Dieleman, K. W. Willett, J. Dambre, MNRAS 450, 1441 (2015) (the Kaggle challenge).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError, safe_open

import galaxai
from galaxai._atomic import atomic_write_json, atomic_write_safetensors, atomic_write_text
from galaxai.config import config_from_mapping, config_to_dict
from galaxai.data.sources import SourceError, read_galaxy_zoo_labels
from galaxai.models.morphology import (
    GZ_COLUMNS,
    MorphologyClassifier,
    MorphologyConfig,
    build_classifier,
    load_weights,
)
from galaxai.morphology._common import (
    _IMAGE_DIRS,
    _IMAGE_SUFFIXES,
    InputError,
    _progress,
    _read_images,
)
from galaxai.morphology.training import ClassifierTrainConfig, predict, train_model

__all__ = [
    "MODEL_FILE",
    "SIDECAR_FILE",
    "TrainedClassifier",
    "save_classifier",
    "train_classifier",
    "load_classifier",
]

#: Weights file and JSON sidecar of a run directory written by :func:`train_classifier`.
MODEL_FILE = "model.safetensors"
SIDECAR_FILE = "model.json"
_SPLIT_SEED = 123


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


def save_classifier(run_dir: str | os.PathLike, model: MorphologyClassifier,
                    sidecar: dict) -> None:
    """Write ``model.safetensors`` and then ``model.json`` (the sidecar marks the run complete).

    The model config also goes into the safetensors header, so :func:`load_classifier` reads a
    lone weights file too.

    Parameters
    ----------
    run_dir : path-like
        Run directory (created if missing).
    model : MorphologyClassifier
        The trained network.
    sidecar : dict
        JSON-serialisable description; :func:`load_classifier` needs ``model_config``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", "galaxai_network": "morphology-classifier",
            "galaxai_version": galaxai.__version__,
            "model_config": json.dumps(config_to_dict(model.config), sort_keys=True)}
    atomic_write_safetensors(run_dir / MODEL_FILE, model, meta)
    atomic_write_json(run_dir / SIDECAR_FILE, sidecar)  # last: marks the run complete


def train_classifier(data: str | os.PathLike, out: str | os.PathLike, *,
                     architecture: str = "vgg16", preset: str = "small",
                     weights: str | os.PathLike | None = None, backbone_only: bool = False,
                     layout: str = "keras", limit: int | None = None,
                     epochs: int | None = None, shift: float | None = None,
                     augment_validation: bool | None = None, activation: str | None = None,
                     seed: int = 0, val_fraction: float = 0.2,
                     progress: bool = False) -> TrainedClassifier:
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
        64/128/224) and the :class:`~galaxai.morphology.training.ClassifierTrainConfig` preset.
    weights : path-like, optional
        Local initial weights (``.safetensors`` or a ``torch.save`` state dict; never
        downloaded). Without it the network trains from scratch, as recorded in the sidecar.
    backbone_only : bool
        Load only the convolutional backbone from ``weights`` (e.g. torchvision's ImageNet
        ``vgg16`` state dict at the ``paper`` preset).
    layout : {"keras", "timm"}
        :class:`~galaxai.models.morphology.MorphologyConfig` ``layout``: ``"timm"`` builds
        ResNet50V2 / Xception as timm's ``resnetv2_50`` / ``legacy_xception``, in which their
        ImageNet weights load exactly (no effect on VGG16). Recorded in the model config.
    limit : int, optional
        Use only the first ``limit`` labelled images (by GalaxyID). The training set is held in
        memory as float32: ``N · 3 · S² · 4`` bytes (about 600 kB per image at 224²).
    epochs : int, optional
        Override the preset's maximum number of epochs.
    shift : float, optional
        Augmentation shift as a fraction of the image side, in [0, 0.5) (default the preset's:
        0.1, the authors' code; 0.005 is attributed to the paper).
    augment_validation : bool, optional
        Augment the validation split too (default the preset's: on, as the authors' code).
    activation : {"swish", "relu"}, optional
        Every activation of the network (default the preset's: swish, the authors' code).
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
    model_overrides = {"layout": layout}
    if activation is not None:
        model_overrides["activation"] = activation
    train_overrides = {k: v for k, v in (("epochs", None if epochs is None else int(epochs)),
                                         ("shift", shift),
                                         ("augment_validation", augment_validation))
                       if v is not None}
    model_cfg = MorphologyConfig.preset(preset, architecture, **model_overrides)
    train_cfg = ClassifierTrainConfig.preset(preset, seed=int(seed), **train_overrides)
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
                                 backbone_only=backbone_only, **model_overrides)
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
    save_classifier(out, result.model, sidecar)
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
