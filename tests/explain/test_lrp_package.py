"""The ``galaxai.explain.lrp`` package: public names, lazy zennit import, the BatchNorm canonizer."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import torch

import eq1_reference as ref
import galaxai.explain as explain

# ``galaxai.explain.lrp`` the attribute is the function lrp (as before the package split), so
# ``import galaxai.explain.lrp as m`` gives the function; the module is reached through importlib
lrp_pkg = importlib.import_module("galaxai.explain.lrp")


def test_public_names_resolve():
    for name in lrp_pkg.__all__:
        assert getattr(lrp_pkg, name) is not None, name
    assert explain.lrp is lrp_pkg.lrp and explain.polarized_lrp is lrp_pkg.polarized_lrp
    assert explain.METHODS["polarized_lrp"] is lrp_pkg.polarized_lrp
    assert lrp_pkg.PolarizedEq1.__module__ == "galaxai.explain.lrp.rules"
    with pytest.raises(AttributeError, match="no attribute"):
        lrp_pkg.NoSuchRule  # noqa: B018


def test_import_does_not_load_zennit():
    code = ("import sys, galaxai.explain, galaxai.explain.lrp; "
            "print('zennit' in sys.modules, 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("order", ["conv-bn-act", "conv-act-bn"])
def test_dataflow_canonizer_merges_exactly_and_reverts(order):
    from zennit.composites import EpsilonPlusFlat

    model = ref.small_cnn(order, seed=5).double()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    classes = [type(m) for m in model.modules()]
    with torch.no_grad():
        expected = model(x)
    (instance,) = lrp_pkg.DataflowMergeBatchNorm(x[:1]).apply(model)
    assert len(instance.notes) == 1 and "merged into" in instance.notes[0]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-10, atol=1e-12)
    instance.remove()
    assert [type(m) for m in model.modules()] == classes
    assert model.state_dict().keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value), key
    # as a canonizer of a stock zennit composite, reverted when the composite is removed
    composite = EpsilonPlusFlat(canonizers=[lrp_pkg.DataflowMergeBatchNorm(x[:1])])
    with composite.context(model):
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert [type(m) for m in model.modules()] == classes
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_dataflow_canonizer_needs_a_probe():
    with pytest.raises(ValueError, match="probe"):
        lrp_pkg.DataflowMergeBatchNorm().apply(ref.small_cnn(seed=0))
