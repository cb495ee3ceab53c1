"""The public calls: ``deblend(blends) -> (a, b)`` and ``discriminate(images) -> p(real)``.

``a`` is the output of branch 1, trained on the centred galaxy, and ``b`` that of branch 2 (the
other galaxy), both mapped from tanh's [−1, 1] to [0, 1] by (v+1)/2. The generator runs in eval
mode (BatchNorm running statistics).

With ``checkpoint=None`` the shipped default model :data:`DEFAULT_MODEL` is used
(``galaxai/weights/deblender_<name>.safetensors`` with its sidecar ``deblender_<name>.json``,
which records its training runs and data under ``lineage`` and ``data_recipe`` and that it runs
as a self-ensemble). It was trained on simulated and real galaxies and exported with
``galaxai export RUN --name <name> --self-ensemble``; the README ("Real skies") gives the
commands and its scores. The other shipped models are selected by name (:func:`shipped_models`).
"""
from __future__ import annotations

import copy
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxai.choices import DEFAULT_MODEL
from galaxai.train.checkpoints import (SHIPPED_WEIGHTS, load_discriminator, load_generator,
                                       shipped_file, shipped_models)
from galaxai.models.deblender import from_network, to_network
from galaxai.models.self_ensemble import self_ensemble as run_self_ensemble

__all__ = ["DEFAULT_MODEL", "DEFAULT_WEIGHTS", "DEFAULT_DISCRIMINATOR", "StampSizeWarning", "deblend",
           "discriminate", "discriminator", "generator", "shipped_models"]

#: The shipped default generator.
DEFAULT_WEIGHTS = SHIPPED_WEIGHTS / f"deblender_{DEFAULT_MODEL}.safetensors"
#: The shipped discriminator trained beside it.
DEFAULT_DISCRIMINATOR = SHIPPED_WEIGHTS / f"discriminator_{DEFAULT_MODEL}.safetensors"


class StampSizeWarning(UserWarning):
    """Stamps of another size than the model's were resampled (never silently)."""


def _to_model_size(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """Resample (N, C, H, W) square stamps to ``size`` with a warning; return the original size."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x, None
    if h != w:
        raise ValueError(f"stamps are {h}×{w}; the model takes square {size}×{size} stamps. Cut "
                         "square stamps centred on the blend")
    warnings.warn(f"stamps are {h}×{w} px but the model was trained on {size}×{size}: resampled "
                  f"to {size}×{size} (area-averaged when shrinking, bilinear when enlarging) and "
                  "outputs resampled back; the apparent galaxy size changes by "
                  f"{size / h:.3g}×", StampSizeWarning, stacklevel=3)
    return _resize(x, size), (h, w)


def _resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    size = (size, size) if isinstance(size, int) else size
    if x.shape[-1] > size[-1]:
        return torch.nn.functional.interpolate(x, size=size, mode="area")
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)


@lru_cache(maxsize=8)
def _cached_network(kind: str, path: str, stamp: tuple[int, int], device: str
                    ) -> tuple[torch.nn.Module, dict[str, Any]]:
    del stamp  # part of the cache key only: a rewritten file is reloaded
    load = load_generator if kind == "G" else load_discriminator
    return load(path, device=device)


def _network(kind: str, path: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The cached G or D of a checkpoint directory or weights file ``path``, and its sidecar."""
    weights = path / f"{kind}.safetensors" if path.is_dir() else path
    st = weights.stat() if weights.is_file() else None
    stamp = (st.st_mtime_ns, st.st_size) if st else (0, 0)
    return _cached_network(kind, str(path), stamp, str(device))


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")


def _generator(checkpoint: str | os.PathLike | None, device: torch.device
               ) -> tuple[torch.nn.Module, dict[str, Any]]:
    if checkpoint is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise FileNotFoundError(
                f"the shipped default model {DEFAULT_WEIGHTS} is not present in this installation. "
                "Pass checkpoint=<a checkpoint directory, a G.safetensors file or a shipped "
                "model's name>, or train one (`galaxai train`, README 'Real skies') and ship it: "
                f"`galaxai export RUN --name {DEFAULT_MODEL} --self-ensemble`"
            )
        checkpoint = DEFAULT_WEIGHTS
    path = shipped_file(checkpoint, "deblender") or Path(checkpoint).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; pass a checkpoint directory "
            "(run/checkpoints/000001000), a G.safetensors file or a shipped model name "
            f"({', '.join(shipped_models())})"
        )
    return _network("G", path, device)


