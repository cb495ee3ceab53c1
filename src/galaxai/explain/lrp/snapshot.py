"""The explained copy of a model: deep copy in eval mode with plain weights.

Spectral/weight norm parametrisations are resolved, in-place activations made out-of-place and
parameter gradients switched off, so the user's model is never modified. Imports no zennit.
"""
from __future__ import annotations

import copy

from torch import nn

__all__: list[str] = []  # internal: used by the explainers


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
