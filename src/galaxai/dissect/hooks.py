"""Reading and rewriting a network's featuremaps through forward hooks.

One primitive does every intervention of GAN Dissection (Bau et al. 2019, ``nethook.py``): at a
named layer with featuremap ``r`` of shape ``(B, d, h, w)``,

    r′ = r ⊙ (1 − a) + a ⊙ v,

with ``a ∈ [0, 1]`` non-zero only on the chosen units (and region) and ``v`` broadcastable to
``r`` (``v = 0`` when omitted). Ablation is ``a = 1, v = 0``; insertion ``a = 1, v = k``; the
relaxed form of the α optimisation ``a = α``. Interventions are plain data (:class:`Intervention`,
JSON ``{layer, units, mode, alpha, value, mask}``) shared by the API, the CLI and the tests;
several at one layer compose by alpha blending in the order given.

Layers are named as in ``model.named_modules()``; for the deblender generator the spec's names
(``head``, ``root.k``, ``trunk``, ``branch1.k``, ``branch2.k``) are accepted as aliases.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MODES",
    "Intervention",
    "deblender_layers",
    "resolve_layer",
    "load_interventions",
    "save_interventions",
    "rewrite",
    "intervene",
    "record",
]

#: Intervention modes: ``ablate`` (v = 0), ``insert`` (v = value), ``blend`` (a = alpha, v = value or 0).
MODES = ("ablate", "insert", "blend")


def deblender_layers(generator: nn.Module) -> dict[str, str]:
    """The spec's layer names of a deblender generator mapped to its module names.

    ``head`` (after the first PReLU), ``root.k`` (shared residual blocks), ``trunk`` (after the long
    skip), ``branch1.k`` / ``branch2.k`` (each branch's residual blocks). Empty for other models.
    """
    if not all(hasattr(generator, n) for n in ("head", "shared", "trunk_out", "branches")):
        return {}
    names = {"head": "head"}
    names.update({f"root.{k}": f"shared.{k}" for k in range(len(generator.shared))})
    names["trunk"] = "trunk_out"
    for b, branch in enumerate(generator.branches):
        names.update({f"branch{b + 1}.{k}": f"branches.{b}.blocks.{k}"
                      for k in range(len(branch.blocks))})
    return names


def resolve_layer(model: nn.Module, layer: str) -> nn.Module:
    """The module called ``layer`` (a ``named_modules`` name or a deblender alias).

    Raises
    ------
    KeyError
        Naming the unknown layer and the available ones.
    """
    modules = dict(model.named_modules())
    name = deblender_layers(model).get(layer, layer)
    if name not in modules or not name:
        aliases = list(deblender_layers(model)) or [n for n in modules if n][:40]
        raise KeyError(f"layer {layer!r} is not in {type(model).__name__}; choose one of "
                       f"{aliases}")
    return modules[name]


@dataclass(frozen=True)
class Intervention:
    """One rewrite ``r′ = r ⊙ (1 − a) + a ⊙ v`` of some units of one layer.

    Parameters
    ----------
    layer : str
        Layer name (see :func:`resolve_layer`).
    units : tuple of int
        Channels to change.
    mode : {"ablate", "insert", "blend"}
        ``ablate``: ``v = 0`` (``value`` must be omitted); ``insert``: ``v = value`` (required);
        ``blend``: ``v = value`` or 0 — with fractional ``alpha``, the relaxed form.
    alpha : float or tuple of float
        ``a`` on the chosen units: one value or one per unit, each in [0, 1].
    value : float or tuple of float, optional
        ``v`` on the chosen units: one value or one per unit (e.g. ``k_u``).
    mask : nested list of float, optional
        Region ``P`` in [0, 1], ``(H, W)`` at any resolution; max-pooled (or resampled) to the
        featuremap's. Omitted: the whole featuremap.
    """

    layer: str
    units: tuple[int, ...]
    mode: str = "ablate"
    alpha: float | tuple[float, ...] = 1.0
    value: float | tuple[float, ...] | None = None
    mask: tuple | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", tuple(int(u) for u in self.units))
        for name in ("alpha", "value"):
            v = getattr(self, name)
            if isinstance(v, (list, tuple)):
                object.__setattr__(self, name, tuple(float(x) for x in v))
                if len(v) != len(self.units):
                    raise ValueError(f"intervention {name} has {len(v)} entries for "
                                     f"{len(self.units)} units; give one value or one per unit")
        if self.mode not in MODES:
            raise ValueError(f"intervention mode {self.mode!r} is not one of {MODES}")
        if not self.units:
            raise ValueError(f"intervention at {self.layer!r} names no units")
        if min(self.units) < 0:
            raise ValueError(f"intervention units must be ≥ 0, got {self.units}")
        alphas = self.alpha if isinstance(self.alpha, tuple) else (float(self.alpha),)
        if any(not 0.0 <= a <= 1.0 for a in alphas):
            raise ValueError(f"intervention alpha must lie in [0, 1], got {self.alpha}")
        if self.mode == "ablate" and self.value is not None:
            raise ValueError("an 'ablate' intervention sets v = 0: omit value, or use mode "
                             "'insert' or 'blend'")
        if self.mode == "insert" and self.value is None:
            raise ValueError("an 'insert' intervention needs value (one number or one per unit)")
        if self.mask is not None:
            object.__setattr__(self, "mask", _as_tuple(self.mask))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Intervention":
        """Build from the JSON form; unknown or missing keys raise a ``ValueError`` naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"an intervention must be a JSON object, got {type(data).__name__}")
        known = {"layer", "units", "mode", "alpha", "value", "mask"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown intervention key(s) {unknown}; allowed: {sorted(known)}")
        missing = sorted({"layer", "units"} - set(data))
        if missing:
            raise ValueError(f"intervention is missing {missing}")
        units = data["units"]
        return cls(**{**data, "units": tuple(units) if isinstance(units, list) else (units,)})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (lists, not tuples)."""
        return json.loads(json.dumps(asdict(self)))

    def gate(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``a`` and ``v`` broadcastable to ``r`` (``(B, d, h, w)``)."""
        d = r.shape[1]
        if max(self.units) >= d:
            raise ValueError(f"layer {self.layer!r} has {d} units; intervention names unit "
                             f"{max(self.units)}")
        idx = torch.tensor(self.units, device=r.device)
        a = torch.zeros(d, dtype=r.dtype, device=r.device)
        a[idx] = torch.as_tensor(self.alpha, dtype=r.dtype, device=r.device)
        a = a.view(1, d, *([1] * (r.ndim - 2)))
        if self.mask is not None and r.ndim == 4:
            a = a * _region(self.mask, r.shape[-2:], r)
        v = torch.zeros(d, dtype=r.dtype, device=r.device)
        if self.value is not None:
            v[idx] = torch.as_tensor(self.value, dtype=r.dtype, device=r.device)
        return a, v.view(1, d, *([1] * (r.ndim - 2)))


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else float(x)


def _region(mask, size: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """Region ``P`` at featuremap resolution: max-pooled down, nearest up, values in [0, 1]."""
    m = torch.as_tensor(mask, dtype=like.dtype, device=like.device)
    if m.ndim != 2 or not bool(((m >= 0) & (m <= 1)).all()):
        raise ValueError(f"intervention mask must be a 2-D array in [0, 1], got shape "
                         f"{tuple(m.shape)}")
    m = m[None, None]
    if tuple(m.shape[-2:]) != tuple(size):
        if m.shape[-2] >= size[0] and m.shape[-1] >= size[1]:
            m = F.adaptive_max_pool2d(m, tuple(size))
        else:
            m = F.interpolate(m, size=tuple(size), mode="nearest")
    return m


def load_interventions(path: str | os.PathLike) -> list[Intervention]:
    """Interventions from a JSON file: one object or a list of objects."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read interventions ({exc}); write a JSON object "
                         "{\"layer\": ..., \"units\": [...], \"mode\": \"ablate\"} or a list of them"
                         ) from exc
    items = data if isinstance(data, list) else [data]
    try:
        return [Intervention.from_dict(d) for d in items]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def save_interventions(interventions: Sequence[Intervention], path: str | os.PathLike) -> Path:
    """Write interventions as a JSON list (atomically)."""
    from galaxai._atomic import atomic_write_json

    return atomic_write_json(Path(path), [i.to_dict() for i in interventions])


def rewrite(r: torch.Tensor, a: torch.Tensor, v: torch.Tensor | float | None = None
            ) -> torch.Tensor:
    """The intervention primitive ``r ⊙ (1 − a) + a ⊙ v`` (``v`` omitted: 0)."""
    return r * (1 - a) + a * (0.0 if v is None else v)


def _output_tensor(out: Any) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"can only dissect layers that return one tensor, got {type(out).__name__}")
    return out


@contextlib.contextmanager
def intervene(model: nn.Module, interventions: Sequence[Intervention] | Intervention
              ) -> Iterator[nn.Module]:
    """Apply interventions inside a ``with`` block (forward hooks, removed on exit).

    Examples
    --------
    >>> with intervene(g, Intervention("root.0", units=(3, 7))):
    ...     a, b = g(blends)
    """
    if isinstance(interventions, Intervention):
        interventions = [interventions]
    by_layer: dict[str, list[Intervention]] = {}
    for item in interventions:
        by_layer.setdefault(item.layer, []).append(item)
    handles = []
    try:
        for layer, items in by_layer.items():
            module = resolve_layer(model, layer)

            def hook(_module, _inputs, out, items=items):
                r = _output_tensor(out)
                for item in items:
                    r = rewrite(r, *item.gate(r))
                return r

            # prepend: a recording hook on the same layer sees the rewritten featuremap
            handles.append(module.register_forward_hook(hook, prepend=True))
        yield model
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def record(model: nn.Module, layers: Sequence[str], *, detach: bool = True
           ) -> Iterator[dict[str, torch.Tensor]]:
    """Record the featuremaps of ``layers`` on every forward inside the block.

    Yields a dict filled on each forward pass (the last pass wins): layer name → ``(B, d, h, w)``.
    """
    seen: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for layer in layers:
            module = resolve_layer(model, layer)

            def hook(_module, _inputs, out, layer=layer):
                r = _output_tensor(out)
                seen[layer] = r.detach() if detach else r

            handles.append(module.register_forward_hook(hook))
        yield seen
    finally:
        for h in handles:
            h.remove()
