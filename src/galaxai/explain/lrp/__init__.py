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

Package layout
--------------
:mod:`.layers` (layer families, :class:`ShiftedConv`, :class:`UnsupportedLayerError`),
:mod:`.autograd` (the autograd functions carrying the rules), :mod:`.guard` (the op guard),
:mod:`.rules` (zennit hooks; lazy), :mod:`.snapshot` (the explained copy), :mod:`.canonizers`
(:class:`DataflowMergeBatchNorm`, a zennit ``Canonizer``; lazy), :mod:`.explainers`
(:class:`PolarizedLRP`), :mod:`.baselines` (:class:`LRP`, :data:`LRP_RULES`). zennit imports
torchvision at import time, so :mod:`.rules` and :mod:`.canonizers` load on first use.
"""

from __future__ import annotations

from typing import Any

from galaxai.explain.lrp.layers import (
    AVGPOOL,
    ELEMENTWISE,
    LINEAR,
    ROUTING,
    ShiftedConv,
    UnsupportedLayerError,
)
from galaxai.explain.lrp.explainers import PolarizedLRP, polarized_lrp  # noqa: I001 - registration order
from galaxai.explain.lrp.baselines import LRP, LRP_RULES, lrp, register_lrp_rule

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
    "DataflowMergeBatchNorm",
]

_LAZY = {
    "PolarizedEq1": "rules",
    "PolarizedPositiveLinear": "rules",
    "PassThrough": "rules",
    "ZMinus": "rules",
    "ZPolar": "rules",
    "ZPolarPool": "rules",
    "DataflowMergeBatchNorm": "canonizers",
}


def __getattr__(name: str) -> Any:  # PEP 562: zennit-based names load on first access
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
