"""Polarized-LRP and the "original LRP" baselines, built on zennit.

Polarized-LRP (Li et al. 2020, Eq. 1) explains a GAN discriminator's single probability ``p`` with
two virtual classes: a *positive* map ("why real", ``p >= 0.5``) built from positive contributions
only, and a *negative* map ("why generated") built from negative ones. At every Linear/Conv layer,
with contributions ``z_ij = x_i w_ij`` and ``[.]^+ = max(., 0)``, ``[.]^- = min(., 0)``::

    positive:  R_i = sum_j [z_ij]^+ / (sum_k [z_kj]^+ + [b_j]^+) * R_j
    negative:  R_i = sum_j [z_ij]^- / (sum_k [z_kj]^- + [b_j]^-) * R_j

starting from ``R_out = p`` (``specs/polarized_lrp.md`` is the exact statement implemented here).

How it is computed
------------------
The model is *snapshotted* (deep copy, eval mode, spectral/weight norm resolved to plain weights,
BatchNorm merged into the neighbouring linear layer, in-place activations made out-of-place); the
user's model is never modified. Rules are zennit hooks (:class:`zennit.core.Hook`) attached by a
zennit :class:`~zennit.composites.LayerMapComposite` mapping layer types to rules:

* Linear / Conv: Eq. 1. ``engine="fused"`` (default) uses :class:`PolarizedEq1`, a hook that
  reroutes the backward pass through one autograd function per layer and never computes the
  layer's ordinary gradient. The clamped weights ``W^+``, ``W^-`` are cached; per sample the
  sign-split inputs are swapped (``x^+ W^+ + x^- W^-`` or ``x^- W^+ + x^+ W^-``), so a mixed batch
  costs two linear calls forward and two backward, like a uniform one: about 5 convolution costs
  per layer against 2 for a plain input gradient (``benchmarks/bench_lrp.py`` measures about
  2.3-2.6x on the paper discriminator, against 3.5-5x for zennit's generic ZPlus composite).
  ``engine="zennit"`` uses stock zennit ``BasicHook`` rules: zennit's ``ZPlus`` for positive
  batches, :class:`ZMinus` for negative ones and :class:`ZPolar` (both branch pairs) for mixed
  ones — the generic reference path, slower, composite registered per call.
* Average pooling: a linear layer with positive weights (:class:`PolarizedPositiveLinear`).
* Element-wise activations (ReLU, LeakyReLU, PReLU, ELU, SiLU, Tanh, Sigmoid, ...): pass-through
  (:class:`PassThrough` for the fused engine, zennit's ``Pass`` for the zennit engine).
* Max pooling, Flatten, Dropout, reshapes: the gradient itself routes relevance exactly
  (max pooling's gradient is winner-take-all).
* Operations written in a container's ``forward`` are seen by a ``TorchFunctionMode`` guard:
  residual additions ``a + b`` split relevance as Eq. 1 does for a layer with unit weights
  (``R_a = [a]^+ / ([a]^+ + [b]^+) R`` for the positive map, ``[.]^-`` for the negative one; a
  constant summand acts as a bias), functional activations and positive scalar scaling pass
  relevance through, functional average pools and means use the positive-linear rule. Any other
  operation that carries relevance raises :class:`UnsupportedLayerError` naming it and the module.

Conservation: with ``bias="ignore"`` (or all biases 0) the input relevance sums to the start
relevance exactly *unless* relevance reaches a neuron whose own denominator is 0. With ReLU that
never happens (such a neuron outputs 0 and receives nothing); with LeakyReLU a neuron whose inputs
all contribute with the wrong sign outputs a small value of the other sign, can still receive
relevance through weights of that sign, and then passes none (0/0 := 0, as Eq. 1 prescribes), so
the sum is ``<= p``. The tests check both cases against an independent Eq. 1 reference.

A mixed real/generated batch is explained in one pass: the relevance of a negative-polarity sample
is carried with a minus sign, each rule routes a sample by the sign of its incoming relevance, and
the returned maps are multiplied back by the polarity (both maps are non-negative).

:meth:`PolarizedLRP.describe` prints which rule hit which layer (the debugging aid asked for in
zennit issue #51), including the canonisation steps and the operations the guard handled.

References
----------
Li, Lin, Mueller & Xu (2020), "Interpreting Galaxy Deblender GAN from the Discriminator's
Perspective", arXiv:2001.06151.
Bach et al. (2015), "On pixel-wise explanations for non-linear classifier decisions by layer-wise
relevance propagation", PLoS ONE 10(7): e0130140.
Montavon et al. (2019), "Layer-wise relevance propagation: an overview", in Explainable AI,
LNCS 11700, Springer.
Anders et al. (2021), "Software for dataset-wide XAI: from local explanations to global insights
with Zennit, CoRelAy, and ViRelAy", arXiv:2106.13200.
"""
from __future__ import annotations

import copy
import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from galaxai.explain.saliency import Attribution, as_input, register_method

