"""One input explained across checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

import eq1_reference as ref
from galaxai.explain import explain_timeline, polarized_lrp
from galaxai.explain.timeline import core_periphery_masks



def test_timeline_over_checkpoints_polarized_lrp():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    models = [ref.deblender_like(widths=(4, 4, 8, 8, 8, 8, 8), size=16, dense=8, seed=s) for s in (1, 2, 3)]
    checkpoints = ((1000 * (i + 1), m) for i, m in enumerate(models))  # a generator is fine
    timeline = explain_timeline(x, checkpoints, bias="ignore")
    assert timeline.iterations == [1000, 2000, 3000]
    assert timeline.maps.shape == (3, 2, 3, 16, 16)
    assert timeline.scores.shape == timeline.polarity.shape == timeline.core_share.shape == (3, 2)
    torch.testing.assert_close(timeline.maps[1], polarized_lrp(models[1], x, bias="ignore").maps)
    total = timeline.core_share + timeline.periphery_share
    assert ((total > 0) & (total <= 1 + 1e-9)).all()
    core, _ = core_periphery_masks((16, 16))
    share = core.double().mean()
    torch.testing.assert_close(timeline.core_ratio, timeline.core_share / share)
    rows = timeline.records()
    assert len(rows) == 6 and rows[0]["iteration"] == 1000
    json.dumps(rows)


def test_timeline_other_method_and_errors():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model = ref.small_cnn(size=16, seed=4)
    timeline = explain_timeline(x, [(0, model), (10, model)], method="smoothgrad", n=4, chunk=2)
    assert timeline.polarity is None and timeline.maps.shape == (2, 1, 16, 16)
    torch.testing.assert_close(timeline.maps[0], timeline.maps[1])
    with pytest.raises(ValueError, match="method"):
        explain_timeline(x, [(0, model)], method="magic")
    with pytest.raises(ValueError, match="empty"):
        explain_timeline(x, [])
    with pytest.raises(ValueError, match="core_radius"):
        core_periphery_masks((16, 16), core_radius=6, outer_radius=4)
