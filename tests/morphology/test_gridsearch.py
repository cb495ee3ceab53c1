"""Tests of galaxai.morphology.gridsearch: splits, correlations, nulls, fits, grid search."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from galaxai._data import hoyle_catalogue

from galaxai.morphology import bar_length, bar_lengths, x_input
from galaxai.morphology.gridsearch import (
    average_heatmaps,
    bootstrap_rho,
    control_split,
    fit_through_origin,
    grid_search,
    grid_search_by,
    measurement_table,
    method_measurements,
    origin_fit_weights,
    paper_fit,
    paper_plot_units,
    partial_pearson,
    pearson,
    rho_report,
    run_to_run_sigma,
    source_lengths,
    source_maps,
    spearman,
    split_catalogue,
)



def synthetic_r90(n: int, seed: int, cv: float = 0.42) -> np.ndarray:
    """Log-normal petroR90_r (arcsec) with the catalogue's coefficient of variation."""
    s = math.sqrt(math.log(1 + cv ** 2))
    return np.random.default_rng(seed).lognormal(math.log(8.0), s, n)


@pytest.fixture(scope="module")
def hoyle():
    return pd.read_csv(hoyle_catalogue())


def test_splits_follow_the_authors_shuffle(hoyle):
    val, test = split_catalogue(hoyle)
    assert (len(val), len(test)) == (1050, 2100)
    shuffled = hoyle.sample(frac=1, random_state=123)
    assert list(val.objid) == list(shuffled.objid[:1050])
    assert list(test.objid) == list(shuffled.objid[1050:])
    train, cval, ctest = control_split(hoyle)
    assert (len(train), len(cval), len(ctest)) == (2016, 504, 630)
    assert set(ctest.objid) <= set(test.objid)
    assert list(cval.objid) == list(shuffled.objid[:504])
    assert set(train.objid) | set(cval.objid) | set(ctest.objid) == set(hoyle.objid)
    with pytest.raises(ValueError, match="validation_fraction"):
        split_catalogue(hoyle, validation_fraction=1.5)


