"""Keras HDF5 weight files read as PyTorch state dicts (needs ``h5py``; no TensorFlow).

Reads the files of Keras's ``model.save_weights("….h5")`` (Keras 1 and 2, and Keras 3's
``legacy_h5_format``), among them the Keras application ImageNet files the paper started from
(``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, ``resnet50v2_…``, ``xception_…``).

Layout (Keras ``save_weights_to_hdf5_group`` / ``load_weights_from_hdf5_group``): the root
attribute ``layer_names`` (split into ``layer_names0``, ``layer_names1``, … when it exceeds
the HDF5 header limit) lists the model's layers in its topological order; each layer is a
group whose attribute ``weight_names`` lists the paths of its weights within the group, in
Keras's legacy order: trainable, then non-trainable. Layers without weights have an empty list.
Keras loads by that order, not by the dataset names, which changed between versions (the
VGG16 file, written by Keras 1: ``block1_conv1/block1_conv1_W_1:0``; later files:
``block1_conv1/block1_conv1/kernel:0``); so does :func:`read_keras_h5`.

Each layer becomes PyTorch tensors under ``<layer name>.``, recognised by its number of
weights and their ranks (the layers of the Keras applications):

=================== ======================================= =====================================
Keras layer         weights, Keras shape                    PyTorch keys, shape
=================== ======================================= =====================================
Conv2D              kernel (H, W, I, O) [, bias (O,)]       ``weight`` (O, I, H, W) [, ``bias``]
SeparableConv2D     depthwise_kernel (H, W, C, M),          ``depthwise.weight`` (C·M, 1, H, W),
                    pointwise_kernel (1, 1, C·M, O)         ``pointwise.weight`` (O, C·M, 1, 1)
Dense               kernel (I, O) [, bias (O,)]             ``weight`` (O, I) [, ``bias``]
BatchNormalization  gamma, beta, moving_mean,               ``weight``, ``bias``,
                    moving_variance (C,)                    ``running_mean``, ``running_var``
=================== ======================================= =====================================

A batch norm built with ``center=False`` or ``scale=False`` omits beta or gamma; every batch
norm of VGG16, ResNet50V2 and Xception keeps the defaults (both on), and a layer with another
set of weights is refused with its name and shapes. Kernels are taken as TensorFlow stores them
(cross-correlation, as PyTorch): files written by the Theano backend, whose kernels are
flipped, are refused.

Layers Keras named from a session-wide counter (``conv2d``, ``conv2d_7``,
``batch_normalization_3``: Xception's four shortcut convolutions and their batch norms) carry
numbers that depend on what the writing session had built before. They are renumbered
``conv2d_1``, ``conv2d_2``, … (and ``batch_normalization_1``, …) in their order in
``layer_names``: the topological order Keras itself loads by, in which each shortcut follows
the previous block's (it consumes that block's output).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["KERAS_SUFFIXES", "read_keras_h5"]

#: File suffixes read as Keras HDF5 weights by :func:`~galaxai.models.morphology.load_weights`.
KERAS_SUFFIXES: tuple[str, ...] = (".h5", ".hdf5")

#: Keras layer classes (as Keras names them by default) whose counter numbers are renumbered.
_COUNTER_NAMED = re.compile(r"(conv2d|batch_normalization)(_\d+)?")
_FIX = ("pass a Keras HDF5 weights file: a Keras application ImageNet file such as "
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5, or Keras 2 "
        "model.save_weights('file.h5')")


def _names(attrs: Any, name: str) -> list[str]:
    """A string or list-of-strings attribute as a list, joined from its chunks if Keras split it."""
    if name in attrs:
        chunks = [attrs[name]]
    else:
        chunks, i = [], 0
        while f"{name}{i}" in attrs:
            chunks.append(attrs[f"{name}{i}"])
            i += 1
    return [n.decode("utf8") if isinstance(n, bytes) else str(n)
            for chunk in chunks for n in np.atleast_1d(chunk)]


def _conv(kernel: torch.Tensor) -> torch.Tensor:
    """Keras Conv2D kernel (H, W, I, O) or Dense kernel (I, O) → PyTorch weight."""
    return kernel.permute(3, 2, 0, 1) if kernel.ndim == 4 else kernel.t()


def _layer_tensors(name: str, weights: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    ranks = [w.ndim for w in weights]
    if ranks == [1, 1, 1, 1]:
        keys = ("weight", "bias", "running_mean", "running_var")
        return {f"{name}.{k}": w for k, w in zip(keys, weights)}
    if ranks == [4, 4]:
        depthwise, pointwise = weights
        h, w, c, m = depthwise.shape
        return {f"{name}.depthwise.weight": depthwise.permute(2, 3, 0, 1).reshape(c * m, 1, h, w),
                f"{name}.pointwise.weight": _conv(pointwise)}
    if ranks in ([4], [4, 1], [2], [2, 1]):
        out = {f"{name}.weight": _conv(weights[0])}
        if len(weights) == 2:
            out[f"{name}.bias"] = weights[1]
        return out
    raise ValueError(f"layer {name} has weights of shapes {[tuple(w.shape) for w in weights]}, "
                     "not a Conv2D, SeparableConv2D, Dense or BatchNormalization (with center "
                     "and scale) layer of the Keras applications")


def _renumber(layer_names: list[str]) -> dict[str, str]:
    """Counter-named layers → ``<class>_1``, ``<class>_2``, … in file order."""
    counts: dict[str, int] = {}
    out = {}
    for name in layer_names:
        match = _COUNTER_NAMED.fullmatch(name)
        if match:
            counts[match[1]] = counts.get(match[1], 0) + 1
            out[name] = f"{match[1]}_{counts[match[1]]}"
    return out


def read_keras_h5(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a Keras HDF5 weights file as a PyTorch state dict.

    Parameters
    ----------
    path : str or Path
        Local file written by Keras ``save_weights`` in the HDF5 format.

    Returns
    -------
    dict of str to torch.Tensor
        ``<Keras layer name>.<PyTorch parameter>`` → tensor in PyTorch layout (module docstring),
        for every layer with weights, in file order; counter-named layers renumbered.

    Raises
    ------
    ImportError
        ``h5py`` is not installed.
    ValueError
        The file is not readable HDF5 (truncated, corrupt, another format), not a Keras HDF5
        weights file, written by the Theano backend, or has a layer of unknown weights; the
        message names the file and the fix.
    """
    try:
        import h5py
    except ImportError:
        raise ImportError("reading Keras .h5 weights needs h5py: pip install h5py (or pip "
                          "install 'galaxai[keras]')") from None
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            layer_names = _names(f.attrs, "layer_names")
            if not layer_names:
                raise ValueError(
                    f"Keras weights file {path} has no layer_names attribute: not Keras HDF5 "
                    f"weights (Keras 3 .weights.h5 and whole-model files are not read); {_FIX}")
            if _names(f.attrs, "backend") == ["theano"]:
                raise ValueError(f"Keras weights file {path} was written by the Theano "
                                 f"backend (flipped kernels), which is not read; {_FIX}")
            renamed = _renumber(layer_names)
            state: dict[str, torch.Tensor] = {}
            for name in layer_names:
                if name not in f:
                    raise ValueError(f"Keras weights file {path} lists layer {name} in "
                                     f"layer_names but has no group for it; {_FIX}")
                group = f[name]
                weights = [torch.from_numpy(np.asarray(group[w])).float()
                           for w in _names(group.attrs, "weight_names")]
                if weights:
                    try:
                        state.update(_layer_tensors(renamed.get(name, name), weights))
                    except ValueError as exc:
                        raise ValueError(f"Keras weights file {path}: {exc}; {_FIX}") from None
    except (OSError, KeyError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot read Keras weights file {path} ({reason}); {_FIX}") from None
    return {k: v.contiguous() for k, v in state.items()}