def _as_batch(blends: Any, channel_axis: int = -1) -> tuple[torch.Tensor, bool, torch.device | None]:
    """Validate ``blends`` and return a float32 (N, 3, H, W) tensor, whether it was single, device.

    ``channel_axis`` is -1 (channel-last, ``(N, H, W, 3)``) or 1 (channel-first, ``(N, 3, H, W)``;
    ``0`` for a single ``(3, H, W)`` image is accepted as the same).
    """
    if channel_axis not in (-1, 3, 1, 0):
        raise ValueError(f"channel_axis must be -1 (channel last) or 1 (channel first), got "
                         f"{channel_axis!r}")
    is_torch = isinstance(blends, torch.Tensor)
    if is_torch:
        x = blends.detach()
        if not x.is_floating_point():
            raise ValueError(
                f"blends must be floating point in [0, 1], got dtype {x.dtype}; "
                "divide 8-bit images by 255 first"
            )
        src_device = x.device
    else:
        arr = np.asarray(blends)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(
                f"blends must be a floating-point array in [0, 1], got dtype {arr.dtype}; "
                "divide 8-bit images by 255 first"
            )
        # FITS data are big-endian; torch takes native byte order only
        x = torch.from_numpy(np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("="),
                                                             copy=False)))
        src_device = None
    single = x.ndim == 3
    if single:
        x = x.unsqueeze(0)
    last = channel_axis in (-1, 3)
    if x.ndim != 4 or x.shape[-1 if last else 1] != 3:
        layout = "(N, H, W, 3) or (H, W, 3) (channel-last RGB)" if last else \
            "(N, 3, H, W) or (3, H, W) (channel-first RGB)"
        raise ValueError(f"blends must have shape {layout} with channel_axis={channel_axis}, got "
                         f"{tuple(blends.shape)}")
    if x.numel():
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).flatten(1).any(dim=1).sum())
            raise ValueError(f"blends contain NaN or inf values (in {bad} image(s))")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"blends must lie in [0, 1] (display space), got values in [{lo:.4g}, {hi:.4g}]"
            )
    return (x.float().permute(0, 3, 1, 2) if last else x.float()), single, src_device


