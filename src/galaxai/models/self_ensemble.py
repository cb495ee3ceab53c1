"""Geometric self-ensemble: a network's outputs averaged over the eight symmetries of the square.

Deblending commutes with the symmetries of a square stamp about its centre (the dihedral group
D4: rotations by multiples of 90° and those rotations after a mirror flip): rotating a blend
rotates both galaxies, and the centred galaxy stays centred. A network trained on such stamps is
only approximately equivariant. Running it on the eight transformed copies of the input, mapping
each output back and averaging removes the part of its error that is not equivariant; this is
the "self-ensemble" of image restoration (Timofte et al. 2016, Lim et al. 2017 "EDSR"). It costs
eight forward passes and needs no training.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["DIHEDRAL", "self_ensemble"]

#: The eight symmetries of the square as (quarter turns counter-clockwise, then mirror left-right).
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((k, flip) for k in range(4) for flip in (False, True))


def _forward(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, turns, dims=(-2, -1))
    return x.flip(-1) if flip else x


def _inverse(y: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    y = y.flip(-1) if flip else y
    return torch.rot90(y, -turns, dims=(-2, -1))


def self_ensemble(network: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
                  x: torch.Tensor,
                  transforms: Sequence[tuple[int, bool]] = DIHEDRAL) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """The mean of ``inverse(network(forward(x)))`` over ``transforms``.

    Parameters
    ----------
    network : callable
        Maps ``(N, C, S, S)`` images to one tensor or a tuple of tensors of the same spatial size
        (the deblender's two branches), e.g. any image-to-image ``torch.nn.Module``.
    x : torch.Tensor
        ``(N, C, S, S)`` square images.
    transforms : sequence of (int, bool)
        ``(quarter turns, mirror)`` pairs; the default :data:`DIHEDRAL` is all eight.

    Returns
    -------
    torch.Tensor or tuple of torch.Tensor
        Shaped as ``network(x)``.

    Raises
    ------
    ValueError
        Non-square images, an empty ``transforms``, or outputs of another spatial size.
    """
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"self_ensemble needs square images (…, S, S), got shape {tuple(x.shape)}; "
                         "quarter turns of a non-square stamp change its shape")
    if not transforms:
        raise ValueError("transforms is empty; pass at least one (quarter turns, mirror) pair")
    total: list[torch.Tensor] | None = None
    single = False
    for turns, flip in transforms:
        out = network(_forward(x, turns, flip))
        single = isinstance(out, torch.Tensor)
        outs = (out,) if single else tuple(out)
        if any(o.shape[-2:] != x.shape[-2:] for o in outs):
            raise ValueError("self_ensemble needs outputs of the input's spatial size, got "
                             f"{[tuple(o.shape) for o in outs]} for input {tuple(x.shape)}")
        back = [_inverse(o, turns, flip) for o in outs]
        total = back if total is None else [t + b for t, b in zip(total, back)]
    means = tuple(t / len(transforms) for t in total)
    return means[0] if single else means
