"""Test helpers for galaxai.explain: small discriminators and an independent Eq. 1 reference.

The reference is written from Eq. 1 of Li et al. (2020) (specs/polarized_lrp.md), not from the
implementation: every connection's contribution ``z_ij = x_i w_ij`` is materialised explicitly
(``torch.nn.functional.unfold`` for convolutions, an outer product for dense layers), clamped by
sign, normalised by its neuron's denominator (with ``[b]^+``/``[b]^-``) and summed back; 0/0 is 0.
It runs sample by sample in float64 on ``nn.Sequential`` models of Conv2d, Linear, BatchNorm2d
(after a conv, or after an activation: then folded into the next layer with a position-dependent
bias, which is what the padded convolution really computes), element-wise activations, Flatten,
MaxPool2d (winner-take-all) and AvgPool2d (positive weights).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SiLU, nn.PReLU)


def _randomise_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(c, generator=gen) * 0.5 + 1.0)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.3)


def centre_logits(model: nn.Module, x: torch.Tensor, last: nn.Linear | nn.Conv2d) -> None:
    """Shift the last layer's bias so the batch's logits straddle 0 (a mixed real/fake batch)."""
    with torch.no_grad():
        out = model(x).reshape(-1)
        last.bias -= out.median()
        if out.numel() > 1 and (out - out.median()).abs().max() == 0:
            raise AssertionError("degenerate logits")


def small_cnn(order: str = "conv-bn-act", seed: int = 0, channels: int = 3, size: int = 8,
              pool: str | None = None) -> nn.Sequential:
    """conv -> LeakyReLU, a BN block in ``order``, optional pooling, dense -> LeakyReLU -> dense."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    conv2 = nn.Conv2d(4, 5, 3, stride=2, padding=1)
    bn, act = nn.BatchNorm2d(5), nn.LeakyReLU(0.2)
    block = [conv2, bn, act] if order == "conv-bn-act" else [conv2, act, bn]
    layers = [nn.Conv2d(channels, 4, 3, padding=1), nn.LeakyReLU(0.2), *block]
    spatial = size // 2
    if pool == "max":
        layers.append(nn.MaxPool2d(2))
        spatial //= 2
    elif pool == "avg":
        layers.append(nn.AvgPool2d(2))
        spatial //= 2
    layers += [nn.Flatten(), nn.Linear(5 * spatial * spatial, 6), nn.LeakyReLU(0.2), nn.Linear(6, 1)]
    model = nn.Sequential(*layers)
    _randomise_batchnorm(model, gen)
    return model.eval()


def deblender_like(order: str = "conv-bn-act", widths=(8, 16, 16, 32, 32, 64, 64), size: int = 80,
                   dense: int = 64, slope: float = 0.2, seed: int = 0) -> nn.Sequential:
    """The SRGAN-style deblender discriminator (conv0 + 7 conv/BN/LeakyReLU blocks + 2 dense)."""
    torch.manual_seed(seed)
    strides = (2, 1, 2, 1, 2, 1, 2)
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1), nn.LeakyReLU(slope)]
    cin, spatial = widths[0], size
    for cout, stride in zip(widths, strides):
        conv, bn, act = nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(slope)
        layers += [conv, bn, act] if order == "conv-bn-act" else [conv, act, bn]
        cin, spatial = cout, (spatial + 2 - 3) // stride + 1
    layers += [nn.Flatten(), nn.Linear(cin * spatial * spatial, dense), nn.LeakyReLU(slope),
               nn.Linear(dense, 1)]
    model = nn.Sequential(*layers)
    _randomise_batchnorm(model, torch.Generator().manual_seed(seed))
    return model.eval()


# ------------------------------------------------------------------------------------------
# independent reference
# ------------------------------------------------------------------------------------------
def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    a = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return a, bn.bias.double() - bn.running_mean.double() * a


def _plan(model: nn.Sequential) -> list[dict]:
    """Turn the Sequential into ops, folding BatchNorm as canonisation prescribes."""
    layers, ops, pending = list(model), [], None
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.BatchNorm2d):
            a, c = _bn_affine(layer)
            prev = ops[-1] if ops else None
            if prev is not None and prev["kind"] in ("conv", "linear"):
                prev["w"] = prev["w"] * a.view(-1, *(1,) * (prev["w"].ndim - 1))
                prev["b"] = prev["b"] * a + c
            else:
                pending = (a, c)
            continue
        if isinstance(layer, nn.Conv2d):
            op = dict(kind="conv", w=layer.weight.double(), b=(layer.bias.double() if layer.bias is not None
                      else torch.zeros(layer.out_channels, dtype=torch.float64)),
                      stride=layer.stride, padding=layer.padding, k=layer.kernel_size,
                      pre=pending)
            pending = None
        elif isinstance(layer, nn.Linear):
            op = dict(kind="linear", w=layer.weight.double(), b=layer.bias.double(), pre=pending)
            pending = None
        elif isinstance(layer, ACTIVATIONS):
            op = dict(kind="act", module=copy.deepcopy(layer).double())
        elif isinstance(layer, nn.Flatten):
            op = dict(kind="flatten")
        elif isinstance(layer, nn.MaxPool2d):
            op = dict(kind="maxpool", k=layer.kernel_size)
        elif isinstance(layer, nn.AvgPool2d):
            op = dict(kind="avgpool", k=layer.kernel_size)
        else:
            raise AssertionError(f"reference does not know {layer}")
        ops.append(op)
    return ops


