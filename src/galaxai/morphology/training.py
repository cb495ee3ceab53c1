"""Training of Galaxy Zoo classifiers and of the direct bar-length control model.

The recipe of Bhambra, Joachimi & Lahav (2022; ``train_models.py``, spec
``smoothgrad_barlength.md`` §1) in PyTorch, with Keras semantics where they matter:

* MSE loss on the 37 vote fractions (sigmoid outputs), RMSE reported as the metric;
* Adam, base learning rate 1e-3 with the legacy Keras per-step decay
  ``lr_t = lr / (1 + 5e-4 · t)`` (``t`` = optimiser steps so far);
* :class:`ReduceLROnPlateau` (×0.5, patience 5, ``min_delta`` 1e-4 on the validation loss) halves
  the *base* rate, on top of which the decay keeps acting, as Keras does;
* :class:`EarlyStopping` (patience 10) stops training **without** restoring the best weights:
  the returned model is the one of the last epoch;
* augmentation (:func:`augment`): rotation U(±360°) with reflect fill, random horizontal and
  vertical flips, brightness ×U(0.7, 1.3) (clipped to [0, 1] like Keras' PIL enhancement) and a
  shift of up to ``shift`` of the image (faithful 0.1, the code); the validation split is
  augmented too (``augment_validation``, faithful on);
* batch-norm statistics (``recalibrate_bn``, default on; a deviation from Keras): before every
  validation the running mean and variance of each batch-norm layer are recomputed as the exact
  average over the (un-augmented) training images (:func:`recalibrate_batchnorm`). Keras' moving
  averages (momentum 0.99) start at mean 0, variance 1 and forget them as ``0.99^t``; with the
  authors' ~150,000 steps that is irrelevant, but a CPU run of a few hundred steps would be
  evaluated, predicted and explained (SmoothGrad, eval mode) through statistics still dominated by
  the initial variance 1 while the true early-layer variances are ~0.01: eval-mode outputs then
  barely depend on the image. Weights are untouched; only the batch-norm buffers change.

PyTorch's own ``ReduceLROnPlateau`` reduces after ``patience + 1`` bad epochs, not ``patience``
as Keras does, hence the two small callback classes here.

The **control** (spec §7) is an Xception-style network with one sigmoid output regressing the
scaled bar length directly (:func:`train_control`); :func:`predict` returns predictions in the
input order, indexed by galaxy id, so they can never be joined to the wrong galaxy (the authors'
test loader shuffled while predictions were joined by filename).

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288 (``train_models.py``,
``control_model.py``).
D. P. Kingma, J. Ba (2015), "Adam", arXiv:1412.6980.
S. Dieleman, K. W. Willett, J. Dambre, MNRAS 450, 1441 (2015) (rotation/flip augmentation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from galaxai.models.morphology import build_classifier

__all__ = [
    "ClassifierTrainConfig",
    "ReduceLROnPlateau",
    "EarlyStopping",
    "augment",
    "recalibrate_batchnorm",
    "as_batch",
    "TrainResult",
    "train_model",
    "predict",
    "train_control",
]


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Optimisation and augmentation settings (presets ``paper``, ``small``, ``tiny``).

    Parameters
    ----------
    epochs : int
        Maximum number of epochs (100 in the paper).
    batch_size : int
        Mini-batch size (32).
    lr, decay : float
        Adam base rate and per-step decay: ``lr_t = lr / (1 + decay · t)``.
    plateau_factor, plateau_patience, plateau_min_delta : float, int, float
        Keras ``ReduceLROnPlateau`` on the validation loss (0.5, 5, 1e-4).
    stop_patience, stop_min_delta : int, float
        Keras ``EarlyStopping`` on the validation loss (10, 0); best weights are not restored.
    rotation : float
        Rotation range in degrees, angles ~ U(−rotation, rotation) (360).
    flips : bool
        Random horizontal and vertical flips.
    brightness : (float, float)
        Brightness factor range (0.7, 1.3); ``(1, 1)`` switches it off.
    shift : float
        Largest shift as a fraction of the image side (faithful 0.1; 0.005 is attributed to the
        paper text, unverified).
    augment_validation : bool
        Augment the validation split too (the authors' code does).
    recalibrate_bn : bool
        Recompute the batch-norm running statistics over the training images before every
        validation (:func:`recalibrate_batchnorm`); ``False`` keeps Keras' moving averages.
    seed : int
        Seed of the initialisation, shuffling and augmentation.
    """

    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    decay: float = 5e-4
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    plateau_min_delta: float = 1e-4
    stop_patience: int = 10
    stop_min_delta: float = 0.0
    rotation: float = 360.0
    flips: bool = True
    brightness: tuple[float, float] = (0.7, 1.3)
    shift: float = 0.1
    augment_validation: bool = True
    recalibrate_bn: bool = True
    seed: int = 0

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "plateau_patience", "stop_patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"ClassifierTrainConfig.{name} must be a positive integer, got {value!r}")
        if not (self.lr > 0 and self.decay >= 0 and 0 < self.plateau_factor < 1):
            raise ValueError("ClassifierTrainConfig needs lr > 0, decay ≥ 0 and 0 < plateau_factor < 1; "
                             f"got lr={self.lr}, decay={self.decay}, "
                             f"plateau_factor={self.plateau_factor}")
        lo, hi = self.brightness
        if not 0 < lo <= hi:
            raise ValueError(f"ClassifierTrainConfig.brightness must be (low, high) with 0 < low ≤ high, "
                             f"got {self.brightness!r}")
        if not 0 <= self.shift < 0.5 or self.rotation < 0:
            raise ValueError(f"ClassifierTrainConfig needs 0 ≤ shift < 0.5 and rotation ≥ 0, got "
                             f"shift={self.shift}, rotation={self.rotation}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ClassifierTrainConfig":
        """``paper``: the published recipe (≤ 100 epochs, batch 32). ``small``: ≤ 30 epochs for a
        CPU. ``tiny``: 3 epochs of batch 16, for tests."""
        presets = {"paper": {}, "small": dict(epochs=30), "tiny": dict(epochs=3, batch_size=16)}
        if name not in presets:
            raise ValueError(f"unknown ClassifierTrainConfig preset {name!r}; choose one of {cls.PRESETS}")
        return cls(**{**presets[name], **overrides})


#: The name this class had before; kept so that existing scripts keep working.
TrainConfig = ClassifierTrainConfig


class ReduceLROnPlateau:
    """Keras ``ReduceLROnPlateau`` (mode ``min``, no cooldown, ``min_lr`` 0) as a scale factor.

    An epoch improves when ``loss < best − min_delta``; after ``patience`` epochs in a row without
    improvement the scale is multiplied by ``factor`` and the count restarts.

    Parameters
    ----------
    factor : float
    patience : int
    min_delta : float
    """

    def __init__(self, factor: float = 0.5, patience: int = 5, min_delta: float = 1e-4) -> None:
        self.factor, self.patience, self.min_delta = float(factor), int(patience), float(min_delta)
        self.best = math.inf
        self.wait = 0
        self.scale = 1.0

    def step(self, loss: float) -> bool:
        """Record one epoch's validation loss; return True if the rate was just reduced."""
        if loss < self.best - self.min_delta:
            self.best, self.wait = float(loss), 0
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.scale *= self.factor
            self.wait = 0
            return True
        return False


class EarlyStopping:
    """Keras ``EarlyStopping`` (mode ``min``, ``restore_best_weights=False``).

    An epoch improves when ``loss − min_delta < best``; training stops once ``patience`` epochs in
    a row have not improved.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best = math.inf
        self.wait = 0

    def step(self, loss: float) -> bool:
        """Record one epoch's validation loss; return True if training should stop now."""
        if loss - self.min_delta < self.best:
            self.best, self.wait = float(loss), 0
            return False
        self.wait += 1
        return self.wait >= self.patience


def as_batch(images: Any, name: str = "images") -> torch.Tensor:
    """Display images ``(N, H, W, 3)`` (or ``(N, 3, H, W)``) in [0, 1] as a float32 NCHW tensor."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
        raise ValueError(f"{name} must be (N, H, W, 3) or (N, 3, H, W), got {tuple(x.shape)}")
    if x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float().contiguous()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return x


def augment(x: torch.Tensor, config: ClassifierTrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Randomly rotate, flip, shift and brighten a batch (Keras ``ImageDataGenerator`` style).

    One bilinear resampling with reflection padding applies rotation U(±``rotation``°), flips
    (each with probability ½) and shifts U(±``shift``·side); then the brightness is multiplied by
    U(``brightness``) and clipped to [0, 1].

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, H, W)
    config : ClassifierTrainConfig
    generator : torch.Generator
        Source of all random draws (seeded by the caller).

    Returns
    -------
    torch.Tensor, same shape
    """
    b = x.shape[0]

    def uniform(lo: float, hi: float, n: int = b) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = torch.deg2rad(uniform(-config.rotation, config.rotation))
    fx = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if config.flips \
        else torch.ones(b)
    fy = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if config.flips \
        else torch.ones(b)
    tx, ty = uniform(-2 * config.shift, 2 * config.shift), uniform(-2 * config.shift,
                                                                   2 * config.shift)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * fx, -sin * fy, tx], 1),
                         torch.stack([sin * fx, cos * fy, ty], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    gain = uniform(*config.brightness).to(x.dtype).view(b, 1, 1, 1)
    return (out * gain).clamp(0.0, 1.0)


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Set every batch-norm layer's running statistics to their average over ``x``.

    The statistics are reset and re-accumulated as a cumulative (equal-weight) average over
    train-mode forward passes of ``x`` in batches, without gradients; weights are not changed
    and the model's mode and the layers' momenta are restored. A model without batch norm is
    left untouched (no forward pass).

    Parameters
    ----------
    model : torch.nn.Module
    x : torch.Tensor, shape (N, C, H, W)
        Un-augmented training images.
    batch_size : int
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    momenta = [m.momentum for m in layers]
    training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                model(x[i:i + batch_size])
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(training)


@dataclass(frozen=True)
class TrainResult:
    """A trained model and its per-epoch history.

    Attributes
    ----------
    model : torch.nn.Module
        The model after the **last** epoch (best weights are not restored), in eval mode.
    history : pandas.DataFrame
        ``epoch, loss, rmse, val_loss, val_rmse, lr_scale, lr_last, reduced, stopped``.
    """

    model: nn.Module
    history: pd.DataFrame


def _targets(targets: Any, n: int, name: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"{name} must have one row per image ({n}), got shape {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return y


def _mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
         config: ClassifierTrainConfig, generator: torch.Generator | None) -> float:
    total = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            if generator is not None:
                xb = augment(xb, config, generator)
            total += float(F.mse_loss(model(xb), y[i:i + batch_size], reduction="sum"))
    return total / y.numel()


def train_model(model: nn.Module, images: Any, targets: Any, val_images: Any, val_targets: Any,
                config: ClassifierTrainConfig = ClassifierTrainConfig(), *, progress: bool = False) -> TrainResult:
    """Train ``model`` on (images, targets) with the authors' recipe (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(B, 3, H, W)`` images in [0, 1] to ``(B, K)`` outputs (e.g. 37 vote fractions).
    images, val_images : array_like
        ``(N, H, W, 3)`` or ``(N, 3, H, W)`` display images in [0, 1].
    targets, val_targets : array_like
        ``(N, K)`` (or ``(N,)`` for K = 1) targets.
    config : ClassifierTrainConfig
    progress : bool
        Show a tqdm bar over epochs with the losses.

    Returns
    -------
    TrainResult
    """
    x, xv = as_batch(images), as_batch(val_images, "val_images")
    y, yv = _targets(targets, x.shape[0], "targets"), _targets(val_targets, xv.shape[0],
                                                               "val_targets")
    if x.shape[0] == 0 or xv.shape[0] == 0:
        raise ValueError("training and validation sets must both be non-empty")
    generator = torch.Generator().manual_seed(int(config.seed))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    plateau = ReduceLROnPlateau(config.plateau_factor, config.plateau_patience,
                                config.plateau_min_delta)
    stopper = EarlyStopping(config.stop_patience, config.stop_min_delta)
    epochs: Sequence[int] = range(1, config.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="train", unit="epoch")
    rows, step = [], 0
    for epoch in epochs:
        model.train()
        order = torch.randperm(x.shape[0], generator=generator)
        total, lr = 0.0, config.lr
        for i in range(0, x.shape[0], config.batch_size):
            idx = order[i:i + config.batch_size]
            lr = config.lr * plateau.scale / (1.0 + config.decay * step)
            for group in optimiser.param_groups:
                group["lr"] = lr
            loss = F.mse_loss(model(augment(x[idx], config, generator)), y[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            total += loss.detach().item() * idx.numel()
        if config.recalibrate_bn:
            recalibrate_batchnorm(model, x, config.batch_size)
        model.eval()
        val_loss = _mse(model, xv, yv, config.batch_size, config,
                        generator if config.augment_validation else None)
        train_loss = total / x.shape[0]
        reduced = plateau.step(val_loss)
        stop = stopper.step(val_loss)
        rows.append(dict(epoch=epoch, loss=train_loss, rmse=math.sqrt(train_loss),
                         val_loss=val_loss, val_rmse=math.sqrt(val_loss),
                         lr_scale=plateau.scale, lr_last=lr, reduced=reduced, stopped=stop))
        if progress:
            epochs.set_postfix(loss=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if stop:
            break
    model.eval()
    return TrainResult(model=model, history=pd.DataFrame(rows))


def predict(model: nn.Module, images: Any, ids: Sequence | None = None, *,
            columns: Sequence[str] | None = None, batch_size: int = 64) -> pd.DataFrame:
    """Model outputs in the input order, one row per image, indexed by galaxy id.

    Parameters
    ----------
    model : torch.nn.Module
        Run in eval mode, without augmentation and without shuffling.
    images : array_like
        ``(N, H, W, 3)`` or ``(N, 3, H, W)`` images in [0, 1].
    ids : sequence, optional
        One unique id per image (default ``0 … N−1``).
    columns : sequence of str, optional
        Output column names (default ``out0, out1, …``).
    batch_size : int

    Returns
    -------
    pandas.DataFrame
        Row ``i`` holds the outputs of image ``i``, index = ``ids``.
    """
    x = as_batch(images)
    ids = list(range(x.shape[0])) if ids is None else list(ids)
    if len(ids) != x.shape[0] or len(set(ids)) != len(ids):
        raise ValueError(f"ids must be {x.shape[0]} unique values, one per image; got "
                         f"{len(ids)} ({len(set(ids))} unique)")
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0],
                                                                         batch_size)])
    finally:
        model.train(training)
    out = out.reshape(x.shape[0], -1).double().numpy()
    columns = [f"out{k}" for k in range(out.shape[1])] if columns is None else list(columns)
    if len(columns) != out.shape[1]:
        raise ValueError(f"got {len(columns)} column names for {out.shape[1]} outputs")
    return pd.DataFrame(out, index=pd.Index(ids, name="id"), columns=columns)


