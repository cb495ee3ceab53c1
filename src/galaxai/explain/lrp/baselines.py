""""Original LRP" baselines (the comparison of Li et al. 2020), on zennit composites.

:data:`LRP_RULES` maps a rule name to a composite factory (``"zero"``, ``"epsilon"``,
``"alpha1beta0"``, ``"composite"``; :func:`register_lrp_rule` adds more); :class:`LRP` and
:func:`lrp` run them through the same snapshot, canonisation and op guard as Polarized-LRP.
zennit is imported inside the factories (it imports torchvision at import time).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from galaxai.explain.lrp.explainers import _Explainer
from galaxai.explain.lrp.layers import _EPS, AVGPOOL, ELEMENTWISE, LINEAR, ShiftedConv
from galaxai.explain.saliency import Attribution, register_method

__all__ = ["LRP", "lrp", "LRP_RULES", "register_lrp_rule"]


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