def _without_running_stats(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose BatchNorm layers use batch statistics in eval mode."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean = m.running_var = None  # eval mode then normalises by the batch
    return model


def deblend(
    blends: Any,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    batch_statistics: bool = False,
    channel_axis: int = -1,
    self_ensemble: bool | None = None,
) -> tuple[Any, Any]:
    """Separate blended galaxy pairs into the centred galaxy and its neighbour.

    Parameters
    ----------
    blends : numpy.ndarray or torch.Tensor
        ``(N, H, W, 3)`` or a single ``(H, W, 3)`` float image in [0, 1] (display space), channel
        last. The networks were trained on 80×80 stamps: other square sizes are resampled to
        80×80 and the outputs back, with a :class:`StampSizeWarning`.
    checkpoint : path-like, optional
        A checkpoint directory (``run/checkpoints/000001000``), a ``G.safetensors`` file, or an
        exported ``<name>.safetensors`` with ``<name>.json`` beside it, or the name of a shipped
        model (:func:`shipped_models`). ``None`` uses the shipped default, :data:`DEFAULT_MODEL`.
    device : str or torch.device, optional
        ``"cuda"`` when available, else ``"cpu"``.
    batch_size : int
        Images per forward pass (bounds memory).
    batch_statistics : bool
        Normalise with each forward pass's own BatchNorm statistics instead of the running ones,
        as the original TensorFlow graph evaluated (spec: report it as a check). Outputs then
        depend on which blends share a pass. The model's stored statistics are not changed.
    channel_axis : {-1, 1}
        Where the colour channels are: -1 (default) channel-last ``(N, H, W, 3)``, 1
        channel-first ``(N, 3, H, W)`` as in blend stores; outputs use the same layout.
    self_ensemble : bool, optional
        Average the outputs over the eight rotations and mirror images of each stamp
        (:func:`galaxai.models.self_ensemble.self_ensemble`; eight forward passes). ``None``
        (default) follows the model's sidecar (``"inference": {"self_ensemble": true}``, written
        by ``galaxai export --self-ensemble``), else off.

    Returns
    -------
    a, b : same type and shape as ``blends``
        The centred galaxy (branch 1) and the other galaxy (branch 2), float32 in [0, 1]. NumPy
        in gives NumPy out; a tensor in gives tensors on its device.

    Raises
    ------
    ValueError
        Wrong shape, dtype or range, NaN/inf values, or a bad ``batch_size``.
    FileNotFoundError
        Missing checkpoint (or no shipped default model).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    x, single, src_device = _as_batch(blends, channel_axis)
    dev = _device(device)
    model, info = _generator(checkpoint, dev)
    if self_ensemble is None:
        self_ensemble = bool(info.get("inference", {}).get("self_ensemble", False))
    if batch_statistics:
        model = _without_running_stats(model)
    channels = model.config.channels
    if x.shape[1] != channels:
        raise ValueError(f"blends have {x.shape[1]} channels, the model expects {channels}")
    x, original = _to_model_size(x, model.config.image_size)
    outs_a, outs_b = [], []
    with torch.inference_mode():
        for chunk in x.split(batch_size):
            outputs = (run_self_ensemble(model, chunk.to(dev)) if self_ensemble
                       else model(chunk.to(dev)))
            g1, g2 = (from_network(g) for g in outputs)
            if original is not None:
                g1, g2 = _resize(g1, original), _resize(g2, original)
            outs_a.append(g1.clamp(0, 1).cpu())
            outs_b.append(g2.clamp(0, 1).cpu())
    if original is not None:
        x = torch.empty(x.shape[:2] + original)
    shape = (0,) + tuple(x.shape[1:])
    a = torch.cat(outs_a) if outs_a else torch.empty(shape)
    b = torch.cat(outs_b) if outs_b else torch.empty(shape)
    if channel_axis in (-1, 3):
        a, b = a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)
    if single:
        a, b = a[0], b[0]
    if src_device is None:
        return a.numpy().copy(), b.numpy().copy()
    return a.to(src_device).clone(), b.to(src_device).clone()


def generator(checkpoint: str | os.PathLike | None = None,
              device: str | torch.device | None = None) -> torch.nn.Module:
    """The generator network of ``checkpoint`` (as for :func:`deblend`), in eval mode.

    Loaded once per process and device (cached); dissection and generator LRP take it as their
    model. It runs one forward pass per call: :func:`deblend` adds the input checks, resampling
    and the self-ensemble.
    """
    return _generator(checkpoint, _device(device))[0]


def discriminator(checkpoint: str | os.PathLike | None = None,
                  device: str | torch.device | None = None) -> torch.nn.Module:
    """The discriminator network of ``checkpoint`` (as for :func:`discriminate`), in eval mode.

    Loaded once per process and device (cached); explainers such as
    :func:`galaxai.explain.polarized_lrp` take it as their model.
    """
    path = DEFAULT_DISCRIMINATOR if checkpoint is None else (
        shipped_file(checkpoint, "discriminator") or Path(checkpoint).expanduser().resolve())
    weights = path / "D.safetensors" if path.is_dir() else path
    if not weights.is_file():
        raise FileNotFoundError(f"discriminator weights {weights} do not exist; pass a checkpoint "
                                "directory (run/checkpoints/000001000) or a D.safetensors file")
    return _network("D", path, _device(device))[0]


def discriminate(
    images: Any,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    channel_axis: int = -1,
) -> Any:
    """The discriminator's probability that each image is a real (not generated) galaxy.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor
        ``(N, H, W, 3)`` or ``(H, W, 3)`` float in [0, 1], as for :func:`deblend` (other square
        sizes are resampled to the model's with a :class:`StampSizeWarning`).
    checkpoint : path-like, optional
        A checkpoint directory (its ``D.safetensors``), a ``D.safetensors`` file, an exported
        ``<name>.safetensors`` or a shipped model's name; ``None`` uses the shipped default's.
    device, batch_size, channel_axis
        As for :func:`deblend`.

    Returns
    -------
    ndarray or tensor, shape (N,) (a scalar for one image)
        ``sigmoid(D(x))``, float32.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    x, single, src_device = _as_batch(images, channel_axis)
    dev = _device(device)
    model = discriminator(checkpoint, dev)
    x, _ = _to_model_size(x, model.config.image_size)
    with torch.inference_mode():
        # D was trained on the networks' range [-1, 1] (train/gan.py maps its images with to_network)
        probs = [torch.sigmoid(model(to_network(chunk.to(dev))).reshape(-1)).cpu()
                 for chunk in x.split(batch_size)]
    p = torch.cat(probs) if probs else torch.empty(0)
    if single:
        p = p[0]
    return p.numpy().copy() if src_device is None else p.to(src_device).clone()