def train_control(images: Any, lengths: Any, val_images: Any, val_lengths: Any, *,
                  preset: str = "small", config: ClassifierTrainConfig = ClassifierTrainConfig(),
                  progress: bool = False, **overrides: Any) -> TrainResult:
    """The control model: Xception → Dense 1 sigmoid regressing the scaled bar length (spec §7).

    Parameters
    ----------
    images, val_images : array_like
        Labelled barred galaxies, ``(N, H, W, 3)`` in [0, 1].
    lengths, val_lengths : array_like, shape (N,)
        Scaled bar lengths in [0, 1] (e.g. ``length_scaled`` = L / (2 R90)); a sigmoid cannot
        exceed 1.
    preset : str
        :class:`~galaxai.models.morphology.MorphologyConfig` preset; ``image_size`` is taken from
        the images.
    config : ClassifierTrainConfig
        Optimisation recipe (the authors use the classifiers' one); ``config.seed`` also seeds
        the initialisation.
    progress : bool
    **overrides
        Further :class:`~galaxai.models.morphology.MorphologyConfig` fields.

    Returns
    -------
    TrainResult
        Predict with :func:`predict` (fixed order, indexed by id).
    """
    x = as_batch(images)
    torch.manual_seed(int(config.seed))
    model = build_classifier("xception", preset, n_outputs=1, image_size=int(x.shape[-1]),
                             **overrides)
    return train_model(model, x, lengths, val_images, val_lengths, config, progress=progress)
