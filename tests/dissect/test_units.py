"""Thresholds, dataset-level IoU and labels on hand-made units (specs/dissection.md, Tests)."""
import numpy as np
import pytest
import torch
from torch import nn

from galaxai.dissect import ConceptSet, Concepts, dissect_units, iou_iqr


class Probe(nn.Module):
    """A 'generator' whose one layer outputs its input: units are whatever the test feeds."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Identity()
        self.weight = nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, x):
        return self.layer(x)


def _concepts(masks, names=("c",), categories=("region",)):
    return Concepts(tuple(names), tuple(categories), np.asarray(masks, bool))


def _random_masks(seed, n=12, size=16):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, 2, size, size), bool)
    for i in range(n):
        cx, cy, r = rng.uniform(4, 12), rng.uniform(4, 12), rng.uniform(2, 5)
        masks[i, 0] = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        masks[i, 1] = ~masks[i, 0]
    return masks


def test_a_unit_equal_to_a_concept_indicator_has_iou_one_and_a_constant_unit_is_not_interpretable():
    sets = []
    for seed in (1, 2):
        masks = _random_masks(seed)
        rng = np.random.default_rng(seed + 10)
        units = np.stack([1.0 + masks[:, 0],                            # indicator of "disc"
                          np.full(masks[:, 0].shape, 0.5),              # constant
                          rng.normal(size=masks[:, 0].shape)], axis=1)  # noise
        sets.append(ConceptSet(torch.tensor(units, dtype=torch.float32),
                               _concepts(masks, ("disc", "rest"), ("region", "region"))))
    result = dissect_units(Probe(), sets[0], sets[1], ["layer"])
    table = result.units.set_index("unit")
    assert table.loc[0, "label"] == "disc"
    assert table.loc[0, "iou"] == pytest.approx(1.0)
    assert bool(table.loc[0, "interpretable"])
    assert not bool(table.loc[1, "interpretable"])
    assert result.ranking("disc").iloc[0]["unit"] == 0


def test_dataset_level_iou_pools_counts_before_dividing():
    # Image 1: S = 8 pixels, A = the same 8 → IoU 1. Image 2: S = 1 pixel, A = 2 pixels holding
    # it → IoU 1/2. Mean of per-image IoUs 0.75; pooled 9 / (10 + 9 − 9) = 0.9.
    s = np.zeros((2, 1, 4, 4), bool)
    s[0, 0, :2, :] = True
    s[1, 0, 3, 3] = True
    a = s.copy()
    a[1, 0, 3, 2] = True
    units = torch.tensor(1.0 + a, dtype=torch.float32)
    dissection = ConceptSet(units, _concepts(s), batch_size=1)
    thresholds = ConceptSet(units.flip(0), _concepts(s[::-1].copy()), batch_size=1)
    result = dissect_units(Probe(), thresholds, dissection, ["layer"])
    iou = result.units.loc[0, "iou"]
    assert iou == pytest.approx(0.9)
    assert iou != pytest.approx(0.75)


def test_thresholds_come_from_the_threshold_set_only():
    masks = _random_masks(3)
    base = torch.tensor(1.0 + masks[:, :1], dtype=torch.float32)
    dissection = ConceptSet(base, _concepts(masks[:, :1]))
    # A threshold set whose activations are shifted up by 5 moves the threshold to 6.
    shifted = ConceptSet(base + 5.0, _concepts(masks[:, :1]))
    plain = ConceptSet(base.flip(0), _concepts(masks[::-1, :1].copy()))
    t_shift = dissect_units(Probe(), shifted, dissection, ["layer"]).units.loc[0, "threshold"]
    t_plain = dissect_units(Probe(), plain, dissection, ["layer"]).units.loc[0, "threshold"]
    assert t_plain == pytest.approx(1.0)
    assert t_shift == pytest.approx(6.0)
    with pytest.raises(ValueError, match="own set"):
        dissect_units(Probe(), dissection, dissection, ["layer"])


def test_iou_and_iqr_match_their_definitions_on_a_two_by_two_table():
    # a = 3 shared, |A| = 5, |S| = 4, n = 20 → cells p11 .15, p10 .1, p01 .05, p00 .7.
    iou, iqr, agree = iou_iqr(3, 5, 4, 20)
    p = np.array([[0.15, 0.10], [0.05, 0.70]])
    pa, ps = p.sum(1), p.sum(0)
    mi = sum(p[i, j] * np.log(p[i, j] / (pa[i] * ps[j])) for i in range(2) for j in range(2))
    h = -sum(p[i, j] * np.log(p[i, j]) for i in range(2) for j in range(2))
    assert iou == pytest.approx(3 / 6)
    assert iqr == pytest.approx(mi / h)
    assert agree == pytest.approx(0.85)


def test_binning_equals_a_binary_search_also_with_tied_and_degenerate_boundaries():
    from galaxai.dissect.units import _bins

    gen = torch.Generator().manual_seed(0)
    r = torch.randn(4, 5000, generator=gen)
    b = torch.randn(4, 100, generator=gen).sort(dim=1).values
    b[1, 10:60] = 0.0                       # many equal levels (a ReLU unit's zeros)
    b[2] = 0.3                              # all levels equal
    b[3, :50] = torch.linspace(-1e-6, 1e-6, 50)  # crowded levels
    r[0, :100] = b[0]                       # values exactly on a boundary
    want = torch.stack([torch.searchsorted(b[u], r[u]) for u in range(4)])
    assert torch.equal(_bins(r, b), want)
    assert torch.equal(_bins(r[:, :7], b[:, :1]), (r[:, :7] > b[:, :1]).long())
