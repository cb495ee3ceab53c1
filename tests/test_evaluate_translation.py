"""KID (against an independent reference) and the statmorph morphology distance."""
from __future__ import annotations

import numpy as np
import pytest
from stamp_blobs import blob_stamps

from galaxai.evaluate_translation import (MORPHOLOGY_STATISTICS, features, kid,
                                          morphology_distance, morphology_table)


def _kid_reference(x, y):
    """Unbiased MMD² with k(a, b) = (a·b/d + 1)³, written as explicit sums over pairs."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_an_independent_reference():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.5, 1.2, size=(9, 5))
    assert kid(x, y) == pytest.approx(_kid_reference(x, y), rel=1e-12)
    assert kid(x, y) == pytest.approx(kid(y, x), rel=1e-12)


def test_kid_separates_distributions():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    shifted = rng.normal(1.0, 1.0, size=(200, 8))
    assert abs(kid(a, b)) < 0.1 * kid(a, shifted)
    with pytest.raises(ValueError, match="two samples"):
        kid(a[:1], b)
    with pytest.raises(ValueError, match="feature arrays"):
        kid(a, b[:, :3])


def test_features_are_the_realsky_discriminators_penultimate_layer():
    import torch

    from galaxai.api import discriminator

    x = blob_stamps(3, seed=0)
    f = features(x)
    assert f.shape == (3, 128)
    d = discriminator("realsky", "cpu")
    big = torch.nn.functional.interpolate(torch.from_numpy(x), size=(80, 80), mode="bilinear",
                                          align_corners=False)
    with torch.no_grad():
        logit = d(big).numpy()[:, 0]
    last = d.classifier[-1]
    weight, bias = last.weight.detach().double().numpy(), float(last.bias.detach())
    np.testing.assert_allclose((f @ weight.T)[:, 0] + bias, logit, rtol=1e-4, atol=1e-4)


def test_morphology_of_gaussian_blobs():
    round_ = morphology_table(blob_stamps(4, sigma=3.0, seed=0, noise=0.005))
    flat = morphology_table(blob_stamps(4, sigma=3.0, axis_ratio=0.4, seed=1, noise=0.005))
    assert list(round_.columns) == ["index", *MORPHOLOGY_STATISTICS]
    assert len(round_) == 4 and round_.attrs["dropped"] == 0
    # a circular Gaussian holds half its light within sigma·sqrt(2 ln 2)
    assert round_["size"].median() == pytest.approx(3.0 * np.sqrt(2 * np.log(2)), rel=0.15)
    assert (round_["ellipticity"] < 0.15).all() and (flat["ellipticity"] > 0.4).all()
    assert morphology_distance(round_, round_)["mean"] == 0.0
    assert morphology_distance(flat, round_)["ellipticity"] > 1.0


def test_empty_stamps_are_dropped_and_counted():
    empty = np.full((2, 3, 32, 32), -0.9, np.float32)
    table = morphology_table(empty)
    assert len(table) == 0 and table.attrs["dropped"] == 2
    with pytest.raises(ValueError, match="two usable"):
        morphology_distance(table, table)
