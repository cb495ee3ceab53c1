"""One contract for every registered attribution method (``galaxai.explain.METHODS``), zennit-style.

Each method, with each variant below, runs through the same battery on toy CNN discriminators
written here (not galaxai's models): output shape and dtype, determinism, the model unchanged
afterwards (state_dict, training flags, no hooks left), and batch consistency (a sample explained
alone equals its row of the batch). A newly registered method is picked up automatically with its
default arguments; add a cheap variant to ``_FAST`` if its defaults are slow.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from galaxai.explain import LRP_RULES, METHODS

# cheap settings per method (tiny SmoothGrad / IG sample counts); defaults for anything else
_FAST: dict[str, list[dict]] = {
    "smoothgrad": [dict(n=4, chunk=3), dict(n=3, channel_reduce=None, normalise=None)],
    "integrated_gradients": [dict(steps=6, chunk=4, baseline="zeros"), dict(steps=4)],
    "polarized_lrp": [dict(), dict(engine="zennit"), dict(bias="ignore", polarity="negative")],
    "lrp": [dict(rule=rule) for rule in sorted(LRP_RULES)],
}
# variants whose samples are explained independently of the rest of the batch
_BATCH_COUPLED = {("integrated_gradients", "baseline=sky")}  # sky baseline drawn for the batch


def _cases() -> list:
    cases = []
    for name in sorted(METHODS):
        for kwargs in _FAST.get(name, [dict()]):
            label = ",".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults"
            cases.append(pytest.param(name, kwargs, id=f"{name}[{label}]"))
    return cases


class PlainCNN(nn.Sequential):
    """conv -> ReLU -> conv -> BN -> LeakyReLU -> global average pool -> dense, one logit."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__(
            nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.LeakyReLU(0.1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 1),
        )


class ResidualCNN(nn.Module):
    """A residual block written in ``forward`` (``a + b``, ``F.relu``) and a final Sigmoid."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, 5, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(5, 5, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(5, 5, 3, padding=1))
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5 * 6 * 6, 1),
                                  nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = torch.nn.functional.leaky_relu(self.stem(x), 0.2)
        return self.head(h + self.body(h))


def _model(kind: str, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(11)
    model = PlainCNN() if kind == "plain" else ResidualCNN()
    gen = torch.Generator().manual_seed(12)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # non-trivial running statistics
            module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
    return model.to(dtype)


def _inputs(dtype: torch.dtype, batch: int = 4) -> torch.Tensor:
    return torch.rand(batch, 3, 12, 12, generator=torch.Generator().manual_seed(13), dtype=dtype)


def _state(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "classes": [type(m) for m in model.modules()],
    }


def _no_hooks(model: nn.Module) -> None:
    for name, module in model.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks"):
            assert not getattr(module, kind, {}), f"{kind} left on '{name or '<model>'}'"
    for name, param in model.named_parameters():
        assert param.grad is None, f"gradient accumulated on parameter '{name}'"


@pytest.mark.parametrize("kind", ["plain", "residual"])
@pytest.mark.parametrize("name, kwargs", _cases())
def test_shape_dtype_determinism_and_model_untouched(name, kwargs, kind):
    model = _model(kind, torch.float32).train()  # training flags must come back as they were
    x = _inputs(torch.float32)
    before = _state(model)
    first = METHODS[name](model, x, **kwargs)
    second = METHODS[name](model, x, **kwargs)

    batch, channels, height, width = x.shape
    assert tuple(first.maps.shape) in ((batch, channels, height, width), (batch, height, width))
    assert first.maps.dtype == x.dtype and first.logits.dtype == x.dtype
    assert tuple(first.logits.shape) == (batch,)
    assert not first.maps.requires_grad
    assert torch.isfinite(first.maps).all()
    if first.scores is not None:
        torch.testing.assert_close(first.scores, torch.sigmoid(first.logits))
    if first.polarity is not None:
        assert set(first.polarity.tolist()) <= {-1, 1}

    assert torch.equal(first.maps, second.maps), "same input, same model: same maps"
    assert torch.equal(first.logits, second.logits)

    after = _state(model)
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), f"state_dict['{key}'] changed"
    for field in ("training", "requires_grad", "classes"):
        assert after[field] == before[field], field
    _no_hooks(model)


@pytest.mark.parametrize("name, kwargs", _cases())
def test_double_precision_and_batch_consistency(name, kwargs):
    model = _model("plain", torch.float64).eval()
    x = _inputs(torch.float64, batch=3)
    whole = METHODS[name](model, x, **kwargs)
    assert whole.maps.dtype == torch.float64
    label = (name, ",".join(f"{k}={v}" for k, v in kwargs.items()))
    if name == "integrated_gradients" and kwargs.get("baseline", "sky") == "sky":
        label = (name, "baseline=sky")
    if label in _BATCH_COUPLED:
        pytest.skip("this variant draws one baseline for the whole batch")
    for i in range(x.shape[0]):
        alone = METHODS[name](model, x[i : i + 1], **kwargs)
        torch.testing.assert_close(alone.maps[0], whole.maps[i], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(alone.logits[0], whole.logits[i], rtol=1e-12, atol=1e-12)


def test_every_registered_method_is_in_the_battery():
    assert {case.values[0] for case in _cases()} == set(METHODS)
    assert {"input_gradient", "smoothgrad", "integrated_gradients", "grad_cam", "polarized_lrp",
            "lrp"} <= set(METHODS)
