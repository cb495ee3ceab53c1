"""BatchNorm canonisation as a zennit :class:`~zennit.canonizers.Canonizer`.

:class:`DataflowMergeBatchNorm` merges every BatchNorm into a neighbouring Conv/Linear layer,
exactly, reading the data flow from one recorded forward pass (not from registration order, as
zennit's ``SequentialMergeBatchNorm`` does): a BN right after a linear layer is folded into it
(zennit's merge), a BN after an activation into the *next* linear layer (a :class:`ShiftedConv`
for convolutions, so zero-padded borders stay exact). The explainers apply it once to their
snapshot; as a zennit canonizer it can also be passed to any zennit composite
(``canonizers=[DataflowMergeBatchNorm(probe)]``), whose ``remove()`` reverts the merge.

zennit imports torchvision at import time: this module is imported on first use.
"""
from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable

import torch
from torch import nn
from zennit.canonizers import Canonizer

from galaxai.explain.lrp.layers import (
    _BATCHNORM,
    _CONVS,
    _TRANSPARENT,
    AVGPOOL,
    ShiftedConv,
    UnsupportedLayerError,
)

__all__ = ["DataflowMergeBatchNorm"]


def _replace(root: nn.Module, target: nn.Module, new: nn.Module,
             undo: list[Callable[[], None]] | None = None) -> None:
    for parent in root.modules():
        for key, child in parent._modules.items():
            if child is target:
                parent._modules[key] = new
                if undo is not None:
                    undo.append(functools.partial(parent._modules.__setitem__, key, child))


def _restore(module: nn.Module, weight: torch.Tensor, bias: nn.Parameter | None) -> None:
    module.weight.data = weight
    module.bias = bias


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


def _merge(twin: nn.Module, probe: torch.Tensor, undo: list[Callable[[], None]]) -> list[str]:
    """Merge every BatchNorm into a neighbouring linear layer; return human-readable notes.

    Data flow is read from one recorded forward pass (which module consumed which tensor), not
    from registration order. A BN whose input comes straight from a Conv/Linear is merged into it
    (zennit's ``SequentialMergeBatchNorm`` merge, applied to the snapshot); a BN after an
    activation (conv -> LeakyReLU -> BN) is merged into the *next* Conv/Linear, through any
    Flatten/Dropout (and unpadded average pooling, or max pooling when every BN scale is
    positive) in between, exactly (see :class:`ShiftedConv`). The snapshot's output is then
    compared with the output before merging. Every change appends its inverse to ``undo``.
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
            undo.append(functools.partial(_restore, before, before.weight.data, before.bias))
            before.weight.data = before.weight.data * scale.view(shape)
            old_bias = before.bias.data if before.bias is not None else 0.0
            before.bias = nn.Parameter(old_bias * scale + shift, requires_grad=False)
            _replace(twin, bn, nn.Identity(), undo)
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
            undo.append(functools.partial(_restore, target, target.weight.data, target.bias))
            old_bias = target.bias.data if target.bias is not None else 0.0
            target.bias = nn.Parameter(old_bias + target.weight.data @ c, requires_grad=False)
            target.weight.data = target.weight.data * a
        else:
            _replace(twin, target, ShiftedConv(target, scale, shift), undo)
        _replace(twin, bn, nn.Identity(), undo)
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


class DataflowMergeBatchNorm(Canonizer):
    """zennit canonizer merging every BatchNorm into a neighbouring linear layer, by data flow.

    Parameters
    ----------
    probe : torch.Tensor
        An input batch (one sample suffices) for the model the canonizer is applied to: its
        forward pass reveals which module consumes which tensor, and the merged model's output on
        it is checked against the original (:class:`UnsupportedLayerError` if they differ).

    Attributes
    ----------
    notes : list of str
        After :meth:`register`, one human-readable line per merge (``PolarizedLRP.describe``).

    Examples
    --------
    >>> from zennit.composites import EpsilonPlusFlat        # doctest: +SKIP
    >>> composite = EpsilonPlusFlat(canonizers=[DataflowMergeBatchNorm(x[:1])])  # doctest: +SKIP
    """

    def __init__(self, probe: torch.Tensor | None = None) -> None:
        super().__init__()
        self.probe = probe
        self.notes: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def copy(self) -> DataflowMergeBatchNorm:  # noqa: D102
        return type(self)(self.probe)

    def apply(self, root_module: nn.Module) -> list[DataflowMergeBatchNorm]:
        """Merge the BatchNorms of ``root_module`` in place; return the one applied instance."""
        instance = self.copy()
        instance.register(root_module)
        return [instance]

    def register(self, root_module: nn.Module) -> None:
        """Merge the BatchNorms of ``root_module`` in place and keep what :meth:`remove` needs."""
        if self.probe is None:
            raise ValueError("DataflowMergeBatchNorm(probe=...) needs an input batch for the model "
                             "(one sample suffices) to read the data flow from")
        self.notes = _merge(root_module, self.probe, self._undo)

    def remove(self) -> None:
        """Undo the merge: original modules, weights and biases back in place."""
        while self._undo:
            self._undo.pop()()
        self.notes = []


def _canonise(twin: nn.Module, probe: torch.Tensor) -> list[str]:
    """Apply :class:`DataflowMergeBatchNorm` to the snapshot ``twin``; return its notes."""
    (instance,) = DataflowMergeBatchNorm(probe).apply(twin)
    return instance.notes
