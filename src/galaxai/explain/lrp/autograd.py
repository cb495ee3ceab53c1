"""Autograd functions and per-layer relevance computations that carry the LRP rules.

Each function is an identity (or the layer's own output) in the forward pass and computes a
relevance rule instead of the gradient in the backward pass: Eq. 1 of Li et al. (2020) for
Linear/Conv layers (:func:`_eq1_relevance`), the positive-linear rule for average pooling,
LRP-0 for parameter-free linear maps, and the two-summand split :class:`_Sum`. Imports no zennit.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

__all__: list[str] = []  # internal: used by the guard, the rules and the explainers


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
        if not ctx.b_needs and not ctx.include_const and ctx.mode != "polar":
            # a dropped constant: ``a + c`` routes like the identity on ``a`` (also where a = 0)
            return relevance.sum_to_size(ctx.a_shape), None, None, None, None, None, None
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

