"""Tests of galaxai.data.simulate: determinism, truth, noise, display, COSMOS mode, bad input."""
from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import galaxai
from galaxai import _data
from galaxai.config import read_config, write_config
from galaxai.data import simulate as sim
from galaxai.data.simulate import (COMPONENTS, GalaxySample, SimConfig, bar_image, find_cosmos_dir,
                                   observe, simulate, to_display)

TINY = SimConfig.preset("tiny")
BARRED = dataclasses.replace(TINY, bar_fraction=1.0, arms_fraction=1.0, knots_fraction=1.0)


@pytest.fixture(scope="module")
def tiny() -> GalaxySample:
    return simulate(10, seed=7, config=TINY)


@pytest.fixture(scope="module")
def barred() -> GalaxySample:
    sample = simulate(16, seed=3, config=BARRED)
    assert sample.catalogue["has_bar"].sum() >= 3, "fixture should contain several bars"
    return sample


def _cosmos_dir() -> Path:
    return _data.cosmos_dir()


# ------------------------------------------------------------------------ shapes and truth
def test_shapes_dtypes_and_ranges(tiny):
    n, f = 10, TINY.frame
    assert len(tiny) == n
    for arr in (tiny.flux, tiny.noiseless, *tiny.components.values()):
        assert arr.shape == (n, 3, f, f) and arr.dtype == np.float32
        assert np.isfinite(arr).all()
    assert set(tiny.components) == set(COMPONENTS)
    assert tiny.sky_sigma.shape == (n, 3) and tiny.sky_sigma.dtype == np.float32
    assert (tiny.sky_sigma > 0).all()
    assert tiny.display.shape == (n, f, f, 3) and tiny.display.dtype == np.float32
    assert tiny.display.min() >= 0 and tiny.display.max() <= 1
    cat = tiny.catalogue
    assert isinstance(cat, pd.DataFrame) and len(cat) == n
    assert list(cat["index"]) == list(range(n)) and (cat["seed"] == 7).all()
    for col in ("mag_g", "mag_r", "mag_i", "r50_px", "bt", "psf_fwhm_r_arcsec", "bar_length_px",
                "bar_length_proj_px", "bar_pa_deg", "sky_sigma_r", "disk_incl_deg"):
        assert col in cat.columns, col
    # sky_sigma in the catalogue is the array's.
    np.testing.assert_allclose(cat[["sky_sigma_g", "sky_sigma_r", "sky_sigma_i"]].to_numpy(),
                               tiny.sky_sigma, rtol=1e-6)


def test_components_sum_to_noiseless_and_absent_are_zero(tiny, barred):
    for sample in (tiny, barred):
        total = sum(c.astype(np.float64) for c in sample.components.values())
        scale = np.abs(sample.noiseless).max()
        np.testing.assert_allclose(total, sample.noiseless, rtol=0, atol=1e-6 * scale)
        cat = sample.catalogue
        for name in ("bar", "arms", "knots"):
            absent = ~cat[f"has_{name}"].to_numpy()
            assert not sample.components[name][absent].any()
            if (~absent).any():
                assert (sample.components[name][~absent].sum(axis=(1, 2, 3)) > 0).all()


def test_component_fluxes_match_catalogue(barred):
    """Drawn flux of each component ≈ the catalogue's (little light falls outside 48 px)."""
    cat = barred.catalogue
    for name in ("bulge", "bar"):
        rows = cat.index[cat[f"frac_{name}"] > 0]
        for i in rows:
            want = cat.loc[i, f"flux_r_{name}"]
            got = barred.components[name][i, 1].sum(dtype=np.float64)
            assert got == pytest.approx(want, rel=0.1), (name, i)