def test_correlations_match_scipy():
    rng = np.random.default_rng(1)
    x, z = rng.normal(size=200), rng.normal(size=200)
    y = 0.5 * x + 0.7 * z + rng.normal(size=200)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    ties = np.round(y, 0)
    assert spearman(x, ties) == pytest.approx(stats.spearmanr(x, ties)[0], abs=1e-12)
    # partial correlation = correlation of the residuals after regressing on z (with intercept)
    design = np.column_stack([np.ones_like(z), z])
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    assert partial_pearson(x, y, z) == pytest.approx(stats.pearsonr(rx, ry)[0], abs=1e-10)
    assert math.isnan(pearson(np.ones(10), np.arange(10.0)))
    with pytest.raises(ValueError, match="same length"):
        pearson(x, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        pearson(np.r_[x[:-1], np.nan], y)


def test_bootstrap_intervals_cover_the_true_rho():
    rho, n, trials = 0.5, 150, 150
    rng = np.random.default_rng(7)
    cov = [[1.0, rho], [rho, 1.0]]
    hits = 0
    for t in range(trials):
        x, y = rng.multivariate_normal([0, 0], cov, size=n).T
        est = bootstrap_rho(x, y, n_boot=400, seed=t)
        assert est.low <= est.value <= est.high
        hits += est.low <= rho <= est.high
    assert 0.88 <= hits / trials <= 0.99
    sp = bootstrap_rho(x, y, method="spearman", n_boot=200)
    assert sp.low <= sp.value <= sp.high
    with pytest.raises(ValueError, match="method"):
        bootstrap_rho(x, y, method="kendall")


def test_origin_fit_closed_form():
    rng = np.random.default_rng(3)
    x = rng.uniform(1, 15, 300)
    y = 0.8 * x + rng.normal(0, 1, 300)
    sigma_meas = rng.uniform(0.2, 1.0, 300)
    w = origin_fit_weights(x, sigma_meas)
    assert np.allclose(w, 1.0 / (0.17 * x + sigma_meas))
    fit = fit_through_origin(x, y, w)
    num = sum(wi * xi * yi for wi, xi, yi in zip(w, x, y))
    den = sum(wi * xi * xi for wi, xi in zip(w, x))
    assert fit.slope == pytest.approx(num / den, rel=1e-12)
    # the same from weighted least squares on sqrt(w)-scaled rows (sklearn sample_weight)
    lstsq = np.linalg.lstsq((np.sqrt(w) * x)[:, None], np.sqrt(w) * y, rcond=None)[0][0]
    assert fit.slope == pytest.approx(lstsq, rel=1e-10)
    assert fit.rmse == pytest.approx(np.sqrt(np.mean((y - fit.slope * x) ** 2)))
    assert fit.rmse_identity == pytest.approx(np.sqrt(np.mean((y - x) ** 2)))
    assert fit_through_origin(x, 2 * x).slope == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        origin_fit_weights(np.zeros(5), 0.0)


def test_origin_fit_slope_error_matches_the_scatter_of_repeated_fits():
    rng = np.random.default_rng(5)
    x = rng.uniform(1, 15, 40)
    sigma = 0.2 + 0.1 * x  # heteroscedastic; weights 1/σ² make the error estimate exact
    fits = [fit_through_origin(x, 0.8 * x + rng.normal(0, sigma), 1 / sigma ** 2)
            for _ in range(2000)]
    slopes = np.array([f.slope for f in fits])
    errors = np.array([f.slope_err for f in fits])
    assert slopes.mean() == pytest.approx(0.8, abs=2e-3)
    assert np.mean(errors) == pytest.approx(slopes.std(), rel=0.06)
    # closed form on one fit: s² = Σ w r² / (n − 1), err = √(s² / Σ w x²)
    w, y = 1 / sigma ** 2, 0.8 * x + rng.normal(0, sigma)
    f = fit_through_origin(x, y, w)
    s2 = np.sum(w * (y - f.slope * x) ** 2) / (x.size - 1)
    assert f.slope_err == pytest.approx(math.sqrt(s2 / np.sum(w * x * x)), rel=1e-12)
    assert fit_through_origin(x, 2 * x).slope_err == pytest.approx(0.0, abs=1e-12)


def test_paper_fit_is_the_authors_weighted_fit_in_plot_units():
    rng = np.random.default_rng(8)
    ls, r90 = rng.uniform(0.2, 0.9, 50), synthetic_r90(50, seed=2)
    measured = 100 * ls * rng.lognormal(0, 0.2, 50)
    sigma = rng.uniform(0.5, 5.0, 50)  # faithful units, L424·R90
    fit = paper_fit(measured, ls, r90, sigma)
    y, x = paper_plot_units(measured * r90, ls * r90)
    w = 1 / (0.17 * x + sigma * 0.02 * 0.396)
    assert fit.slope == pytest.approx(np.sum(w * x * y) / np.sum(w * x * x), rel=1e-12)
    assert fit.n == 50 and fit.slope_err > 0
    assert paper_fit(measured, ls, r90).slope != fit.slope  # σ_meas changes the weights
    assert paper_fit(100 * ls, ls, r90).slope == pytest.approx(0.792 / 0.7, rel=1e-12)


def test_run_to_run_sigma_is_decile_mean_spread():
    run1 = np.arange(20, dtype=float)
    run2 = run1 + np.where(run1 < 10, 1.0, 3.0)  # spread 1 for the low half, 3 for the high
    sigma = run_to_run_sigma(run1, run2, n_bins=2)
    assert np.allclose(sigma, np.where(run1 < 10, 1.0, 3.0))
    deciles = run_to_run_sigma(run1, run1 + run1 % 2, n_bins=10)  # pairs (0, 1) per decile
    assert np.allclose(deciles, 0.5)
    # every galaxy with the same mean: one bin, not NaN
    assert np.allclose(run_to_run_sigma(np.full(6, 2.0), np.full(6, 2.0)), 0.0)
    assert np.allclose(run_to_run_sigma(np.array([1.0, 3, 1, 3]), np.array([3.0, 1, 3, 1])), 2.0)


def test_constant_length_null_on_hoyle_is_strong(hoyle):
    """The spec's point: a constant length already correlates through the shared R90."""
    _, test = split_catalogue(hoyle)
    ls = test.length_scaled.to_numpy()
    r90 = synthetic_r90(len(test), seed=11)
    report = rho_report(np.full(len(test), 60.0), ls, r90, n_boot=300, n_perm=300)
    assert report.n == 2100
    assert report.constant_null.value > 0.6
    assert report.faithful.value == pytest.approx(report.constant_null.value, abs=1e-12)
    assert report.constant_null.low < report.constant_null.value < report.constant_null.high
    assert math.isnan(report.scaled.value)  # no information once R90 is divided out
    assert math.isnan(report.partial_r90.value)
    # a noisy but genuine measurement: the R90-free statistics now carry the signal
    rng = np.random.default_rng(5)
    measured = 100 * ls * rng.lognormal(0, 0.3, ls.size)
    good = rho_report(measured, ls, r90, n_boot=300, n_perm=300, seed=1)
    assert good.scaled.value > 0.5 and good.partial_r90.value > 0.3
    assert good.permutation_mean > 0.4  # permuted predictions keep the shared R90
    assert good.faithful.value > good.permutation_interval[1]
    assert good.permutation_p < 0.01
    frame = good.to_frame()
    assert list(frame.columns) == ["statistic", "value", "low", "high"] and len(frame) == 6
    assert (frame.low <= frame.value).all() and (frame.value <= frame.high).all()


def synthetic_measurements(n: int = 450, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = np.arange(10_000, 10_000 + n)
    ls = rng.lognormal(math.log(0.45), 0.3, n)
    catalogue = pd.DataFrame({"objid": ids, "length_scaled": ls, "R90": synthetic_r90(n, seed)})
    rows = []
    truth = (0.85, 40, False)
    for t_c in (0.8, 0.85, 0.9):
        for t_l in (20, 40):
            for x_in in (False, True):
                noise = 0.1 if (t_c, t_l, x_in) == truth else 0.6
                measured = 100 * ls * rng.lognormal(0, noise, n)
                if (t_c, t_l, x_in) == (0.9, 20, True):
                    measured = rng.permutation(measured)  # pure noise
                rows.append(pd.DataFrame({"id": ids, "t_c": t_c, "t_l": t_l, "x_input": x_in,
                                          "length_px": measured}))
    return catalogue, pd.concat(rows, ignore_index=True), truth


@pytest.mark.parametrize("units", ["faithful", "scaled"])
def test_grid_search_finds_the_true_setting(units):
    catalogue, measurements, truth = synthetic_measurements()
    val, test = split_catalogue(catalogue, validation_fraction=1 / 3)
    result = grid_search(measurements, catalogue, val.objid, test.objid, units=units,
                         catalogue_cols={"id": "objid", "r90": "R90"}, n_boot=200, n_perm=200)
    assert (result.best["t_c"], result.best["t_l"], result.best["x_input"]) == truth
    assert len(result.table) == 12 and (result.table.n_validation == 150).all()
    assert result.table.rho_validation.is_monotonic_decreasing
    assert result.rho_test > 0.9 and result.report.n == 300
    assert result.report.scaled.value > 0.9
    assert result.rho_test > result.report.constant_null.value
    assert result.fit.n == 300 and result.fit.slope_err > 0
    chosen = measurements[(measurements.t_c == truth[0]) & (measurements.t_l == truth[1])
                          & (measurements.x_input == truth[2])].set_index("id")
    ids = list(test.objid)
    cat = catalogue.set_index("objid")
    assert result.fit == paper_fit(chosen.loc[ids, "length_px"], cat.loc[ids, "length_scaled"],
                                   cat.loc[ids, "R90"])
    y, x = paper_plot_units(100 * np.ones(1), np.ones(1))
    assert result.fit.slope == pytest.approx(y[0] / x[0], rel=0.1)  # measured ≈ 100·scaled


def test_grid_search_errors():
    catalogue, measurements, _ = synthetic_measurements(n=30)
    cols = {"id": "objid", "r90": "R90"}
    ids = catalogue.objid
    with pytest.raises(ValueError, match="both"):
        grid_search(measurements, catalogue, ids[:20], ids[10:], catalogue_cols=cols)
    with pytest.raises(ValueError, match="catalogue lacks"):
        grid_search(measurements, catalogue, ids[:15], ids[15:])
    with pytest.raises(ValueError, match="duplicate"):
        grid_search(pd.concat([measurements, measurements.head(1)]), catalogue, ids[:15],
                    ids[15:], catalogue_cols=cols)
    with pytest.raises(ValueError, match="lack column"):
        grid_search(measurements, catalogue, ids[:15], ids[15:], length_col="L",
                    catalogue_cols=cols)


def test_measurement_table_matches_bar_lengths():
    rng = np.random.default_rng(0)
    maps = rng.uniform(0, 1, size=(3, 24, 24)) ** 4
    maps[:, 10:13, 4:20] = 1.0
    table = measurement_table(maps, ["a", "b", "c"], t_c=(0.8, 0.9), t_l=(5, 10, 40),
                              s_noise=0.1, model="vgg16")
    assert list(table.columns) == ["id", "t_c", "t_l", "s_noise", "model", "length_px"]
    assert len(table) == 3 * 2 * 3
    grid = bar_lengths(maps, [0.8, 0.9], [5, 10, 40])
    row = table[(table.id == "b") & (table.t_c == 0.9) & (table.t_l == 10)]
    assert row.length_px.item() == grid[1, 1, 1]
    with pytest.raises(ValueError, match="ids"):
        measurement_table(maps, ["a"])


def _lines(lengths, size=32, anti=False):
    """One diagonal (or anti-diagonal) line of n pixels per map, from pixel (2, 2)."""
    maps = np.zeros((len(lengths), size, size))
    for k, n in enumerate(lengths):
        i = np.arange(2, 2 + n)
        maps[k, i, size - 1 - i if anti else i] = 1.0
    return maps


def test_average_heatmaps_is_the_plain_mean_not_renormalised():
    a, b = _lines([10, 20]), _lines([10, 20], anti=True)
    mean = average_heatmaps([a, b])
    np.testing.assert_array_equal(mean, (a + b) / 2)
    assert mean.max() == 0.5            # disjoint peaks: max 0.5, empty mask at T = 0.5 → 1 px
    assert bar_length(mean[1], 0.85, 3, "fast", scale_to=None) == 1.0
    with pytest.raises(ValueError, match="at least two"):
        average_heatmaps([a])
    with pytest.raises(ValueError, match="shape"):
        average_heatmaps([a, b[:1]])


def test_method_measurements_defines_the_two_averages():
    n_a, n_b = np.array([5, 12, 20]), np.array([9, 6, 15])
    maps = {("vgg16", 0.1): _lines(n_a), ("xception", 0.1): _lines(n_b),
            ("vgg16", 0.2): _lines(n_b)}
    images = np.full((3, 32, 32, 3), 0.5)
    table = method_measurements(maps, ["a", "b", "c"], images=images, x_input=(False, True),
                                t_c=(0.85,), t_l=(3,), scale_to=None, algorithm="fast")
    assert list(table.columns) == ["id", "t_c", "t_l", "source", "s_noise", "x_input",
                                   "algorithm", "length_px"]
    # averages only at S = 0.1, where two models have maps
    combos = set(zip(table.source, table.s_noise))
    assert combos == {("vgg16", 0.1), ("xception", 0.1), ("averageheatmaps", 0.1),
                      ("averagemeasurements", 0.1), ("vgg16", 0.2)}
    raw = table[~table.x_input].set_index(["source", "s_noise", "id"])["length_px"].sort_index()
    step = np.sqrt(2)
    np.testing.assert_allclose(raw.loc[("vgg16", 0.1)], (n_a - 1) * step)
    np.testing.assert_allclose(raw.loc[("averagemeasurements", 0.1)],
                               ((n_a - 1) + (n_b - 1)) / 2 * step)
    # the mean map is 1 where the two lines overlap (the shorter), 0.5 elsewhere: T > 0.5 keeps
    # the overlap, so averageheatmaps measures the shorter line
    np.testing.assert_allclose(raw.loc[("averageheatmaps", 0.1)],
                               (np.minimum(n_a, n_b) - 1) * step)
    # x_input multiplies by the grayscale image (0.5): max ≤ 0.5, 1 px everywhere (faithful)
    assert (table[table.x_input].length_px == 1.0).all()
    # source_lengths at one setting agrees with the grid
    one = source_lengths(maps, "averagemeasurements", 0.1, 0.85, 3, scale_to=None)
    np.testing.assert_allclose(one, raw.loc[("averagemeasurements", 0.1)])
    xi = source_maps(maps, "averageheatmaps", 0.1, images=images, use_x_input=True)
    np.testing.assert_allclose(xi["averageheatmaps"][0],
                               x_input(average_heatmaps([_lines(n_a), _lines(n_b)])[0],
                                       images[0]))
    only = method_measurements(maps, ["a", "b", "c"], sources=["averageheatmaps"], t_c=(0.85,),
                               t_l=(3,))
    assert set(only.source) == {"averageheatmaps"}
    with pytest.raises(ValueError, match="at least two models"):
        method_measurements({("vgg16", 0.1): _lines(n_a)}, ["a", "b", "c"],
                            sources=["averagemeasurements"])
    with pytest.raises(ValueError, match="no maps of 'resnet50v2'"):
        source_maps(maps, "resnet50v2", 0.1)


def test_grid_search_by_searches_each_group_and_can_skip_failures():
    catalogue, measurements, truth = synthetic_measurements(n=60)
    cols = {"id": "objid", "r90": "R90"}
    flat = measurements.assign(length_px=5.0, source="constant")
    both = pd.concat([measurements.assign(source="good"), flat], ignore_index=True)
    val, test = split_catalogue(catalogue)
    kwargs = dict(by=["source"], settings=["t_c", "t_l", "x_input"], catalogue_cols=cols,
                  units="scaled", n_boot=50, n_perm=50)
    with pytest.raises(ValueError, match="undefined validation"):
        grid_search_by(both, catalogue, val.objid, test.objid, **kwargs)
    results = grid_search_by(both, catalogue, val.objid, test.objid, skip_failed=True, **kwargs)
    assert list(results) == ["good"]
    alone = grid_search(measurements, catalogue, val.objid, test.objid, catalogue_cols=cols,
                        units="scaled", n_boot=50, n_perm=50)
    assert results["good"].best == alone.best
    assert results["good"].rho_test == alone.rho_test
    # Only an undefined ρ is skipped: a real input error still surfaces.
    with pytest.raises(ValueError, match="validation galaxies; need at least 3"):
        grid_search_by(both, catalogue, val.objid[:2], test.objid, skip_failed=True, **kwargs)
