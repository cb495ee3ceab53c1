"""Gradient-based attribution: input gradient, SmoothGrad, integrated gradients and Grad-CAM.

Every method follows one calling convention, ``method(model, x, **kw) -> Attribution``, and is
listed in :data:`METHODS` (filled by :func:`register_method`) so that command-line choices come
from the same registry as the library. The model is any ``torch.nn.Module``; it is run in eval
mode (its own training flags are restored afterwards) and no parameter gradient is accumulated.

Which score is explained
------------------------
For a single-output model (a GAN discriminator, output ``(B,)`` or ``(B, 1)``) the score is the
output itself. If the model ends in an ``nn.Sigmoid`` module, the *pre-sigmoid logit* (the input of
that module) is explained instead, as in the SmoothGrad procedure of Bhambra et al. (2022). For a
multi-output classifier pass ``target`` = the output index (an int, or one index per sample).

References
----------
Simonyan, Vedaldi & Zisserman (2014), "Deep inside convolutional networks", arXiv:1312.6034.
Smilkov et al. (2017), "SmoothGrad: removing noise by adding noise", arXiv:1706.03825.
Sundararajan, Taly & Yan (2017), "Axiomatic attribution for deep networks", ICML, arXiv:1703.01365.
Selvaraju et al. (2017), "Grad-CAM: visual explanations from deep networks via gradient-based
localization", ICCV, arXiv:1610.02391.
Bhambra, Joachimi & Lahav (2022), MNRAS 511, 5032, arXiv:2110.08288 (SmoothGrad as used for bars).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Attribution",
    "METHODS",
    "register_method",
    "input_gradient",
    "smoothgrad",
    "smoothgrad_noise",
    "integrated_gradients",
    "grad_cam",
    "as_input",
    "eval_mode",
    "forward_logits",
]


@dataclass(frozen=True)
class Attribution:
    """Relevance maps of a batch and the scores they explain.

    Attributes
    ----------
    maps : torch.Tensor
        ``(B, C, H, W)`` per-pixel relevance, or ``(B, H, W)`` for methods that reduce channels
        (SmoothGrad with ``channel_reduce``, Grad-CAM). Detached, on the model's device.
    logits : torch.Tensor
        ``(B,)`` the explained score before any sigmoid.
    method : str
        Registry name of the method that produced the maps.
    scores : torch.Tensor or None
        ``(B,)`` ``sigmoid(logits)``: the discriminator's probability that the input is real.
    polarity : torch.Tensor or None
        ``(B,)`` +1 / -1 per sample for Polarized-LRP (positive map = "why real", negative map =
        "why generated"); ``None`` for unpolarised methods.
    params : Mapping
        The method's parameters, for provenance.
    """

    maps: torch.Tensor
    logits: torch.Tensor
    method: str
    scores: torch.Tensor | None = None
    polarity: torch.Tensor | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def signed(self) -> torch.Tensor:
        """Maps multiplied by their polarity (negative maps become <= 0), for diverging colour maps."""
        if self.polarity is None:
            return self.maps
        shape = (-1,) + (1,) * (self.maps.ndim - 1)
        return self.maps * self.polarity.to(self.maps.dtype).view(shape)


METHODS: dict[str, Callable[..., Attribution]] = {}
"""Registry ``name -> method(model, x, **kw)`` of every attribution method (CLI choices)."""


def register_method(name: str) -> Callable[[Callable[..., Attribution]], Callable[..., Attribution]]:
    """Decorator adding an attribution function to :data:`METHODS` under ``name``."""

    def wrap(fn: Callable[..., Attribution]) -> Callable[..., Attribution]:
        if name in METHODS:
            raise ValueError(f"attribution method {name!r} is already registered")
        METHODS[name] = fn
        return fn

    return wrap


# ----------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------
def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def as_input(model: nn.Module, x: Any, *, name: str = "x") -> torch.Tensor:
    """Check and convert an image batch to a float tensor on the model's device.

    Raises a ``ValueError`` naming the argument for a wrong rank or non-finite values.
    """
    device, dtype = _model_device_dtype(model)
    tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if tensor.ndim < 2:
        raise ValueError(f"{name} must be a batch (B, C, H, W); got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point image batch; got dtype {tensor.dtype}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values; clean or mask them first")
    return tensor.detach().to(device=device, dtype=dtype)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore every submodule's own training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def _final_sigmoid(model: nn.Module) -> nn.Sigmoid | None:
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    return leaves[-1] if leaves and isinstance(leaves[-1], nn.Sigmoid) else None


def forward_logits(model: nn.Module, x: torch.Tensor, target: Any = None) -> torch.Tensor:
    """Run ``model`` on ``x`` and return the explained score per sample, shape ``(B,)``.

    The score is the output for single-output models, the input of a final ``nn.Sigmoid`` module
    if the model ends in one (the logit), and output ``target`` for multi-output models.
    """
    sigmoid = _final_sigmoid(model)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = None
    if sigmoid is not None:
        handle = sigmoid.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    try:
        out = model(x)
    finally:
        if handle is not None:
            handle.remove()
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model must return a tensor; got {type(out).__name__}")
    batch = x.shape[0]
    if seen and seen[-1][1].numel() == out.numel() and torch.equal(seen[-1][1].reshape(-1), out.reshape(-1)):
        out = seen[-1][0]
    out = out.reshape(batch, -1)
    if target is None:
        if out.shape[1] != 1:
            raise ValueError(
                f"the model has {out.shape[1]} outputs per sample; pass target=<output index>"
            )
        return out[:, 0]
    index = torch.as_tensor(target, device=out.device).long().reshape(-1)
    if index.numel() == 1:
        index = index.expand(batch)
    if index.numel() != batch or index.min() < 0 or index.max() >= out.shape[1]:
        raise ValueError(f"target={target!r} does not index the model's {out.shape[1]} outputs")
    return out.gather(1, index[:, None])[:, 0]


def _gradient(model: nn.Module, x: torch.Tensor, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(d score / d x, score) for every sample; exact per sample in eval mode."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = forward_logits(model, xg, target)
        (grad,) = torch.autograd.grad(logits.sum(), xg)
    return grad, logits.detach()


# ----------------------------------------------------------------------------------------------
# input gradient
# ----------------------------------------------------------------------------------------------
@register_method("input_gradient")
def input_gradient(model: nn.Module, x: Any, target: Any = None) -> Attribution:
    """Plain input gradient ``d s / d x`` (Simonyan et al. 2014), signed, shape ``(B, C, H, W)``.

    Parameters
    ----------
    model : torch.nn.Module
        Any differentiable model.
    x : array-like
        ``(B, C, H, W)`` input batch.
    target : int or sequence of int, optional
        Output index for multi-output models.

    Returns
    -------
    Attribution
        ``maps`` is the signed gradient of the logit.
    """
    x = as_input(model, x)
    with eval_mode(model):
        grad, logits = _gradient(model, x, target)
    return Attribution(grad, logits, "input_gradient", torch.sigmoid(logits), params={"target": target})


# ----------------------------------------------------------------------------------------------
# SmoothGrad
# ----------------------------------------------------------------------------------------------
_AGGREGATES = ("abs_mean", "signed_mean", "square_mean", "var")
_CHANNEL_REDUCE = ("max", "sum", "mean", None)
_NORMALISE = ("minmax", "p99", None)


def smoothgrad_noise(
    count: int,
    shape: Sequence[int],
    seed: int = 0,
    *,
    start: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard-normal draws ``eps_i``, ``i = start .. start+count-1``, used by :func:`smoothgrad`.

    Draw ``i`` comes from its own generator seeded with ``SeedSequence([seed, i])``, so the noise
    does not depend on the chunk size, and every image of a batch sees the same draws (scaled by
    its own sigma): an image's map does not depend on the batch it is explained in.
    """
    draws = []
    for i in range(start, start + count):
        state = int(np.random.SeedSequence([seed, i]).generate_state(1, dtype=np.uint64)[0] >> 1)
        gen = torch.Generator().manual_seed(state)
        draws.append(torch.randn(tuple(shape), generator=gen, dtype=dtype))
    return torch.stack(draws)