def test_colours_bulges_red_disks_and_knots_blue():
    rng = np.random.default_rng(1)
    cfg = SimConfig.preset("paper")
    draws = pd.DataFrame([sim._draw_parametric(rng, cfg) for _ in range(1500)])
    assert draws["gr_bulge"].mean() > draws["gr_disk"].mean() + 0.1
    assert draws["gr_knots"].mean() < draws["gr_disk"].mean() - 0.1
    # Sizes that are interesting for deblending at 142 px.
    assert 4 <= draws["r50_px"].median() <= 15
    assert draws["r50_px"].between(*cfg.r50_px_range).all()
    # Bar fraction among eligible disks (B/T < 0.6, i ≤ 60°) ≈ bar_fraction.
    eligible = (draws["bt"] < 0.6) & (draws["disk_cos_i"] >= 0.5)
    assert draws.loc[eligible, "has_bar"].mean() == pytest.approx(cfg.bar_fraction, abs=0.06)
    assert not draws.loc[~eligible, "has_bar"].any()
    bars = draws[draws["has_bar"]]
    assert (bars["bar_length_scaled"] <= cfg.bar_length_scaled_max).all()
    np.testing.assert_allclose(bars["bar_a_px"], bars["bar_length_scaled"] * bars["disk_r90_px"])
    assert draws["mag_r_drawn"].between(*cfg.mag_range).all()


def test_embedded_hoyle_quantiles_match_the_catalogue():
    cat = pd.read_csv(_data.hoyle_catalogue())
    q = np.percentile(cat["length_scaled"], np.linspace(0, 100, sim._HOYLE_LENGTH_SCALED_Q.size))
    np.testing.assert_allclose(sim._HOYLE_LENGTH_SCALED_Q, q, atol=6e-5)
    ratio = cat["width_avg"] / cat["length_avg"]
    q = np.percentile(ratio, np.linspace(0, 100, sim._HOYLE_WIDTH_RATIO_Q.size))
    np.testing.assert_allclose(sim._HOYLE_WIDTH_RATIO_Q, q, atol=6e-5)


# ------------------------------------------------------------------------ inclination, q_b
# (disk_cos_i, bar_q) of galaxies of seed 5 under TINY with bar_fraction 1, computed with the
# simulator before ``disk_cos_i_min`` and ``bar_q_range`` existed (cos i ~ U(0.1, 1), q_b
# clipped to [0.15, 0.5]): q_b at both clip limits, unbarred disks beyond 60°, plain bars.
_PREVIOUS_DRAWS = {
    0: (0.30599905930471977, None), 4: (0.38504825212567406, None),
    11: (0.8138760423385747, 0.15), 16: (0.6439782515617619, 0.15),
    14: (0.6029463010875598, 0.5), 114: (0.6202855936246848, 0.5),
    1: (0.5899254472583226, 0.17882023609132439), 2: (0.9984075151939964, 0.1989913205032069),
    7: (0.5098305543271262, 0.16317668542188352),
}


def _draws(cfg: SimConfig, n: int, seed: int = 5) -> pd.DataFrame:
    """Parameters (no rendering) of galaxies 0 … n − 1 of stream ``seed``."""
    return pd.DataFrame([sim._draw_parametric(sim._galaxy_rngs(seed, i)[0], cfg)
                         for i in range(n)])


def _closed_loop_sim() -> SimConfig:
    from galaxai.morphology.closedloop import ClosedLoopConfig

    return ClosedLoopConfig.preset("tiny").sim


def test_default_priors_reproduce_the_previous_draws():
    cfg = dataclasses.replace(TINY, bar_fraction=1.0)
    assert (cfg.disk_cos_i_min, cfg.bar_q_range) == (0.1, (0.15, 0.5))
    for i, (cos_i, q) in _PREVIOUS_DRAWS.items():
        p = sim._draw_parametric(sim._galaxy_rngs(5, i)[0], cfg)
        assert p["disk_cos_i"] == cos_i and p["has_bar"] == (q is not None), i
        if q is not None:
            assert p["bar_q"] == q, i


