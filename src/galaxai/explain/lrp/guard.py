"""The op guard: a ``TorchFunctionMode`` that sees operations executed in containers' forward code.

Residual additions split relevance as Eq. 1 does for a layer with unit weights, functional
activations and positive scalar scaling pass relevance through, functional average pools and
means use the positive-linear rule, reshapes route it; any other operation that carries
relevance raises :class:`~galaxai.explain.lrp.layers.UnsupportedLayerError` naming it and the
module (see the package docstring of :mod:`galaxai.explain.lrp`).
"""
from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from galaxai.explain.lrp.autograd import (
    _Pass,
    _positive_linear_relevance,
    _Relay,
    _Sum,
    _z_linear_relevance,
)
from galaxai.explain.lrp.layers import UnsupportedLayerError

__all__: list[str] = []  # internal: used by the explainers


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
    "atanh", "arctanh", "clamp", "clip",  # monotone element-wise maps (the deblender's output skip)
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