def _normalise(maps: torch.Tensor, how: str | None) -> torch.Tensor:
    if how is None:
        return maps
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1).values
    high = flat.max(dim=1).values if how == "minmax" else torch.quantile(flat, 0.99, dim=1)
    span = (high - low).clamp_min(torch.finfo(maps.dtype).tiny)
    shape = (-1,) + (1,) * (maps.ndim - 1)
    out = (maps - low.view(shape)) / span.view(shape)
    return out.clamp(max=1.0) if how == "p99" else out


@register_method("smoothgrad")
def smoothgrad(
    model: nn.Module,
    x: Any,
    target: Any = None,
    n: int = 256,
    noise: float = 0.1,
    chunk: int = 64,
    aggregate: str = "abs_mean",
    channel_reduce: str | None = "max",
    normalise: str | None = "minmax",
    seed: int = 0,
) -> Attribution:
    """SmoothGrad exactly as Bhambra et al. (2022) computed it (specs/smoothgrad_barlength.md §2).

    ``M = minmax( max_c (1/N) sum_i |d s(x + eps_i) / d x_c| )`` with ``eps_i ~ N(0, sigma^2)``
    i.i.d. per pixel and channel, ``sigma = noise * (max x - min x)`` over all pixels and channels
    of each clean input, and no clipping of the noisy input (Smilkov et al. 2017).

    Parameters
    ----------
    model : torch.nn.Module
        Classifier or discriminator; run in eval mode.
    x : array-like
        ``(B, C, H, W)`` clean inputs.
    target : int or sequence of int, optional
        Output index (multi-output models); the pre-sigmoid logit is differentiated.
    n : int
        Number of noisy samples per image (256 in the paper).
    noise : float
        ``S``, the noise level relative to each image's value range (0.1 in the paper).
    chunk : int
        Noisy copies per forward/backward pass; bounds memory. Results do not depend on it.
    aggregate : {"abs_mean", "signed_mean", "square_mean", "var"}
        ``abs_mean`` (the paper), signed mean (zennit's SmoothGrad), mean of squares (SmoothGrad²)
        or variance (VarGrad).
    channel_reduce : {"max", "sum", "mean", None}
        Reduction over colour channels; ``None`` keeps them.
    normalise : {"minmax", "p99", None}
        Per-image min-max to [0, 1] (the paper), or min to 99th percentile (clipped at 1).
    seed : int
        Seed of the noise draws (see :func:`smoothgrad_noise`).

    Returns
    -------
    Attribution
        ``maps`` of shape ``(B, H, W)`` when ``channel_reduce`` is set, else ``(B, C, H, W)``;
        ``logits`` are the clean inputs' scores.
    """
    if aggregate not in _AGGREGATES:
        raise ValueError(f"aggregate={aggregate!r}; choose one of {_AGGREGATES}")
    if channel_reduce not in _CHANNEL_REDUCE:
        raise ValueError(f"channel_reduce={channel_reduce!r}; choose one of {_CHANNEL_REDUCE}")
    if normalise not in _NORMALISE:
        raise ValueError(f"normalise={normalise!r}; choose one of {_NORMALISE}")
    if n < 1 or chunk < 1:
        raise ValueError(f"n and chunk must be positive; got n={n}, chunk={chunk}")
    x = as_input(model, x)
    batch = x.shape[0]
    sigma = noise * (x.reshape(batch, -1).amax(1) - x.reshape(batch, -1).amin(1))
    targets = torch.as_tensor(target).reshape(-1).expand(batch) if target is not None else None
    first = torch.zeros_like(x, dtype=torch.float64)
    second = torch.zeros_like(x, dtype=torch.float64)
    with eval_mode(model):
        logits = forward_logits(model, x, target).detach()
        for start in range(0, n, chunk):
            count = min(chunk, n - start)
            eps = smoothgrad_noise(count, x.shape[1:], seed, start=start, dtype=x.dtype).to(x.device)
            for b in range(batch):
                noisy = x[b : b + 1] + sigma[b] * eps
                tgt = None if targets is None else targets[b]
                grad, _ = _gradient(model, noisy, tgt)
                grad = grad.double()
                if aggregate == "abs_mean":
                    first[b] += grad.abs().sum(0)
                else:
                    first[b] += grad.sum(0)
                    second[b] += grad.square().sum(0)
    mean = first / n
    if aggregate == "square_mean":
        maps = second / n
    elif aggregate == "var":
        maps = (second / n - mean.square()).clamp_min(0)
    else:
        maps = mean
    maps = maps.to(x.dtype)
    if channel_reduce == "max":
        maps = maps.amax(1)
    elif channel_reduce == "sum":
        maps = maps.sum(1)
    elif channel_reduce == "mean":
        maps = maps.mean(1)
    params = dict(target=target, n=n, noise=noise, chunk=chunk, aggregate=aggregate,
                  channel_reduce=channel_reduce, normalise=normalise, seed=seed)
    return Attribution(_normalise(maps, normalise), logits, "smoothgrad", torch.sigmoid(logits),
                       params=params)