def test_default_priors_keep_the_previous_rule():
    draws = _draws(dataclasses.replace(TINY, bar_fraction=1.0), 400)
    assert draws["disk_cos_i"].between(0.1, 1.0).all() and draws["disk_cos_i"].min() < 0.2
    bars = draws[draws["has_bar"]]
    assert (bars["disk_cos_i"] >= 0.5).all() and (bars["bt"] < 0.6).all()
    assert bars["bar_q"].between(0.15, 0.5).all()
    assert (bars["bar_q"] == 0.15).any() and (bars["bar_q"] == 0.5).any()


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_closed_loop_presets_use_the_spec10_priors(preset):
    from galaxai.morphology.closedloop import ClosedLoopConfig

    cfg = ClosedLoopConfig.preset(preset).sim
    assert cfg.disk_cos_i_min == 0.5 and cfg.bar_q_range == (0.2, 0.45)
    assert cfg.psf_fwhm_per_r90 == (0.046, 0.12)


def test_closed_loop_catalogue_within_60_degrees_and_q_b_range():
    cfg = _closed_loop_sim()
    cat = simulate(12, seed=4, config=cfg).catalogue
    assert cat["disk_incl_deg"].max() <= 60.0 and cat["has_bar"].sum() >= 4
    assert cat.loc[cat["has_bar"], "bar_q"].between(0.2, 0.45).all()
    draws = _draws(cfg, 600)
    assert draws["disk_incl_deg"].max() <= 60.0 and draws["disk_incl_deg"].min() < 10.0
    q = draws.loc[draws["has_bar"], "bar_q"]
    assert q.between(0.2, 0.45).all() and q.nunique() > 100


def test_closed_loop_q_b_follows_hoyle_truncated_not_clipped():
    from scipy.stats import ks_2samp

    cfg = _closed_loop_sim()
    assert cfg.bar_q_rule == "truncate"
    q = _draws(dataclasses.replace(cfg, bar_fraction=1.0), 1500).query("has_bar")["bar_q"]
    assert not q.isin([0.2, 0.45]).any()
    # Reference by rejection: untruncated inverse-CDF draws, kept when inside the range.
    table = sim._HOYLE_WIDTH_RATIO_Q
    u = np.random.default_rng(0).uniform(size=20000)
    ref = np.interp(u, np.linspace(0, 1, table.size), table)
    ref = ref[(ref >= 0.2) & (ref <= 0.45)]
    assert ks_2samp(q, ref).pvalue > 0.01
    clipped = _draws(dataclasses.replace(cfg, bar_fraction=1.0, bar_q_rule="clip"), 1500)
    assert ks_2samp(clipped.query("has_bar")["bar_q"], ref).pvalue < 1e-6


def test_psf_fwhm_per_r90_frames_the_psf_like_galaxy_zoo():
    from scipy.stats import kstest

    lo, hi = 0.046, 0.12
    default = dataclasses.replace(TINY, bar_fraction=1.0)
    framed = _draws(dataclasses.replace(default, psf_fwhm_per_r90=(lo, hi)), 600)
    plain = _draws(default, 600)
    # R90 of an exponential disk: 3.8897 h and r50 = 1.67835 h (Graham & Driver 2005).
    share = framed["psf_fwhm_r_px"] / (framed["r50_px"] * 3.8897 / 1.67835)
    assert share.between(lo, hi).all()
    assert kstest(np.log(share), "uniform", args=(np.log(lo), np.log(hi / lo))).pvalue > 0.01
    np.testing.assert_allclose(framed["psf_fwhm_g_arcsec"] / framed["psf_fwhm_r_arcsec"],
                               (4770 / 6231) ** -0.2, rtol=0.01)
    # Only the PSF changes: every other draw is the default's.
    for column in ("r50_px", "mag_r_drawn", "disk_cos_i", "bar_q", "sky_r"):
        pd.testing.assert_series_equal(framed[column], plain[column])
    assert not plain["psf_fwhm_r_px"].equals(framed["psf_fwhm_r_px"])


