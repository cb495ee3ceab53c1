"""Tests of galaxai.morphology.strata: stratified ρ and ratios with known answers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from galaxai.morphology.strata import STRATA, simulation_covariates, stratified_correlations


def test_exact_stratum_has_rho_one_and_ratio_one_noise_stratum_has_rho_near_zero():
    rng = np.random.default_rng(0)
    n = 400
    true = rng.uniform(5, 40, n)
    group = np.repeat([0.2, 0.8], n // 2)              # property: first half low, second high
    measured = true.copy()
    # high stratum: measured is independent of the truth (same distribution, half as long)
    measured[n // 2:] = 0.5 * rng.permutation(true[n // 2:])
    table = stratified_correlations(measured, true, pd.DataFrame({"q": group}),
                                    strata={"q": (0.0, 0.5, 1.0)}, n_boot=300, seed=1)
    assert list(table["bin"]) == ["[0, 0.5]", "(0.5, 1]"]
    exact, noise = table.iloc[0], table.iloc[1]
    assert exact.n == noise.n == n // 2
    assert exact.pearson == pytest.approx(1.0) and exact.spearman == pytest.approx(1.0)
    assert exact.pearson_low == pytest.approx(1.0)
    assert (exact.ratio_median, exact.ratio_low, exact.ratio_high) == pytest.approx((1, 1, 1))
    # independent: ρ ≈ 0 and inside its interval; the interval excludes the exact stratum's 1
    for stat in ("pearson", "spearman"):
        assert abs(noise[stat]) < 0.2
        assert noise[f"{stat}_low"] < 0 < noise[f"{stat}_high"] < 0.5
    # median of 0.5·(permuted true)/true: about 0.5, its interval below 1
    assert 0.3 < noise.ratio_median < 0.8 and noise.ratio_high < 1


def test_quantile_bins_small_and_empty_bins_and_constant_property():
    true = np.arange(1.0, 13.0)
    cov = pd.DataFrame({"x": np.arange(12.0), "c": np.full(12, 3.0), "e": np.linspace(0, 1, 12)})
    table = stratified_correlations(2 * true, true, cov,
                                    strata={"x": 3, "c": 2, "e": (0.0, 0.1, 0.5, 2.0, 3.0)},
                                    n_boot=50)
    x = table[table.stratum == "x"]
    assert list(x.n) == [4, 4, 4] and np.allclose(x.ratio_median, 2.0)
    assert np.allclose(x.pearson, 1.0)
    c = table[table.stratum == "c"]
    assert list(c.n) == [12] and c.low_edge.item() == c.high_edge.item() == 3.0
    e = table[table.stratum == "e"].set_index("bin")
    assert list(e.n) == [2, 4, 6, 0]               # k/11 per bin; the empty one is listed too
    assert e.iloc[[0, 3]][["pearson", "spearman", "ratio_median"]].isna().all().all()
    assert np.isfinite(e.iloc[1][["pearson", "ratio_median"]].astype(float)).all()


def test_bad_input_is_named():
    cov = pd.DataFrame({"x": np.arange(5.0)})
    with pytest.raises(ValueError, match="same galaxies"):
        stratified_correlations(np.ones(4), np.ones(5), cov, strata={"x": 2})
    with pytest.raises(ValueError, match="positive"):
        stratified_correlations(np.ones(5), np.zeros(5), cov, strata={"x": 2})
    with pytest.raises(ValueError, match=r"lack column\(s\) \['y'\]"):
        stratified_correlations(np.ones(5), np.ones(5), cov, strata={"y": 2})
    with pytest.raises(ValueError, match="increasing"):
        stratified_correlations(np.ones(5), np.ones(5), cov, strata={"x": (1.0, 0.0)})


def test_simulation_covariates_fold_the_bar_angle_and_derive_a_over_fwhm():
    pa = np.array([0.0, 10.0, 45.0, 80.0, 90.0, 100.0, 135.0, 179.0])
    n = pa.size
    cat = pd.DataFrame({
        "bar_pa_deg": pa, "disk_incl_deg": np.full(n, 60.0), "disk_cos_i": np.full(n, 0.5),
        "bar_q": np.full(n, 0.25), "bar_a_px": np.full(n, 8.0),
        "bar_length_proj_px": np.full(n, 12.0), "psf_fwhm_r_px": np.full(n, 3.0),
        "bt": np.linspace(0, 0.3, n), "flux_r_bar": np.full(n, 1000.0),
        "sky_sigma_r": np.full(n, 5.0)})
    cov = simulation_covariates(cat)
    assert list(cov.columns) == list(STRATA)
    np.testing.assert_allclose(cov["bar_pa_axis_deg"], [0, 10, 45, 10, 0, 10, 45, 1])
    np.testing.assert_allclose(cov["a_over_fwhm"], 2.0)
    area = math.pi * 64 * 0.25 * 0.5
    np.testing.assert_allclose(cov["snr_bar"], 1000 / (5 * math.sqrt(area)))
    with pytest.raises(ValueError, match="bar_pa_deg"):
        simulation_covariates(cat.drop(columns="bar_pa_deg"))
