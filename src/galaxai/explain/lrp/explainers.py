"""The explainers: :class:`PolarizedLRP` / :func:`polarized_lrp` and their shared machinery.

:class:`_Explainer` takes the snapshot, canonises it (:mod:`.canonizers`), registers the zennit
rules (:mod:`.rules`) and runs the explained forward/backward pass under the op guard
(:mod:`.guard`). The "original LRP" baselines built on it are in :mod:`.baselines`.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from galaxai.explain.lrp.guard import _Guard
from galaxai.explain.lrp.layers import (
    _BATCHNORM,
    _EPS,
    AVGPOOL,
    ELEMENTWISE,
    LINEAR,
    ROUTING,
    UnsupportedLayerError,
)
from galaxai.explain.lrp.snapshot import _snapshot
from galaxai.explain.saliency import Attribution, as_input, register_method

__all__ = ["PolarizedLRP", "polarized_lrp"]


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
        from galaxai.explain.lrp.canonizers import _canonise  # imports zennit

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

        from galaxai.explain.lrp.rules import (
            PassThrough,
            PolarizedEq1,
            PolarizedPositiveLinear,
            ZMinus,
            ZPolar,
            ZPolarPool,
        )

        include = self.bias == "include"
        if self.engine == "fused":
            linear = PolarizedEq1(include, self.stabilizer)
            pool = PolarizedPositiveLinear(include, self.stabilizer)
            return LayerMapComposite([(ELEMENTWISE, PassThrough()), (LINEAR, linear),
                                      (AVGPOOL, pool)])
        zero = None if include else ["bias"]
        pos = batch_polarity is None or bool((batch_polarity > 0).all())
        neg = batch_polarity is not None and bool((batch_polarity < 0).all())
        cls = ZPlus if pos else ZMinus if neg else ZPolar
        linear = cls(stabilizer=self.stabilizer, zero_params=zero)
        pool = ZPolarPool(stabilizer=self.stabilizer)
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