def _barred_share_z(draws: pd.DataFrame, edges: tuple[float, float, float]) -> float:
    """z-score of the difference in barred share of disks between two inclination bins."""
    disks = draws[draws["bt"] < 0.6]
    lo = disks["disk_incl_deg"].between(edges[0], edges[1], inclusive="left")
    hi = disks["disk_incl_deg"].between(edges[1], edges[2], inclusive="both")
    p1, p2 = disks.loc[lo, "has_bar"].mean(), disks.loc[hi, "has_bar"].mean()
    p = disks.loc[lo | hi, "has_bar"].mean()
    se = math.sqrt(p * (1 - p) * (1 / lo.sum() + 1 / hi.sum()))
    return (p1 - p2) / se


def test_barred_share_does_not_depend_on_inclination_in_the_closed_loop():
    cfg = _closed_loop_sim()
    assert abs(_barred_share_z(_draws(cfg, 2000), (0.0, 30.0, 60.0))) < 3
    # The same test catches the default prior's shortcut: nothing beyond 60° is barred.
    default = dataclasses.replace(cfg, disk_cos_i_min=0.1)
    assert _barred_share_z(_draws(default, 2000), (0.0, 60.0, 90.0)) > 10


# ------------------------------------------------------------------------------------ bars
def _forward_bar_points(row, k: int = 801):
    """Points of the in-plane Ferrers region m < 1 mapped forward to the sky (test's own
    projection: bar frame -> disk plane -> inclined, rotated sky)."""
    a, q, c = row["bar_a_px"], row["bar_q"], row["bar_c"]
    u, v = np.meshgrid(np.linspace(-a, a, k), np.linspace(-q * a, q * a, k // 2))
    inside = (np.abs(u / a) ** c + np.abs(v / (q * a)) ** c) < 1
    u, v = u[inside], v[inside]
    phi, inc, pa = (math.radians(row["bar_phi_deg"]), math.radians(row["disk_incl_deg"]),
                    math.radians(row["disk_pa_deg"]))
    xd, yd = u * math.cos(phi) - v * math.sin(phi), u * math.sin(phi) + v * math.cos(phi)
    yd = yd * math.cos(inc)
    return xd * math.cos(pa) - yd * math.sin(pa), xd * math.sin(pa) + yd * math.cos(pa)


def test_bar_truth_matches_independent_ferrers_geometry(barred):
    cat = barred.catalogue[barred.catalogue["has_bar"]]
    for _, row in cat.iterrows():
        x, y = _forward_bar_points(row)
        r = np.hypot(x, y)
        # Point-symmetric region: diameter = 2 max radius; brute force on a subsample agrees.
        assert row["bar_extent_px"] == pytest.approx(2 * r.max(), rel=2e-3)
        assert row["bar_length_px"] == pytest.approx(2 * row["bar_a_px"])
        phi, inc = math.radians(row["bar_phi_deg"]), math.radians(row["disk_incl_deg"])
        tip = np.array([math.cos(phi), math.sin(phi) * math.cos(inc)]) * row["bar_a_px"]
        assert row["bar_length_proj_px"] == pytest.approx(2 * np.hypot(*tip), rel=1e-9)
        assert row["bar_extent_px"] >= row["bar_length_proj_px"] - 1e-9
        # Sky PA of the projected major axis: direction of the tip point.
        pa = math.radians(row["disk_pa_deg"])
        tx = tip[0] * math.cos(pa) - tip[1] * math.sin(pa)
        ty = tip[0] * math.sin(pa) + tip[1] * math.cos(pa)
        d = (math.degrees(math.atan2(ty, tx)) - row["bar_pa_deg"]) % 180
        assert min(d, 180 - d) < 1e-6
        assert row["bar_resolved"] == (row["bar_length_proj_px"] / 2 >= 2 * row["psf_fwhm_r_px"])


def test_bar_image_nonzero_extent_matches_catalogue(barred):
    f, os_ = BARRED.frame, 4
    cat = barred.catalogue[barred.catalogue["has_bar"]]
    for _, row in cat.iterrows():
        img = bar_image(row, f, oversample=os_)
        assert img.shape == (f * os_, f * os_) and img.max() <= 1.0
        rows, cols = np.nonzero(img > 0)
        centre = (f * os_ - 1) / 2
        x, y = (cols - centre) / os_, (rows - centre) / os_
        pts = np.stack([x, y], 1)[:: max(1, len(x) // 1500)]
        diam = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)).max()
        # Sub-pixel centres: the sampled diameter is within two sample steps of the exact one.
        assert diam == pytest.approx(row["bar_extent_px"], abs=2.0 / os_ + 0.05)
        # The projected tips of the major axis: inside just before a, outside just after.
        phi, inc, pa = (math.radians(row["bar_phi_deg"]), math.radians(row["disk_incl_deg"]),
                        math.radians(row["disk_pa_deg"]))
        for frac, expect in ((0.9, True), (1.1, False)):
            u = frac * row["bar_a_px"]
            xd, yd = u * math.cos(phi), u * math.sin(phi) * math.cos(inc)
            sx, sy = xd * math.cos(pa) - yd * math.sin(pa), xd * math.sin(pa) + yd * math.cos(pa)
            j, i = int(round(sx * os_ + centre)), int(round(sy * os_ + centre))
            if 0 <= i < f * os_ and 0 <= j < f * os_:
                assert (img[i, j] > 0) == expect


def test_bar_component_light_follows_the_bar(barred):
    cat = barred.catalogue
    f = BARRED.frame
    t = np.arange(f) - (f - 1) / 2
    xx, yy = np.meshgrid(t, t)
    for i in cat.index[cat["has_bar"]]:
        row = cat.loc[i]
        img = barred.components["bar"][i, 1].astype(np.float64)
        total = img.sum()
        r = np.hypot(xx, yy)
        reach = row["bar_extent_px"] / 2 + 2 * row["psf_fwhm_r_px"]
        assert img[r > reach].sum() < 0.02 * total
        # Second moments: orientation of the PSF-convolved bar = catalogue PA (elongated cases).
        mxx, myy, mxy = [(img * w).sum() / total for w in (xx * xx, yy * yy, xx * yy)]
        elong = math.hypot(mxx - myy, 2 * mxy) / (mxx + myy)
        if elong > 0.2:
            angle = 0.5 * math.degrees(math.atan2(2 * mxy, mxx - myy)) % 180
            d = abs(angle - row["bar_pa_deg"]) % 180
            assert min(d, 180 - d) < 8.0


def test_bar_image_rejects_unbarred_rows(tiny):
    row = tiny.catalogue.iloc[0].copy()
    row["has_bar"] = False
    with pytest.raises(ValueError, match="no bar"):
        bar_image(row, 48)


# ------------------------------------------------------------------------- determinism
def test_same_seed_identical_bytes_other_seed_differs(tiny):
    again = simulate(10, seed=7, config=TINY)
    assert again.flux.tobytes() == tiny.flux.tobytes()
    assert again.noiseless.tobytes() == tiny.noiseless.tobytes()
    assert again.display.tobytes() == tiny.display.tobytes()
    for name in COMPONENTS:
        assert again.components[name].tobytes() == tiny.components[name].tobytes()
    pd.testing.assert_frame_equal(again.catalogue, tiny.catalogue)
    other = simulate(10, seed=8, config=TINY)
    assert not np.array_equal(other.flux, tiny.flux)
    assert not np.array_equal(other.catalogue["mag_r"], tiny.catalogue["mag_r"])


def test_galaxy_i_independent_of_n_and_chunking(tiny):
    head = simulate(4, seed=7, config=TINY)
    tail = simulate(3, seed=7, config=TINY, start=7)
    assert head.flux.tobytes() == tiny.flux[:4].tobytes()
    assert tail.flux.tobytes() == tiny.flux[7:].tobytes()
    assert list(tail.catalogue["index"]) == [7, 8, 9]
    cols = [c for c in tiny.catalogue.columns if c != "r50_measured_px"]
    pd.testing.assert_frame_equal(tail.catalogue[cols].reset_index(drop=True),
                                  tiny.catalogue[cols].iloc[7:].reset_index(drop=True))


def test_zero_galaxies():
    empty = simulate(0, seed=1, config=TINY)
    assert empty.flux.shape == (0, 3, 48, 48) and empty.display.shape == (0, 48, 48, 3)
    assert len(empty.catalogue) == 0


# --------------------------------------------------------------------------------- noise
def test_noise_is_sky_plus_poisson(tiny):
    cat = tiny.catalogue
    gain = np.asarray(TINY.gain)[None, :, None, None]
    sigma = tiny.sky_sigma.astype(np.float64)[:, :, None, None]
    resid = tiny.flux.astype(np.float64) - tiny.noiseless
    expected_var = sigma**2 + np.clip(tiny.noiseless, 0, None) / gain
    z = resid / np.sqrt(expected_var)
    assert abs(z.mean()) < 0.02
    assert z.std() == pytest.approx(1.0, abs=0.02)
    # Empty sky: std = sky_sigma per band.
    empty = tiny.noiseless < 0.02 * sigma
    for k in range(3):
        ratio = resid[:, k][empty[:, k]].std() / np.sqrt((sigma[:, k, 0, 0] ** 2).mean())
        assert ratio == pytest.approx(1.0, abs=0.04)
    # Bright pixels are noisier than the sky (Poisson term present).
    bright = tiny.noiseless > 20 * sigma
    assert bright.sum() > 50
    assert resid[bright].std() > 2 * sigma.mean()
    assert cat["sky_r"].to_numpy() == pytest.approx(
        (tiny.sky_sigma[:, 1].astype(np.float64) ** 2 * TINY.gain[1]), rel=1e-5)


def test_observe_variance_and_shapes():
    rng = np.random.default_rng(0)
    signal = np.full((3, 200, 200), 400.0, np.float32)
    sigma = np.array([3.0, 4.0, 5.0])
    noisy = observe(signal, sigma, rng, gain=(4.0, 4.0, 4.0))
    assert noisy.shape == signal.shape and noisy.dtype == np.float32
    var = (noisy - signal).reshape(3, -1).var(axis=1)
    np.testing.assert_allclose(var, sigma**2 + 400.0 / 4.0, rtol=0.03)
    batch = observe(np.zeros((2, 3, 8, 8)), np.ones((2, 3)), 1)
    assert batch.shape == (2, 3, 8, 8)
    same = observe(np.zeros((2, 3, 8, 8)), np.ones((2, 3)), 1)
    assert batch.tobytes() == same.tobytes()


@pytest.mark.parametrize("args, match", [
    ((np.zeros((4, 8, 8)), np.ones(3)), "shape"),
    ((np.zeros((3, 8, 8)), np.ones(2)), "sky_sigma"),
    ((np.zeros((3, 8, 8)), -np.ones(3)), "≥ 0"),
    ((np.full((3, 8, 8), np.nan), np.ones(3)), "NaN"),
])
def test_observe_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        observe(*args, np.random.default_rng(0))


# ------------------------------------------------------------------------------- display
def test_to_display_fixed_stretch_and_channel_order(tiny):
    assert to_display(tiny.flux).tobytes() == tiny.display.tobytes()
    # Dataset-wide: one image maps the same alone or in a batch.
    np.testing.assert_array_equal(to_display(tiny.flux[3:4])[0], tiny.display[3])
    np.testing.assert_array_equal(to_display(tiny.flux[3]), tiny.display[3])
    only_i = np.zeros((1, 3, 4, 4), np.float32)
    only_i[0, 2] = 50.0
    rgb = to_display(only_i)[0]
    assert (rgb[..., 0] > 0).all() and not rgb[..., 1:].any()  # i -> R
    only_g = np.zeros((1, 3, 4, 4), np.float32)
    only_g[0, 0] = 50.0
    assert not to_display(only_g)[0][..., :2].any()  # g -> B
    # Brighter flux -> brighter display, saturating at 1; negative sky -> 0.
    levels = np.array([-10.0, 0.0, 10.0, 100.0, 1e3, 1e6])
    rgb = to_display(np.broadcast_to(levels[None, None, None, :], (1, 3, 1, 6)))[0, 0]
    ramp = rgb.max(axis=-1)  # Lupton keeps the hue: the largest channel saturates at 1
    assert ramp[0] == 0 and ramp[1] == 0 and np.all(np.diff(ramp[1:]) > 0) and ramp[-1] == 1.0
    assert np.all(rgb[2:, 2] >= rgb[2:, 1])  # weights: g (blue) × 1.5 ≥ r (green) × 1.1


def test_to_display_bad_input():
    with pytest.raises(ValueError, match="shape"):
        to_display(np.zeros((2, 4, 5, 5)))
    with pytest.raises(ValueError, match="NaN"):
        to_display(np.full((1, 3, 2, 2), np.nan))


# -------------------------------------------------------------------------------- config
def test_presets_and_toml_round_trip(tmp_path):
    assert SimConfig.preset("paper").frame == 142
    assert SimConfig.preset("small").frame == 142
    assert SimConfig.preset("tiny").frame == 48
    with pytest.raises(ValueError, match="unknown SimConfig preset 'huge'"):
        SimConfig.preset("huge")
    path = write_config(tmp_path / "sim.toml", BARRED)
    assert read_config(SimConfig, path) == BARRED
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.frame = 10  # type: ignore[misc]


@pytest.mark.parametrize("field, value", [
    ("frame", 8), ("frame", 48.0), ("bar_fraction", 1.5), ("psf", "gaussian"),
    ("seeing_range", (2.0, 1.0)), ("gain", (1.0, 2.0)), ("oversample", 0), ("moffat_beta", ()),
    ("disk_cos_i_min", 0.0), ("disk_cos_i_min", 1.2), ("disk_cos_i_min", float("nan")),
    ("bar_q_rule", "uniform"), ("psf_fwhm_per_r90", (0.1, 0.05)),
    ("psf_fwhm_per_r90", (0.0, 0.1)), ("bar_q_range", (0.45, 0.2)), ("bar_q_range", (0.0, 0.45)),
    ("bar_q_range", (0.2, 1.5)),
])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"SimConfig.{field}"):
        dataclasses.replace(TINY, **{field: value})


def test_truncated_q_b_range_must_overlap_hoyle():
    dataclasses.replace(TINY, bar_q_range=(0.7, 0.9))  # clipping may pile every bar at 0.7
    with pytest.raises(ValueError, match=r"SimConfig.bar_q_range.*below 0\.663"):
        dataclasses.replace(TINY, bar_q_range=(0.7, 0.9), bar_q_rule="truncate")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=-1), ValueError, "n must be an integer"),
    (dict(n=2.5), ValueError, "n must be an integer"),
    (dict(n=True), ValueError, "n must be an integer"),
    (dict(n=1, seed=-3), ValueError, "seed must be an integer"),
    (dict(n=1, start=-1), ValueError, "start must be an integer"),
    (dict(n=1, mode="hst"), ValueError, "mode must be"),
    (dict(n=1, config="tiny"), TypeError, "SimConfig"),
])
def test_simulate_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate(**kwargs)


