"""zennit rules of Polarized-LRP: module-level :class:`zennit.core.Hook` subclasses.

zennit imports torchvision at import time, so this module is imported only when a rule is first
needed (``galaxai.explain.lrp.<Rule>`` through the package's PEP 562 ``__getattr__``, or the
first explanation); ``import galaxai.explain`` stays light.

* :class:`PolarizedEq1`: fused Eq. 1 for Linear/Conv layers (one pass for mixed polarities).
* :class:`PassThrough`: element-wise activations.
* :class:`PolarizedPositiveLinear`: average pooling (positive weights, no bias).
* :class:`ZMinus`, :class:`ZPolar`, :class:`ZPolarPool`: the generic ``BasicHook`` rules of
  ``engine="zennit"``.
"""
from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn
from zennit.core import BasicHook, Hook, RemovableHandle, RemovableHandleList, Stabilizer
from zennit.rules import ClampMod, ParamMod, ZPlus, zero_bias

from galaxai.explain.lrp.autograd import (
    _eq1_relevance,
    _Pass,
    _positive,
    _positive_linear_relevance,
    _Relay,
)
from galaxai.explain.lrp.layers import _EPS, _bias_view, _linear_map

__all__ = [
    "PolarizedEq1",
    "PolarizedPositiveLinear",
    "PassThrough",
    "ZMinus",
    "ZPolar",
    "ZPolarPool",
]


class PolarizedEq1(Hook):
    """Fused Eq. 1 hook for Linear/Conv layers (one pass for mixed polarities).

    Registers a forward hook that replaces the layer output by an identity whose backward
    pass computes Eq. 1 (:func:`_eq1_relevance`) instead of the ordinary gradient. The clamped
    weights are cached across batches.

    Parameters
    ----------
    bias : bool
        Keep ``[b]^+`` / ``[b]^-`` in the denominators (the paper) or drop them (conserving).
    stabilizer : float
        Magnitude of the denominator's stabiliser, applied with the denominator's own sign.
    """

    def __init__(self, bias: bool = True, stabilizer: float = _EPS) -> None:
        super().__init__()
        self.bias, self.stabilizer = bias, stabilizer
        self._weights: tuple[Any, tuple[torch.Tensor, torch.Tensor]] | None = None

    def copy(self):  # noqa: D102
        return type(self)(self.bias, self.stabilizer)

    def register(self, module):  # noqa: D102
        return RemovableHandleList([RemovableHandle(self), module.register_forward_hook(self.forward)])

    def forward(self, module, input, output):  # noqa: D102
        x = input[0]
        if not (torch.is_grad_enabled() and x.requires_grad):
            return None
        return _Relay.apply(x, [output.detach()], functools.partial(self.relevance, module))

    def relevance(self, module: nn.Module, x: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        """Input relevance of ``module`` for output relevance ``relevance`` (Eq. 1)."""
        weight = module.weight
        key = (id(weight), weight._version)
        if self._weights is None or self._weights[0] != key:
            self._weights = (key, (weight.clamp(min=0), weight.clamp(max=0)))
        bias = _bias_view(module, relevance.ndim, self.bias)
        return _eq1_relevance(_linear_map(module), self._weights[1], bias, x, relevance,
                              self.stabilizer)


class PassThrough(PolarizedEq1):
    """Fused pass-through for element-wise activations (zennit's ``Pass`` without the clone
    of the input and the discarded ordinary backward)."""

    def forward(self, module, input, output):  # noqa: D102
        x = input[0]
        if not (torch.is_grad_enabled() and x.requires_grad):
            return None
        return _Pass.apply(x, [output.detach()])


class PolarizedPositiveLinear(PolarizedEq1):
    """Eq. 1 for average pooling, a linear layer with positive weights and no bias."""

    def relevance(self, module, x, relevance):  # noqa: D102
        return _positive_linear_relevance(module.forward, x, relevance, self.stabilizer)  # no hooks


class ZMinus(BasicHook):
    """Negative counterpart of zennit's ``ZPlus``: ``[z]^-`` contributions and ``[b]^-``.

    Inputs are split by sign and paired with weights clamped to the opposite sign
    (``x^+ W^-`` and ``x^- W^+``); the bias is clamped to ``<= 0`` and kept in the first pair.
    """

    def __init__(self, stabilizer=1e-6, zero_params=None):
        stab = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[lambda x: x.clamp(min=0), lambda x: x.clamp(max=0)],
            param_modifiers=[ClampMod(max=0.0, zero_params=zero_params),
                             ClampMod(min=0.0, zero_params=zero_bias(zero_params))],
            output_modifiers=[lambda out: out] * 2,
            gradient_mapper=lambda grad, outs: [grad / stab(outs[0] + outs[1])] * 2,
            reducer=lambda ins, grads: ins[0] * grads[0] + ins[1] * grads[1],
        )


class ZPolar(BasicHook):
    """``ZPlus`` and :class:`ZMinus` in one hook, each sample routed by its relevance sign."""

    def __init__(self, stabilizer=1e-6, zero_params=None):
        stab = Stabilizer.ensure(stabilizer)
        plus, minus = ZPlus(stabilizer, zero_params), ZMinus(stabilizer, zero_params)

        def mapper(grad, outs):
            pos = _positive(grad)
            s_pos = torch.where(pos, grad / stab(outs[0] + outs[1]), 0.0)
            s_neg = torch.where(pos, 0.0, grad / stab(outs[2] + outs[3]))
            return [s_pos, s_pos, s_neg, s_neg]

        super().__init__(
            input_modifiers=list(plus.input_modifiers) + list(minus.input_modifiers),
            param_modifiers=list(plus.param_modifiers) + list(minus.param_modifiers),
            output_modifiers=[lambda out: out] * 4,
            gradient_mapper=mapper,
            reducer=lambda ins, grads: sum(i * g for i, g in zip(ins, grads)),
        )


class ZPolarPool(BasicHook):
    """Polarized rule for average pooling as a zennit ``BasicHook`` (positive weights)."""

    def __init__(self, stabilizer=1e-6):
        stab = Stabilizer.ensure(stabilizer)

        def mapper(grad, outs):
            pos = _positive(grad)
            return [torch.where(pos, grad / stab(outs[0]), 0.0),
                    torch.where(pos, 0.0, grad / stab(outs[1]))]

        super().__init__(
            input_modifiers=[lambda x: x.clamp(min=0), lambda x: x.clamp(max=0)],
            param_modifiers=[ParamMod(lambda p, n: p, param_keys=[])] * 2,
            output_modifiers=[lambda out: out] * 2,
            gradient_mapper=mapper,
            reducer=lambda ins, grads: ins[0] * grads[0] + ins[1] * grads[1],
        )