__all__ = [
    "UnsupportedLayerError",
    "ShiftedConv",
    "LINEAR",
    "ELEMENTWISE",
    "AVGPOOL",
    "ROUTING",
    "PolarizedLRP",
    "polarized_lrp",
    "LRP",
    "lrp",
    "LRP_RULES",
    "register_lrp_rule",
    "PolarizedEq1",
    "PolarizedPositiveLinear",
    "PassThrough",
    "ZMinus",
    "ZPolar",
    "ZPolarPool",
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
)
"""Leaves whose ordinary gradient routes relevance exactly (max pooling: winner-take-all)."""
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


# ----------------------------------------------------------------------------------------------
# autograd functions carrying the rules
# ----------------------------------------------------------------------------------------------
def _positive(relevance: torch.Tensor) -> torch.Tensor:
    """Per-sample polarity from the sign of the incoming relevance, shape ``(B, 1, ..., 1)``."""
    flat = relevance.reshape(relevance.shape[0], -1).sum(1) >= 0
    return flat.view(-1, *(1,) * (relevance.ndim - 1))


def _signed_eps(positive: torch.Tensor, eps: float) -> torch.Tensor:
    """Stabiliser with the denominator's own sign (+eps for positive, -eps for negative maps)."""
    return torch.where(positive, eps, -eps)


class _Relay(torch.autograd.Function):
    """Identity on the layer output in the forward pass; ``rule(x, R)`` in the backward pass.

    The output arrives in a one-element list, so autograd sees a fresh output rather than an
    input returned as-is (a view), and the caller may modify it in place (``out += skip``).
    """

    @staticmethod
    def forward(ctx, x, holder, rule):  # noqa: D102
        ctx.rule = rule
        ctx.save_for_backward(x)
        return holder[0]

    @staticmethod
    def backward(ctx, relevance):  # noqa: D102
        (x,) = ctx.saved_tensors
        return ctx.rule(x, relevance), None, None


class _Pass(torch.autograd.Function):
    """Identity whose backward pass hands relevance through unchanged (element-wise layers)."""

    @staticmethod
    def forward(ctx, x, holder):  # noqa: D102
        return holder[0]

    @staticmethod
    def backward(ctx, relevance):  # noqa: D102
        return relevance, None