def test_kolmogorov_psf_and_progress_bar(capsys):
    cfg = dataclasses.replace(TINY, psf="kolmogorov")
    out = simulate(2, seed=1, config=cfg, progress=True)
    assert np.isnan(out.catalogue["psf_beta"]).all()
    assert (out.catalogue["psf_model"] == "kolmogorov").all()
    assert "simulate" in capsys.readouterr().err
    # Only the PSF differs from the Moffat run: same drawn magnitudes.
    moffat = simulate(2, seed=1, config=TINY)
    np.testing.assert_allclose(out.catalogue["mag_r"], moffat.catalogue["mag_r"])


# -------------------------------------------------------------------------------- cosmos
def test_cosmos_missing_directory_is_a_clear_error(tmp_path, monkeypatch):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match="GALAXAI_COSMOS_DIR") as info:
        find_cosmos_dir(missing)
    assert str(missing) in str(info.value)
    monkeypatch.setenv("GALAXAI_COSMOS_DIR", str(missing))
    with pytest.raises(FileNotFoundError, match="cosmos_dir=") as info:
        simulate(1, config=TINY, mode="cosmos")
    assert str(missing) in str(info.value)


def test_cosmos_dir_from_environment(monkeypatch, tmp_path):
    copy = tmp_path / "my_cosmos"
    shutil.copytree(_cosmos_dir(), copy)
    monkeypatch.setenv("GALAXAI_COSMOS_DIR", str(copy))
    monkeypatch.chdir(tmp_path)
    assert find_cosmos_dir() == copy.resolve()