def _affine_input(op: dict, x: torch.Tensor) -> torch.Tensor:
    """Apply a pending (post-activation) BatchNorm to the layer input for the forward pass."""
    if op["pre"] is None:
        return x
    a, c = op["pre"]
    if x.ndim == 1:
        rep = x.numel() // a.numel()
        return x * a.repeat_interleave(rep) + c.repeat_interleave(rep)
    return x * a.view(-1, 1, 1) + c.view(-1, 1, 1)


def _forward(op: dict, x: torch.Tensor) -> torch.Tensor:
    kind = op["kind"]
    if kind == "conv":
        return F.conv2d(_affine_input(op, x)[None], op["w"], op["b"], op["stride"], op["padding"])[0]
    if kind == "linear":
        return op["w"] @ _affine_input(op, x) + op["b"]
    if kind == "act":
        return op["module"](x[None])[0]
    if kind == "flatten":
        return x.reshape(-1)
    if kind == "maxpool":
        return F.max_pool2d(x[None], op["k"])[0]
    return F.avg_pool2d(x[None], op["k"])[0]


def _clamp(t: torch.Tensor, positive: bool) -> torch.Tensor:
    return t.clamp(min=0) if positive else t.clamp(max=0)


def _share(z: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """z / den with 0/0 := 0 (den has the sign of its terms, so den == 0 means all terms are 0)."""
    safe = torch.where(den == 0, torch.ones_like(den), den)
    return torch.where(den == 0, torch.zeros_like(z), z / safe)


def _eq1_conv(op, x, r_out, positive, use_bias):
    w, (kh, kw) = op["w"], op["k"]
    cout = w.shape[0]
    a_c = op["pre"]
    xin = x if a_c is None else x * a_c[0].view(-1, 1, 1)  # contributions of the BN'd input ...
    cols = F.unfold(xin[None], (kh, kw), padding=op["padding"], stride=op["stride"])[0]  # (Ck2, L)
    wm = w.reshape(cout, -1)
    z = cols.T[:, None, :] * wm[None]  # (L, Cout, Ck2): z_ij for every connection
    bias = op["b"].expand(cols.shape[1], cout)
    if a_c is not None:  # ... and the BN shift acts as a bias wherever it is not padding
        ones = torch.ones_like(x) * a_c[1].view(-1, 1, 1)
        shift_cols = F.unfold(ones[None], (kh, kw), padding=op["padding"], stride=op["stride"])[0]
        bias = bias + shift_cols.T @ wm.T
    zc = _clamp(z, positive)
    den = zc.sum(-1) + (_clamp(bias, positive) if use_bias else 0)
    frac = _share(zc, den[..., None])
    rj = r_out.reshape(cout, -1).T  # (L, Cout)
    ri_cols = (frac * rj[..., None]).sum(1)  # (L, Ck2)
    r_in = F.fold(ri_cols.T[None], x.shape[1:], (kh, kw), padding=op["padding"], stride=op["stride"])[0]
    return r_in


def _eq1_linear(op, x, r_out, positive, use_bias):
    w, b = op["w"], op["b"]
    if op["pre"] is not None:
        a, c = op["pre"]
        rep = x.numel() // a.numel()
        a, c = a.repeat_interleave(rep), c.repeat_interleave(rep)
        b, w = b + w @ c, w * a[None]
    z = x[None, :] * w  # (out, in): z_ij = x_i w_ji
    zc = _clamp(z, positive)
    den = zc.sum(1) + (_clamp(b, positive) if use_bias else 0)
    return (_share(zc, den[:, None]) * r_out[:, None]).sum(0)


def _avgpool(op, x, r_out, positive):
    k = op["k"]
    c, h, w = x.shape
    cols = F.unfold(x.reshape(c, 1, h, w), k, stride=k)  # (C, k*k, L)
    z = _clamp(cols / (k * k), positive)
    den = z.sum(1, keepdim=True)
    ri = _share(z, den) * r_out.reshape(c, 1, -1)
    return F.fold(ri, (h, w), k, stride=k).reshape(c, h, w)


def reference_polarized(model: nn.Sequential, x: torch.Tensor, polarity: str = "auto",
                        bias: str = "include", start: str = "probability") -> tuple:
    """Polarized-LRP maps of ``model`` written from Eq. 1; returns (maps, p, polarity)."""
    ops = _plan(model)
    maps, probs, pols = [], [], []
    for sample in x.double():
        acts = [sample]
        for op in ops:
            acts.append(_forward(op, acts[-1]))
        logit = acts[-1].reshape(())
        p = torch.sigmoid(logit)
        positive = bool(p >= 0.5) if polarity == "auto" else polarity == "positive"
        r = (p if start == "probability" else logit.abs()).reshape(acts[-1].shape)
        for op, a_in in zip(reversed(ops), reversed(acts[:-1])):
            kind = op["kind"]
            if kind == "conv":
                r = _eq1_conv(op, a_in, r, positive, bias == "include")
            elif kind == "linear":
                r = _eq1_linear(op, a_in, r, positive, bias == "include")
            elif kind == "flatten":
                r = r.reshape(a_in.shape)
            elif kind == "maxpool":
                a = a_in.clone().requires_grad_(True)
                out = F.max_pool2d(a[None], op["k"])[0]
                (r,) = torch.autograd.grad(out, a, r)  # winner-take-all routing
            elif kind == "avgpool":
                r = _avgpool(op, a_in, r, positive)
            # activations: pass-through
        maps.append(r)
        probs.append(p)
        pols.append(1 if positive else -1)
    return torch.stack(maps), torch.stack(probs), torch.tensor(pols)