# ----------------------------------------------------------------------------------------------
# integrated gradients
# ----------------------------------------------------------------------------------------------
@register_method("integrated_gradients")
def integrated_gradients(
    model: nn.Module,
    x: Any,
    target: Any = None,
    baseline: str | torch.Tensor = "sky",
    steps: int = 32,
    chunk: int = 64,
    seed: int = 0,
) -> Attribution:
    """Integrated gradients (Sundararajan et al. 2017) with the trapezoidal rule.

    ``IG = (x - x0) * mean_k w_k dS(x0 + a_k (x - x0))/dx`` on ``steps + 1`` equally spaced
    ``a_k`` in [0, 1] with trapezoid weights; the sum of the map approaches ``S(x) - S(x0)``
    (completeness) as ``steps`` grows.

    Parameters
    ----------
    model, x, target
        As for :func:`input_gradient`.
    baseline : {"sky", "zeros"} or tensor
        ``"sky"``: sky-like noise with each image's border statistics
        (:func:`galaxai.explain.faithfulness.sky_like`, seeded); ``"zeros"``; or an explicit
        tensor broadcastable to ``x``.
    steps : int
        Number of integration intervals.
    chunk : int
        Interpolated inputs per forward/backward pass.
    seed : int
        Seed of the sky-like baseline.

    Returns
    -------
    Attribution
        ``maps`` ``(B, C, H, W)``; ``params["delta"]`` holds the completeness error per sample.
    """
    from galaxai.explain.faithfulness import sky_like

    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    x = as_input(model, x)
    if isinstance(baseline, str):
        if baseline not in ("sky", "zeros"):
            raise ValueError(f"baseline={baseline!r}; use 'sky', 'zeros' or a tensor")
        x0 = sky_like(x, seed=seed) if baseline == "sky" else torch.zeros_like(x)
    else:
        x0 = as_input(model, baseline, name="baseline").expand_as(x)
    alphas = torch.linspace(0, 1, steps + 1, dtype=x.dtype, device=x.device)
    weights = torch.full_like(alphas, 1.0 / steps)
    weights[0] = weights[-1] = 0.5 / steps
    total = torch.zeros_like(x)
    with eval_mode(model):
        logits = forward_logits(model, x, target).detach()
        base_logits = forward_logits(model, x0, target).detach()
        for b in range(x.shape[0]):
            tgt = None if target is None else torch.as_tensor(target).reshape(-1).expand(x.shape[0])[b]
            for start in range(0, steps + 1, chunk):
                a = alphas[start : start + chunk].view(-1, *(1,) * (x.ndim - 1))
                w = weights[start : start + chunk].view_as(a)
                path = x0[b : b + 1] + a * (x[b : b + 1] - x0[b : b + 1])
                grad, _ = _gradient(model, path, tgt)
                total[b] += (w * grad).sum(0)
    maps = (x - x0) * total
    delta = maps.reshape(x.shape[0], -1).sum(1) - (logits - base_logits)
    return Attribution(maps, logits, "integrated_gradients", torch.sigmoid(logits),
                       params={"target": target, "baseline": baseline if isinstance(baseline, str)
                               else "tensor", "steps": steps, "seed": seed, "delta": delta})