def test_cosmos_mode_runs_from_a_folder_without_shared(monkeypatch, tmp_path):
    """The installed package finds its own COSMOS copy: no ../shared, no environment variable."""
    monkeypatch.delenv("GALAXAI_COSMOS_DIR", raising=False)
    lonely = tmp_path / "a" / "b"
    lonely.mkdir(parents=True)
    monkeypatch.chdir(lonely)
    assert not (lonely / ".." / "shared").exists()
    found = find_cosmos_dir()
    assert found.is_relative_to(Path(galaxai.__file__).resolve().parent)
    out = simulate(1, seed=2, config=TINY, mode="cosmos")
    assert out.catalogue.loc[0, "mode"] == "cosmos" and out.noiseless.sum() > 0


def test_cosmos_mode_draws_real_galaxies():
    found = _cosmos_dir()
    out = simulate(3, seed=5, config=TINY, mode="cosmos", cosmos_dir=found)
    again = simulate(3, seed=5, config=TINY, mode="cosmos", cosmos_dir=found)
    assert out.flux.tobytes() == again.flux.tobytes()
    assert set(out.components) == {"galaxy"}
    assert out.components["galaxy"].tobytes() == out.noiseless.tobytes()
    cat = out.catalogue
    assert cat["cosmos_index"].between(0, 99).all() and (cat["mode"] == "cosmos").all()
    for i in range(3):
        want = cat.loc[i, "flux_r_galaxy"]
        assert out.noiseless[i, 1].sum(dtype=np.float64) == pytest.approx(want, rel=0.15)
        # Colours come from the drawn g-r, r-i: flux ratio across bands.
        got = -2.5 * np.log10(cat.loc[i, "flux_g_galaxy"] / cat.loc[i, "flux_r_galaxy"])
        assert got + TINY.zeropoint[0] - TINY.zeropoint[1] == pytest.approx(cat.loc[i, "gr_galaxy"])
    # The flux cap keeps the re-observed HST noise below the requested share of the sky.
    for b in "gri":
        assert (cat[f"hst_noise_var_{b}"] <= TINY.cosmos_max_noise_frac
                * cat[f"sky_sigma_{b}"] ** 2 * (1 + 1e-9)).all()
    resid = out.flux.astype(np.float64) - out.noiseless
    assert resid.std() == pytest.approx(out.sky_sigma.mean(), rel=0.15)