def _eq1_relevance(
    linear: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    weights: tuple[torch.Tensor, torch.Tensor],
    bias: torch.Tensor | None,
    x: torch.Tensor,
    relevance: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Eq. 1 for a batch whose samples carry their polarity as the sign of ``relevance``.

    Positive samples pair ``(x^+, W^+)`` and ``(x^-, W^-)``; negative samples ``(x^-, W^+)`` and
    ``(x^+, W^-)``: swapping the sign-split inputs per sample keeps the clamped weights fixed, so
    a mixed batch costs two linear calls forward and two backward, like a uniform one.
    """
    w_pos, w_neg = weights
    pos_out = _positive(relevance)
    pos = pos_out.reshape(-1)
    if bool(pos.all()):
        first = x.clamp(min=0)
    elif not bool(pos.any()):
        first = x.clamp(max=0)
    else:
        x_pos = x.clamp(min=0)
        first = torch.where(pos.view(-1, *(1,) * (x.ndim - 1)), x_pos, x - x_pos)
    second = (x - first).requires_grad_(True)  # the other sign part, exactly
    first.requires_grad_(True)
    with torch.enable_grad():
        z = linear(first, w_pos) + linear(second, w_neg)
    offset = _signed_eps(pos_out, eps)
    if bias is not None:
        offset = offset + torch.where(pos_out, bias.clamp(min=0), bias.clamp(max=0))
    scaled = relevance / (z.detach() + offset)
    g_first, g_second = torch.autograd.grad(z, (first, second), scaled)
    return torch.addcmul(first.detach() * g_first, second.detach(), g_second)


def _positive_linear_relevance(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, relevance: torch.Tensor, eps: float
) -> torch.Tensor:
    """Eq. 1 for a linear map with non-negative weights (average pooling, mean, sum)."""
    pos_out = _positive(relevance)
    pos_in = pos_out.view(-1, *(1,) * (x.ndim - 1))
    part = torch.where(pos_in, x.clamp(min=0), x.clamp(max=0)).requires_grad_(True)
    with torch.enable_grad():
        z = fn(part)
    scaled = relevance / (z.detach() + _signed_eps(pos_out, eps))
    (grad,) = torch.autograd.grad(z, part, scaled)
    return part.detach() * grad


def _z_linear_relevance(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, relevance: torch.Tensor, eps: float
) -> torch.Tensor:
    """LRP-0 for a parameter-free linear map (zennit's ``Norm`` rule), used by the baselines."""
    part = x.detach().requires_grad_(True)
    with torch.enable_grad():
        z = fn(part)
    scaled = relevance / (z.detach() + eps * torch.where(z.detach() >= 0, 1.0, -1.0))
    (grad,) = torch.autograd.grad(z, part, scaled)
    return part.detach() * grad


class _Sum(torch.autograd.Function):
    """``a + sign * b`` whose backward pass splits relevance between the two summands."""

    @staticmethod
    def forward(ctx, a, b, sign, mode, include_const, eps, inplace):  # noqa: D102
        ctx.b_is_tensor = isinstance(b, torch.Tensor)
        ctx.b_needs = ctx.b_is_tensor and b.requires_grad
        ctx.mode, ctx.include_const, ctx.eps = mode, include_const, eps
        ctx.a_shape = a.shape
        ctx.b_shape = b.shape if ctx.b_is_tensor else None
        a_saved = a.detach().clone() if inplace else a.detach()
        term = b * sign if ctx.b_is_tensor else torch.as_tensor(b * sign, dtype=a.dtype, device=a.device)
        ctx.save_for_backward(a_saved, term.detach())
        if inplace:
            a.add_(term)
            ctx.mark_dirty(a)
            return a
        return a + term

    @staticmethod
    def backward(ctx, relevance):  # noqa: D102
        a, term = ctx.saved_tensors
        a, term = a.expand_as(relevance), term.expand_as(relevance)
        if not ctx.b_needs and not ctx.include_const:
            term = torch.zeros_like(term)
        if ctx.mode == "polar":
            pos = _positive(relevance)
            a = torch.where(pos, a.clamp(min=0), a.clamp(max=0))
            term = torch.where(pos, term.clamp(min=0), term.clamp(max=0))
            scaled = relevance / (a + term + _signed_eps(pos, ctx.eps))
        else:
            den = a + term
            scaled = relevance / (den + ctx.eps * torch.where(den >= 0, 1.0, -1.0))
        r_a = (a * scaled).sum_to_size(ctx.a_shape)
        r_b = (term * scaled).sum_to_size(ctx.b_shape) if ctx.b_needs else None
        return r_a, r_b, None, None, None, None, None


# ----------------------------------------------------------------------------------------------
# the guard: operations executed in containers' forward code
# ----------------------------------------------------------------------------------------------
_ROUTING_OPS = frozenset({
    "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose", "t",
    "contiguous", "clone", "__getitem__", "narrow", "select", "split", "chunk", "unbind", "cat",
    "concat", "concatenate", "stack", "view_as", "reshape_as", "expand", "expand_as", "dropout",
    "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "max_pool1d",
    "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d_with_indices", "float", "double", "to", "type", "type_as",
    "movedim", "moveaxis", "swapaxes", "swapdims", "split_with_sizes", "pixel_shuffle",
    "pixel_unshuffle", "tensor_split", "hsplit", "vsplit", "dsplit", "ravel", "__get__",
})
_PASS_OPS = frozenset({
    "relu", "leaky_relu", "prelu", "rrelu", "relu6", "elu", "selu", "celu", "gelu", "silu", "mish",
    "tanh", "sigmoid", "hardtanh", "hardswish", "hardsigmoid", "softplus", "softsign", "logsigmoid",
})
_SCALE_OPS = frozenset({"mul", "__mul__", "__rmul__", "div", "__truediv__"})
_SUM_OPS = {"add": 1, "__add__": 1, "__radd__": 1, "sub": -1, "__sub__": -1, "__rsub__": -1,
            "add_": 1, "__iadd__": 1, "sub_": -1, "__isub__": -1}
_POSLINEAR_OPS = frozenset({"avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
                            "adaptive_avg_pool2d", "adaptive_avg_pool3d", "mean", "sum"})


def _carries(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.requires_grad
    if isinstance(value, (tuple, list)):
        return any(_carries(v) for v in value)
    return False


class _Guard(TorchFunctionMode):
    """Sees every torch call during the explained forward pass (see the module docstring)."""

    def __init__(self, stack: list[tuple[str, bool]], mode: str, include_const: bool, eps: float):
        super().__init__()
        self.stack, self.mode, self.include_const, self.eps = stack, mode, include_const, eps
        self.hits: Counter[tuple[str, str, str]] = Counter()
        self.last_kind: str | None = None
        self.last_sigmoid: tuple[torch.Tensor, torch.Tensor] | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        inside_leaf = bool(self.stack) and self.stack[-1][1]  # the leaf has its own rule
        if inside_leaf or name in _ROUTING_OPS or not _carries(args) and not _carries(kwargs):
            out = func(*args, **kwargs)
            self._track(name, args, out)
            return out
        where = self.stack[-1][0] if self.stack else "<model>"
        if name in _SUM_OPS:
            return self._sum(name, where, args, kwargs)
        if name in _PASS_OPS or name in _SCALE_OPS and self._positive_scalar(args):
            if kwargs.get("inplace"):
                kwargs = {**kwargs, "inplace": False}
            if len(args) > 1 and args[-1] is True:  # F.<activation>(x, ..., inplace=True)
                args = (*args[:-1], False)
            out = func(*args, **kwargs)
            self._track(name, args, out)
            self.hits[(where, name, "pass-through")] += 1
            return _Pass.apply(args[0], [out.detach()])
        if name in _POSLINEAR_OPS:
            rest = args[1:]

            def fn(t):
                return func(t, *rest, **kwargs)

            out = func(*args, **kwargs)
            self.last_kind = name
            if self.mode == "polar":
                rule = functools.partial(_positive_linear_relevance, fn, eps=self.eps)
                self.hits[(where, name, "Eq.1, positive weights")] += 1
            else:
                rule = functools.partial(_z_linear_relevance, fn, eps=self.eps)
                self.hits[(where, name, "LRP-0 (zennit Norm)")] += 1
            return _Relay.apply(args[0], [out.detach()], rule)
        out = func(*args, **kwargs)
        if not _carries(out):
            return out
        raise UnsupportedLayerError(
            f"operation '{name}' in the forward code of module '{where}' carries relevance but has "
            "no LRP rule; express it with supported layers (Conv/Linear/activation modules, "
            "additions, reshapes, pooling) or explain a model without it")

    @staticmethod
    def _positive_scalar(args: tuple) -> bool:
        return len(args) == 2 and isinstance(args[1], (int, float)) and args[1] > 0

    def _track(self, name: str, args: tuple, out: Any) -> None:
        if name in _ROUTING_OPS or not isinstance(out, torch.Tensor):
            return
        self.last_kind = name
        if name == "sigmoid":
            self.last_sigmoid = (args[0], out)

    def _sum(self, name: str, where: str, args: tuple, kwargs: dict) -> torch.Tensor:
        if kwargs.get("alpha", 1) != 1 or len(args) != 2:
            raise UnsupportedLayerError(
                f"'{name}' with alpha or out= in module '{where}' has no LRP rule; write a + b")
        a, b = args
        sign = _SUM_OPS[name]
        if name == "__rsub__":  # b - a
            a, b, sign = b, a, -1
            if not isinstance(a, torch.Tensor):  # constant minus tensor: -(a) is not a summand
                raise UnsupportedLayerError(
                    f"'constant - tensor' in module '{where}' has no LRP rule; negate explicitly")
        if not isinstance(a, torch.Tensor) or not a.requires_grad:
            if sign < 0:
                raise UnsupportedLayerError(
                    f"subtracting a relevance-carrying tensor in module '{where}' has no LRP rule")
            a, b = b, a
        inplace = name in ("add_", "__iadd__", "sub_", "__isub__")
        rule = "Eq.1 sum split" if self.mode == "polar" else "LRP-0 sum split (zennit Norm)"
        self.hits[(where, name, rule)] += 1
        self.last_kind = name
        return _Sum.apply(a, b, sign, self.mode, self.include_const, self.eps, inplace)


# ----------------------------------------------------------------------------------------------
# zennit rules (zennit is imported lazily: it imports torchvision at import time)
# ----------------------------------------------------------------------------------------------
@functools.cache
def _zennit() -> dict[str, Any]:
    from zennit.core import BasicHook, Hook, RemovableHandle, RemovableHandleList, Stabilizer
    from zennit.rules import ClampMod, ParamMod, ZPlus, zero_bias

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

    classes = (PolarizedEq1, PolarizedPositiveLinear, PassThrough, ZMinus, ZPolar, ZPolarPool)
    for cls in classes:
        cls.__qualname__ = cls.__name__
    return {cls.__name__: cls for cls in classes}


def __getattr__(name: str) -> Any:  # PEP 562: zennit-based classes load on first access
    if name in ("PolarizedEq1", "PolarizedPositiveLinear", "PassThrough", "ZMinus", "ZPolar",
                "ZPolarPool"):
        return _zennit()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------
# snapshot and canonisation
# ----------------------------------------------------------------------------------------------
def _snapshot(model: nn.Module) -> nn.Module:
    """Deep copy in eval mode with plain weights, no in-place ops and no parameter gradients."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm, remove_spectral_norm
    from torch.nn.utils.weight_norm import WeightNorm, remove_weight_norm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    try:
        twin = copy.deepcopy(model)
    except Exception as err:  # noqa: BLE001 - any copy failure gets the same advice
        raise TypeError(f"cannot copy the model to explain it ({err}); make it deep-copyable") from err
    twin.eval()
    for module in list(twin.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, SpectralNorm):
                remove_spectral_norm(module, hook.name)
            elif isinstance(hook, WeightNorm):
                remove_weight_norm(module, hook.name)
    for module in twin.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    twin.eval()
    return twin.requires_grad_(False)


def _replace(root: nn.Module, target: nn.Module, new: nn.Module) -> None:
    for parent in root.modules():
        for key, child in parent._modules.items():
            if child is target:
                parent._modules[key] = new


def _bn_affine(bn: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedLayerError(
            f"BatchNorm '{name}' has no running statistics (track_running_stats=False), so it is "
            "not a fixed affine map in eval mode and cannot be canonised")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.weight is not None:
        scale, shift = scale * bn.weight, shift * bn.weight
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()


def _commutes_with_affine(module: nn.Module, scale: torch.Tensor) -> bool:
    """Whether a per-channel ``a * y + c`` can be moved across ``module`` unchanged."""
    if isinstance(module, _TRANSPARENT):
        return True
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return bool((scale > 0).all())  # max(a y + c) = a max(y) + c only for a > 0
    if isinstance(module, AVGPOOL):
        padding = getattr(module, "padding", 0)
        return not any(padding) if isinstance(padding, tuple) else padding == 0
    return False


def _canonise(twin: nn.Module, probe: torch.Tensor) -> list[str]:
    """Merge every BatchNorm into a neighbouring linear layer; return human-readable notes.

    Data flow is read from one recorded forward pass (which module consumed which tensor), not
    from registration order. A BN whose input comes straight from a Conv/Linear is merged into it
    (zennit's ``SequentialMergeBatchNorm`` merge, applied to the snapshot); a BN after an
    activation (conv -> LeakyReLU -> BN) is merged into the *next* Conv/Linear, through any
    Flatten/Dropout (and unpadded average pooling, or max pooling when every BN scale is
    positive) in between, exactly (see :class:`ShiftedConv`). The snapshot's output is then
    compared with the output before merging.
    """
    names = {m: n for n, m in twin.named_modules()}
    leaves = [m for m in twin.modules() if next(m.children(), None) is None]
    if not any(isinstance(m, _BATCHNORM) for m in leaves):
        return []
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []

    def record(module, inputs, output):
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            calls.append((module, inputs[0], output))

    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad():
            reference = twin(probe)
    finally:
        for h in handles:
            h.remove()
    producer = {id(out): (m, inp) for m, inp, out in calls}
    consumers: dict[int, list[tuple[nn.Module, torch.Tensor]]] = {}
    for m, inp, out in calls:
        consumers.setdefault(id(inp), []).append((m, out))
    counts = Counter(m for m, _, _ in calls)
    notes, after_activation = [], []
    for bn, inp, out in [c for c in calls if isinstance(c[0], _BATCHNORM)]:
        scale, shift = _bn_affine(bn, names[bn])
        before = producer.get(id(inp), (None, None))[0]
        if isinstance(before, (nn.Linear,) + _CONVS) and counts[before] == 1 and counts[bn] == 1:
            shape = (-1,) + (1,) * (before.weight.ndim - 1)
            before.weight.data = before.weight.data * scale.view(shape)
            old_bias = before.bias.data if before.bias is not None else 0.0
            before.bias = nn.Parameter(old_bias * scale + shift, requires_grad=False)
            _replace(twin, bn, nn.Identity())
            notes.append(f"BatchNorm '{names[bn]}' merged into preceding '{names[before]}'")
        else:
            after_activation.append((bn, out, scale, shift))
    # second pass: the following layer may itself have absorbed a BN above
    for bn, out, scale, shift in after_activation:
        bn_name = names[bn]
        target, cursor = None, out
        while True:
            nxt = consumers.get(id(cursor), [])
            if len(nxt) != 1:
                break
            module, cursor = nxt[0]
            if not _commutes_with_affine(module, scale):
                target = module
                break
        if not isinstance(target, (nn.Linear,) + _CONVS) or counts[target] != 1 or counts[bn] != 1:
            raise UnsupportedLayerError(
                f"BatchNorm '{bn_name}' neither follows a Conv/Linear layer nor feeds exactly one "
                "Conv/Linear layer, so it cannot be merged for LRP; place it next to a linear layer")
        if isinstance(target, nn.Linear):
            repeat = target.in_features // scale.numel()
            if repeat * scale.numel() != target.in_features:
                raise UnsupportedLayerError(
                    f"BatchNorm '{bn_name}' ({scale.numel()} channels) does not match the "
                    f"{target.in_features} inputs of '{names[target]}'")
            a, c = scale.repeat_interleave(repeat), shift.repeat_interleave(repeat)
            old_bias = target.bias.data if target.bias is not None else 0.0
            target.bias = nn.Parameter(old_bias + target.weight.data @ c, requires_grad=False)
            target.weight.data = target.weight.data * a
        else:
            _replace(twin, target, ShiftedConv(target, scale, shift))
        _replace(twin, bn, nn.Identity())
        notes.append(f"BatchNorm '{bn_name}' (after an activation) merged into following "
                     f"'{names[target]}'")
    with torch.no_grad():
        merged = twin(probe)
    tol = 1e-4 * max(1.0, float(reference.abs().max()))
    if not torch.allclose(merged, reference, rtol=1e-4, atol=tol):
        raise UnsupportedLayerError(
            "merging BatchNorm layers changed the model output (max difference "
            f"{float((merged - reference).abs().max()):.3g}); a merged layer's output is probably "
            "also used elsewhere. Notes: " + "; ".join(notes))
    return notes


# ----------------------------------------------------------------------------------------------
# explainers
# ----------------------------------------------------------------------------------------------
class _Explainer:
    """Snapshot, canonisation, rule registration and the explained forward/backward pass."""

    method = "lrp"

    def __init__(self, model: nn.Module, guard_mode: str, include_const: bool, eps: float) -> None:
        self._twin = _snapshot(model)
        self._guard_mode, self._include_const, self._eps = guard_mode, include_const, eps
        self._notes: list[str] | None = None
        self._stack: list[tuple[str, bool]] = []
        self._handles: list[Any] = []
        self._composite = None  # the composite of the last call (zennit engine: per batch)
        self._closed = False
        self._last_hits: Counter = Counter()
        self._check_layers(allow_batchnorm=True)

    # -- to be provided by subclasses ------------------------------------------------------
    def _make_composite(self, batch_polarity: torch.Tensor | None):
        raise NotImplementedError

    def _persistent(self) -> bool:
        return True

    # -- preparation --------------------------------------------------------------------------
    def _check_layers(self, allow_batchnorm: bool) -> None:
        for name, module in self._twin.named_modules():
            if next(module.children(), None) is not None:
                continue
            known = LINEAR + AVGPOOL + ELEMENTWISE + ROUTING + (_BATCHNORM if allow_batchnorm else ())
            if not isinstance(module, known):
                raise UnsupportedLayerError(
                    f"layer '{name}' ({type(module).__name__}) has no LRP rule. Supported: "
                    "Linear/Conv1-3d, BatchNorm next to them, average/max pooling, element-wise "
                    "activations, Flatten, Dropout, Identity")

    def _prepare(self, probe: torch.Tensor) -> None:
        self._notes = _canonise(self._twin, probe[:1])
        self._check_layers(allow_batchnorm=False)
        self._composite = self._make_composite(None)
        handled = LINEAR + AVGPOOL + ELEMENTWISE + ROUTING
        for name, module in self._twin.named_modules():
            label = name or "<model>"
            is_leaf = next(module.children(), None) is None and isinstance(module, handled)

            def push(mod, inputs, label=label, is_leaf=is_leaf):
                self._stack.append((label, is_leaf))

            def pop(mod, inputs, output):
                if self._stack:
                    self._stack.pop()

            self._handles.append(module.register_forward_pre_hook(push, prepend=True))
            self._handles.append(module.register_forward_hook(pop))
        if self._persistent():
            self._composite.register(self._twin)

    def close(self) -> None:
        """Remove every hook from the snapshot (the user's model never had any)."""
        self._closed = True
        if self._composite is not None:
            self._composite.remove()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- explanation ------------------------------------------------------------------------
    def _forward(self, xg: torch.Tensor, grad: bool) -> tuple:
        self._stack.clear()
        guard = _Guard(self._stack, self._guard_mode, self._include_const, self._eps)
        with torch.set_grad_enabled(grad), guard:
            out = self._twin(xg)
        if not isinstance(out, torch.Tensor) or out.numel() != xg.shape[0]:
            raise ValueError("the model must map (B, C, H, W) to (B,) or (B, 1) scores; got "
                             f"{getattr(out, 'shape', type(out))}")
        if grad and not out.requires_grad:
            raise ValueError("the model output does not depend on the input through autograd")
        prob = (guard.last_kind == "sigmoid" and guard.last_sigmoid is not None
                and guard.last_sigmoid[1].numel() == out.numel())
        logits = (guard.last_sigmoid[0] if prob else out).detach().reshape(-1)
        return out, guard, logits

    def _run(self, x: Any, seed_fn: Callable[[torch.Tensor, torch.Tensor], tuple]) -> tuple:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} was closed; create a new one")
        x = as_input(self._twin, x)
        if self._notes is None:
            self._prepare(x)
        xg = x.clone().requires_grad_(True)
        if self._persistent():
            out, guard, logits = self._forward(xg, grad=True)
            start, extra = seed_fn(logits, torch.sigmoid(logits))
            (relevance,) = torch.autograd.grad(out, xg, start.view_as(out))
        else:  # generic zennit path: choose the rules for this batch, then attach them
            _, _, logits = self._forward(xg, grad=False)
            start, extra = seed_fn(logits, torch.sigmoid(logits))
            self._composite = self._make_composite(extra)
            self._composite.register(self._twin)
            try:
                out, guard, _ = self._forward(xg, grad=True)
                (relevance,) = torch.autograd.grad(out, xg, start.view_as(out))
            finally:
                self._composite.remove()
        self._last_hits = guard.hits
        return relevance.detach(), logits, extra

    def describe(self) -> str:
        """Which rule hits which layer: canonisation notes, per-layer rules, guarded operations."""
        if self._notes is None:
            return (f"{type(self).__name__}: not prepared yet (the first call canonises the "
                    "snapshot); call it on a batch first")
        lines = [f"{type(self).__name__} ({self.method})"]
        lines += [f"  canonise: {note}" for note in self._notes]
        for name, module in self._twin.named_modules():
            if next(module.children(), None) is not None:
                continue
            hook = self._composite.module_map({}, name, module)
            rule = type(hook).__name__ if hook is not None else "gradient (exact routing)"
            lines.append(f"  {name:<28} {type(module).__name__:<14} -> {rule}")
        for (where, op, rule), count in sorted(self._last_hits.items()):
            lines.append(f"  op '{op}' in '{where}' x{count} -> {rule}")
        return "\n".join(lines)


class PolarizedLRP(_Explainer):
    """Polarized-LRP explainer holding a prepared snapshot of a discriminator.

    Use it for repeated explanations (batches, a dataset): the snapshot, canonisation and the
    zennit composite are prepared once. The snapshot is taken at construction: create a new
    explainer after the model's weights change (e.g. per checkpoint).

    Parameters
    ----------
    model : torch.nn.Module
        Discriminator mapping ``(B, C, H, W)`` to ``(B,)``/``(B, 1)`` logits, or probabilities if
        it ends in a Sigmoid (module or ``torch.sigmoid``), which is then treated as pass-through.
    bias : {"include", "ignore"}
        ``include`` (the paper): ``[b]^+``/``[b]^-`` in the denominators, the input relevance
        sums to less than ``p``. ``ignore``: biases dropped, relevance is conserved.
    start : {"probability", "logit"}
        Start relevance magnitude: ``p = sigmoid(s)`` (the paper) or ``|s|``.
    engine : {"fused", "zennit"}
        ``fused`` (default, fast, hooks kept registered) or the generic zennit ``BasicHook`` rules
        (``ZPlus``/:class:`ZMinus`/:class:`ZPolar`) registered per call.
    stabilizer : float
        Magnitude of the sign-preserving denominator stabiliser (0/0 gives 0).

    Examples
    --------
    >>> explain = PolarizedLRP(discriminator)          # doctest: +SKIP
    >>> result = explain(images)                        # doctest: +SKIP
    >>> print(explain.describe())                       # doctest: +SKIP
    """

    method = "polarized_lrp"

    def __init__(self, model: nn.Module, *, bias: str = "include", start: str = "probability",
                 engine: str = "fused", stabilizer: float = _EPS) -> None:
        if bias not in ("include", "ignore"):
            raise ValueError(f"bias={bias!r}; use 'include' (the paper) or 'ignore'")
        if start not in ("probability", "logit"):
            raise ValueError(f"start={start!r}; use 'probability' (the paper) or 'logit'")
        if engine not in ("fused", "zennit"):
            raise ValueError(f"engine={engine!r}; use 'fused' or 'zennit'")
        self.bias, self.start, self.engine, self.stabilizer = bias, start, engine, stabilizer
        super().__init__(model, "polar", bias == "include", stabilizer)

    def _persistent(self) -> bool:
        return self.engine == "fused"

    def _make_composite(self, batch_polarity):
        from zennit.composites import LayerMapComposite
        from zennit.rules import Pass, ZPlus

        rules = _zennit()
        include = self.bias == "include"
        if self.engine == "fused":
            linear = rules["PolarizedEq1"](include, self.stabilizer)
            pool = rules["PolarizedPositiveLinear"](include, self.stabilizer)
            return LayerMapComposite([(ELEMENTWISE, rules["PassThrough"]()), (LINEAR, linear),
                                      (AVGPOOL, pool)])
        zero = None if include else ["bias"]
        pos = batch_polarity is None or bool((batch_polarity > 0).all())
        neg = batch_polarity is not None and bool((batch_polarity < 0).all())
        cls = ZPlus if pos else rules["ZMinus"] if neg else rules["ZPolar"]
        linear = cls(stabilizer=self.stabilizer, zero_params=zero)
        pool = rules["ZPolarPool"](stabilizer=self.stabilizer)
        return LayerMapComposite([(ELEMENTWISE, Pass()), (LINEAR, linear), (AVGPOOL, pool)])

    def __call__(self, x: Any, polarity: str = "auto") -> Attribution:
        """Explain a batch.

        Parameters
        ----------
        x : array-like
            ``(B, C, H, W)`` inputs, any sign (the first layer uses the raw pixel values).
        polarity : {"auto", "positive", "negative"}
            ``auto``: +1 where ``p >= 0.5`` else -1, per sample; or one polarity for all.

        Returns
        -------
        Attribution
            ``maps`` ``(B, C, H, W)`` non-negative; ``scores`` = ``p``; ``polarity`` = +-1;
            ``logits`` = ``s``.
        """
        if polarity not in ("auto", "positive", "negative"):
            raise ValueError(f"polarity={polarity!r}; use 'auto', 'positive' or 'negative'")

        def seed(logits, prob):
            if polarity == "auto":
                pol = torch.where(prob >= 0.5, 1, -1)
            else:
                pol = torch.full_like(logits, 1 if polarity == "positive" else -1, dtype=torch.long)
            magnitude = prob if self.start == "probability" else logits.abs()
            return pol.to(logits.dtype) * magnitude, pol

        relevance, logits, pol = self._run(x, seed)
        maps = relevance * pol.to(relevance.dtype).view(-1, *(1,) * (relevance.ndim - 1))
        params = {"polarity": polarity, "bias": self.bias, "start": self.start, "engine": self.engine}
        return Attribution(maps, logits, self.method, torch.sigmoid(logits), pol, params)


@register_method("polarized_lrp")
def polarized_lrp(model: nn.Module, x: Any, polarity: str = "auto", bias: str = "include",
                  start: str = "probability", engine: str = "fused") -> Attribution:
    """Polarized-LRP maps of a discriminator (Li et al. 2020, Eq. 1); see :class:`PolarizedLRP`.

    A thin wrapper that builds a :class:`PolarizedLRP` for one call; keep an explainer for
    repeated calls on the same weights.

    Returns
    -------
    Attribution
        ``.maps`` ``(B, C, H, W)`` non-negative, ``.scores`` ``(B,)`` probabilities,
        ``.polarity`` ``(B,)`` +-1, ``.logits`` ``(B,)``.
    """
    with PolarizedLRP(model, bias=bias, start=start, engine=engine) as explainer:
        return explainer(x, polarity=polarity)


# ----------------------------------------------------------------------------------------------
# "original LRP" baselines
# ----------------------------------------------------------------------------------------------
LRP_RULES: dict[str, Callable[[float], Any]] = {}
"""Registry ``rule name -> composite factory(epsilon)`` of the baselines (CLI choices)."""


def register_lrp_rule(name: str) -> Callable[[Callable[[float], Any]], Callable[[float], Any]]:
    """Decorator adding a zennit composite factory to :data:`LRP_RULES` under ``name``."""

    def wrap(factory: Callable[[float], Any]) -> Callable[[float], Any]:
        if name in LRP_RULES:
            raise ValueError(f"LRP rule {name!r} is already registered")
        LRP_RULES[name] = factory
        return factory

    return wrap


def _uniform(rule: Any) -> Any:
    from zennit.composites import LayerMapComposite
    from zennit.rules import Norm, Pass

    return LayerMapComposite([(ELEMENTWISE, Pass()), (AVGPOOL, Norm(stabilizer=_EPS)), (LINEAR, rule)])


@register_lrp_rule("zero")
def _rule_zero(epsilon: float) -> Any:
    """LRP-0 (Bach et al. 2015) at every linear layer (zennit ``Epsilon`` with a 1e-12 stabiliser)."""
    from zennit.rules import Epsilon

    return _uniform(Epsilon(epsilon=_EPS))


@register_lrp_rule("epsilon")
def _rule_epsilon(epsilon: float) -> Any:
    """LRP-epsilon at every linear layer (epsilon = 0.01, the LRP toolbox demo)."""
    from zennit.rules import Epsilon

    return _uniform(Epsilon(epsilon=epsilon))


@register_lrp_rule("alpha1beta0")
def _rule_alpha1beta0(epsilon: float) -> Any:
    """LRP-alpha1beta0 (z+, zennit ``ZPlus``) at every linear layer, for every sample."""
    from zennit.rules import ZPlus

    return _uniform(ZPlus(stabilizer=_EPS))


@register_lrp_rule("composite")
def _rule_composite(epsilon: float) -> Any:
    """zennit's ``EpsilonPlusFlat``: Flat at the first layer, z+ at convs, epsilon at dense layers."""
    from zennit.composites import EpsilonPlusFlat
    from zennit.rules import Flat, Pass, ZPlus

    return EpsilonPlusFlat(epsilon=epsilon, stabilizer=_EPS,
                           layer_map=[(ELEMENTWISE, Pass()), (ShiftedConv, ZPlus(stabilizer=_EPS))],
                           first_map=[(ShiftedConv, Flat(stabilizer=_EPS))])


class LRP(_Explainer):
    """"Original LRP" baseline explainer (the comparison of Li et al. 2020), on zennit.

    The start relevance is the *logit* ``s`` (pre-sigmoid score), which keeps its sign: LRP-0 and
    LRP-epsilon maps of a sample D calls fake (``s < 0``) are mostly negative. Sum nodes use
    zennit's ``Norm`` split (LRP-0), as zennit's own composites do.

    Parameters
    ----------
    model : torch.nn.Module
        As for :class:`PolarizedLRP`.
    rule : str
        A key of :data:`LRP_RULES`: ``"zero"``, ``"epsilon"``, ``"alpha1beta0"``, ``"composite"``.
    epsilon : float
        Epsilon of the epsilon rule (0.01, the LRP toolbox demo) and of ``EpsilonPlusFlat``.
    """

    def __init__(self, model: nn.Module, *, rule: str = "epsilon", epsilon: float = 0.01) -> None:
        if rule not in LRP_RULES:
            raise ValueError(f"rule={rule!r}; choose one of {sorted(LRP_RULES)}")
        self.rule, self.epsilon = rule, epsilon
        self.method = f"lrp_{rule}"
        super().__init__(model, "z", True, epsilon if rule == "epsilon" else _EPS)

    def _make_composite(self, batch_polarity):
        return LRP_RULES[self.rule](self.epsilon)

    def __call__(self, x: Any) -> Attribution:
        """Explain a batch; ``maps`` ``(B, C, H, W)`` signed, ``logits``/``scores`` per sample."""
        relevance, logits, _ = self._run(x, lambda logits, prob: (logits, None))
        return Attribution(relevance, logits, self.method, torch.sigmoid(logits),
                           params={"rule": self.rule, "epsilon": self.epsilon})


@register_method("lrp")
def lrp(model: nn.Module, x: Any, rule: str = "epsilon", epsilon: float = 0.01) -> Attribution:
    """"Original LRP" baselines: ``zero``, ``epsilon`` (0.01), ``alpha1beta0``, ``composite``.

    Start relevance = the logit. See :class:`LRP`; keep an explainer for repeated calls.
    """
    with LRP(model, rule=rule, epsilon=epsilon) as explainer:
        return explainer(x)
