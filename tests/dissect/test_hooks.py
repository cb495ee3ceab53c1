"""The one intervention primitive, as hooks and as JSON data."""
import json

import pytest
import torch
from torch import nn

from galaxai.dissect import Intervention, intervene, load_interventions, record, rewrite, save_interventions
from galaxai.models.deblender import build_generator


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    g = build_generator("tiny", seed=3).eval()
    for p in g.parameters():  # random non-zero weights everywhere (tiny has no zero-init convs)
        p.data.normal_(0, 0.3)
    return g


def test_a_zero_and_v_equal_r_leave_the_output_bit_identical(generator):
    x = torch.rand(2, 3, 80, 80)
    with torch.no_grad():
        ref = generator(x)
        with intervene(generator, Intervention("root.0", units=(0, 3, 5), alpha=0.0)):
            same = generator(x)
        with record(generator, ["root.0"]) as seen:
            generator(x)
        r = seen["root.0"]
        # a = 1 with v = r through a hook on the same layer
        layer = generator.shared[0]
        h = layer.register_forward_hook(lambda m, i, out: rewrite(out, torch.ones_like(out), out))
        try:
            again = generator(x)
        finally:
            h.remove()
    for a, b, c in zip(ref, same, again):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert torch.equal(rewrite(r, torch.zeros_like(r)), r)


def test_ablation_zeroes_exactly_the_named_units_and_region(generator):
    x = torch.rand(1, 3, 80, 80)
    mask = torch.zeros(80, 80)
    mask[:40] = 1
    with torch.no_grad(), record(generator, ["trunk"]) as seen:
        generator(x)
        before = seen["trunk"].clone()
        with intervene(generator, Intervention("trunk", units=(2,), mask=mask.tolist())):
            generator(x)
    after = seen["trunk"]
    assert torch.all(after[0, 2, :40] == 0)
    assert torch.equal(after[0, 2, 40:], before[0, 2, 40:])
    others = [u for u in range(before.shape[1]) if u != 2]
    assert torch.equal(after[0, others], before[0, others])


def test_insertion_and_blending_follow_the_formula(generator):
    x = torch.rand(1, 3, 80, 80)
    with torch.no_grad(), record(generator, ["branch2.0"]) as seen:
        generator(x)
        r = seen["branch2.0"].clone()
        with intervene(generator, [Intervention("branch2.0", units=(1, 4), mode="insert",
                                                value=(2.0, -1.0)),
                                   Intervention("branch2.0", units=(1,), mode="blend", alpha=0.25)]):
            generator(x)
        out = seen["branch2.0"]
    assert torch.allclose(out[0, 1], torch.full_like(r[0, 1], 2.0 * 0.75))
    assert torch.allclose(out[0, 4], torch.full_like(r[0, 4], -1.0))
    assert torch.equal(out[0, 0], r[0, 0])


def test_a_branch_intervention_reaches_only_its_own_output(generator):
    x = torch.rand(1, 3, 80, 80)
    with torch.no_grad():
        a0, b0 = generator(x)
        with intervene(generator, Intervention("branch1.0", units=tuple(range(8)))):
            a1, b1 = generator(x)
    assert not torch.equal(a0, a1)
    assert torch.equal(b0, b1)


def test_interventions_round_trip_through_json_and_bad_ones_are_named(tmp_path):
    items = [Intervention("root.0", units=(1, 2)),
             Intervention("trunk", units=(3,), mode="insert", value=1.5, mask=[[0, 1], [1, 0]])]
    path = save_interventions(items, tmp_path / "iv.json")
    assert load_interventions(path) == items
    (tmp_path / "bad.json").write_text(json.dumps({"layer": "root.0", "units": [1], "colour": 1}))
    with pytest.raises(ValueError, match="colour"):
        load_interventions(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="needs value"):
        Intervention("root.0", units=(1,), mode="insert")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Intervention("root.0", units=(1,), alpha=2.0)
    with pytest.raises(KeyError, match="root.0"):
        with intervene(build_generator("tiny"), Intervention("nonsense", units=(0,))):
            pass


def test_any_module_name_works_on_other_networks():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad(), intervene(net, Intervention("1", units=(0, 1, 2, 3))):
        out = net(x)
    assert torch.allclose(out, net[2].bias.expand_as(out))