# ----------------------------------------------------------------------------------------------
# Grad-CAM
# ----------------------------------------------------------------------------------------------
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@register_method("grad_cam")
def grad_cam(
    model: nn.Module,
    x: Any,
    target: Any = None,
    layer: str | None = None,
    upsample: bool = True,
) -> Attribution:
    """Grad-CAM (Selvaraju et al. 2017) on a convolutional layer's output.

    ``cam = ReLU( sum_k alpha_k A_k )`` with ``alpha_k`` the spatial mean of ``dS/dA_k``.

    Parameters
    ----------
    model, x, target
        As for :func:`input_gradient`.
    layer : str, optional
        Name (as in ``model.named_modules()``) of the layer whose output is used. Default: the
        last convolution *executed* in the forward pass.
    upsample : bool
        Bilinearly resize the map to the input size (default) or keep the layer's resolution.

    Returns
    -------
    Attribution
        ``maps`` ``(B, H, W)``, non-negative; ``params["layer"]`` names the layer used.
    """
    x = as_input(model, x)
    modules = dict(model.named_modules())
    if layer is not None and layer not in modules:
        raise ValueError(f"layer={layer!r} is not a module of the model; see model.named_modules()")
    watched = {layer: modules[layer]} if layer is not None else {
        name: m for name, m in modules.items() if isinstance(m, _CONV)}
    if not watched:
        raise ValueError("the model has no convolution layer; pass layer=<name> for Grad-CAM")
    outputs: list[tuple[str, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda mod, i, o, name=name: outputs.append((name, o)))
               for name, m in watched.items()]
    xg = x.detach().requires_grad_(True)
    try:
        with eval_mode(model), torch.enable_grad():
            logits = forward_logits(model, xg, target)
            if not outputs:
                raise ValueError("the chosen Grad-CAM layer was not executed in the forward pass")
            name, act = outputs[-1]
            (grad,) = torch.autograd.grad(logits.sum(), act)
    finally:
        for h in handles:
            h.remove()
    alpha = grad.mean(dim=tuple(range(2, grad.ndim)), keepdim=True)
    cam = F.relu((alpha * act).sum(1)).detach()
    if upsample and cam.ndim == 3:
        cam = F.interpolate(cam[:, None], size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    return Attribution(cam, logits.detach(), "grad_cam", torch.sigmoid(logits.detach()),
                       params={"target": target, "layer": name, "upsample": upsample})
