"""Layer families the LRP rules are keyed on, the error for layers without a rule, and
:class:`ShiftedConv`, the exact convolution that BatchNorm canonisation creates.

Imports neither zennit nor any other galaxai subpackage.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from galaxai.models.deblender import CentreOffsets

__all__ = [
    "UnsupportedLayerError",
    "ShiftedConv",
    "LINEAR",
    "ELEMENTWISE",
    "AVGPOOL",
    "ROUTING",
]

_EPS = 1e-12


class UnsupportedLayerError(NotImplementedError):
    """A layer or operation has no relevance rule; the message names it and suggests a fix.

    (Not a ``TypeError``: torch turns a ``TypeError`` raised inside a binary operator into
    ``NotImplemented``, which would hide the message.)
    """


# ----------------------------------------------------------------------------------------------
# layer families
# ----------------------------------------------------------------------------------------------
ELEMENTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ReLU6, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Softplus, nn.Softsign, nn.LogSigmoid,
)
AVGPOOL = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)
ROUTING = (
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.FeatureAlphaDropout, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
    CentreOffsets,
)
"""Leaves whose ordinary gradient routes relevance exactly (max pooling: winner-take-all;
:class:`~galaxai.models.deblender.CentreOffsets` appends constant planes, whose share of the next
layer's relevance is absorbed like a bias's)."""
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_TRANSPARENT = (nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                nn.AlphaDropout, nn.FeatureAlphaDropout)


class ShiftedConv(nn.Module):
    """A convolution that absorbed a preceding BatchNorm (``conv(a * y + c)``), exactly.

    ``weight`` is the convolution's weight scaled by ``a`` along input channels; ``bias`` is a
    full ``(C_out, *spatial)`` map ``b + conv_W(c)`` computed for the current input size with the
    layer's own padding, so border positions (where zero padding sees no shift) stay exact.
    """

    def __init__(self, conv: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.__dict__["_template"] = conv  # not a submodule: only its hyper-parameters are used
        groups, c_out = conv.groups, conv.out_channels
        per_out = scale.view(groups, -1).repeat_interleave(c_out // groups, dim=0)
        shape = per_out.shape + (1,) * (conv.weight.ndim - 2)
        self.weight = nn.Parameter(conv.weight.detach() * per_out.view(shape), requires_grad=False)
        self.register_buffer("original_weight", conv.weight.detach())
        self.register_buffer("shift", shift.detach())
        self.register_buffer("original_bias", conv.bias.detach() if conv.bias is not None
                             else torch.zeros(c_out, dtype=scale.dtype, device=scale.device))
        self.bias: nn.Parameter | None = None
        self._bias_size: tuple[int, ...] | None = None

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: Any) -> torch.Tensor:
        return self._template._conv_forward(x, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        size = tuple(x.shape[2:])
        if self._bias_size != size:
            shift = self.shift.view(1, -1, *(1,) * len(size)).expand(1, -1, *size)
            with torch.no_grad():
                mapped = self._conv_forward(shift, self.original_weight, None)[0]
                view = (-1,) + (1,) * len(size)
                self.bias = nn.Parameter(mapped + self.original_bias.view(view), requires_grad=False)
            self._bias_size = size
        return self._conv_forward(x, self.weight, None) + self.bias


LINEAR = (nn.Linear,) + _CONVS + (ShiftedConv,)


def _bias_view(module: nn.Module, ndim: int, include: bool) -> torch.Tensor | None:
    bias = getattr(module, "bias", None)
    if bias is None or not include:
        return None
    if isinstance(module, _CONVS):
        return bias.view(-1, *(1,) * (ndim - 2))
    return bias


def _linear_map(module: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if isinstance(module, nn.Linear):
        return F.linear
    return lambda x, w: module._conv_forward(x, w, None)

