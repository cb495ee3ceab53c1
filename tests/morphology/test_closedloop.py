"""The tiny closed loop: simulated bars → votes → classifiers → SmoothGrad → lengths → ρ."""
import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from galaxai.config import read_config
from galaxai.morphology import closedloop
from galaxai.morphology.closedloop import ClosedLoopConfig, make_data, run_closed_loop
from galaxai.morphology.gridsearch import paper_fit
from galaxai.morphology.strata import STRATA, simulation_covariates, stratified_correlations
from galaxai.morphology.training import ClassifierTrainConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("closedloop")
    cfg = ClosedLoopConfig.preset("tiny")
    return out, cfg, run_closed_loop(out, cfg)


def test_table_has_every_row_with_finite_rho_and_intervals(run):
    out, cfg, table = run
    methods = set(cfg.architectures) | {"averageheatmaps", "averagemeasurements", "image",
                                        "control"}
    assert set(table["method"]) == methods
    pairs = set(zip(table["method"], table["algorithm"]))
    for m in methods - {"control"}:
        assert {(m, "paper"), (m, "elongation")} <= pairs
    assert ("control", "regression") in pairs
    assert len(table) == 6 * (len(methods - {"control"}) * 2 + 1)
    main = table[table["statistic"] == "pearson_px"]
    finite = np.isfinite(main[["value", "low", "high"]].to_numpy()).all(axis=1)
    # ρ is undefined (NaN) only for a constant measurement. At 64² the no-network image null
    # can be one: its > T region is the PSF-sized core, 1 or √2 px in every galaxy.
    assert set(main.loc[~finite, "method"]) <= {"image"}
    if not finite.all():
        lengths = pd.read_csv(out / "measurements.csv.gz")
        assert lengths.loc[lengths["source"] == "image", "length_px"].max() <= 2.0
    main = main[finite]
    assert (main["low"] <= main["value"] + 1e-12).all() and (main["value"] <= main["high"] + 1e-12).all()
    n_val = int(cfg.n_eval * cfg.validation_fraction)
    assert (table["n_test"] == cfg.n_eval - n_val).all()
    # the size null is one number per run: R90 vs the true length on the same test galaxies
    assert table.loc[table["statistic"] == "size_null", "value"].nunique() == 1
    pd.testing.assert_frame_equal(pd.read_csv(out / "rho.csv"), table, check_dtype=False)


def test_origin_fit_is_reported_from_two_runs(run):
    out, cfg, table = run
    fit_cols = ["fit_slope", "fit_slope_err", "fit_rmse", "fit_rmse_identity", "fit_runs",
                "fit_sigma_meas"]
    saliency = table[table["method"] != "control"]
    assert np.isfinite(saliency[fit_cols].to_numpy(dtype=float)).all()
    assert (saliency["fit_slope"] > 0).all() and (saliency["fit_sigma_meas"] >= 0).all()
    runs = saliency.groupby("method")["fit_runs"].unique()
    assert {m: list(v) for m, v in runs.items()} == {
        m: [1 if m == "image" else 2] for m in runs.index}
    assert table.loc[table["method"] == "control", fit_cols].isna().all().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_control"] == cfg.n_control
    fits = pd.DataFrame(summary["origin_fit"]).set_index(["method", "algorithm"])
    one = saliency.drop_duplicates(["method", "algorithm"]).set_index(["method", "algorithm"])
    np.testing.assert_allclose(fits.loc[one.index, "slope"], one["fit_slope"])
    assert (fits["n"] == cfg.n_eval - int(cfg.n_eval * cfg.validation_fraction)).all()
    # the noise-free image null: the grid search's own single-run fit at its chosen setting
    m = pd.read_csv(out / "measurements.csv.gz")
    row = one.loc[("image", "paper")]
    sel = m[(m["source"] == "image") & (m["algorithm"] == "fast") & (m["t_c"] == row["best_t_c"])
            & (m["t_l"] == row["best_t_l"])].set_index("id")
    data = make_data(dataclasses.replace(cfg, n_train=8, n_val=4))  # eval set: its own stream
    ev = data.eval_catalogue.set_index("id").loc[data.test_ids]
    fit = paper_fit(sel.loc[data.test_ids, "length_gz"], ev["length_scaled"], ev["r90"])
    assert row["fit_slope"] == pytest.approx(fit.slope)
    assert row["fit_rmse"] == pytest.approx(fit.rmse)


def test_stratified_table_report_and_summary(run):
    out, cfg, table = run
    strat = pd.read_csv(out / "stratified.csv")
    assert set(zip(strat["method"], strat["algorithm"])) == set(zip(table["method"],
                                                                    table["algorithm"]))
    assert set(strat["stratum"]) == set(STRATA)
    n_test = cfg.n_eval - int(cfg.n_eval * cfg.validation_fraction)
    # every test galaxy falls in exactly one bin of each property
    assert (strat.groupby(["method", "algorithm", "stratum"])["n"].sum() == n_test).all()
    # one method recomputed from the measurements at its chosen setting
    row = table[(table["method"] == "averagemeasurements") & (table["algorithm"] == "paper")
                ].iloc[0]
    m = pd.read_csv(out / "measurements.csv.gz")
    sel = m[(m["source"] == "averagemeasurements") & (m["algorithm"] == "fast")
            & (m["x_input"] == row["best_x_input"]) & (m["s_noise"] == row["best_s_noise"])
            & (m["t_c"] == row["best_t_c"]) & (m["t_l"] == row["best_t_l"])].set_index("id")
    data = make_data(dataclasses.replace(cfg, n_train=8, n_val=4))
    ev = data.eval_catalogue.set_index("id").loc[data.test_ids]
    expected = stratified_correlations(sel.loc[data.test_ids, "length_px"],
                                       ev["length_true_px"], simulation_covariates(ev),
                                       n_boot=cfg.n_boot, seed=cfg.seed)
    got = strat[(strat["method"] == "averagemeasurements") & (strat["algorithm"] == "paper")]
    pd.testing.assert_frame_equal(got.drop(columns=["method", "algorithm"]).reset_index(drop=True),
                                  expected, check_dtype=False)
    html = (out / "report" / "index.html").read_text()
    assert "Stratified" in html and "bar_pa_axis_deg" in html and "snr_bar" in html
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["stratified"]) == len(strat) and "sky_sigma_r" in summary[
        "stratified_covariates"]


def test_run_directory(run):
    out, cfg, _ = run
    for name in ("config.toml", "classifiers.csv", "measurements.csv.gz", "summary.json",
                 "stratified.csv", "report/index.html",
                 "history_control.csv", "fig3_saliency_bars.png", "fig4_measured_vs_true.png",
                 *(f"history_{a}.csv" for a in cfg.architectures)):
        assert (out / name).is_file(), name
    assert read_config(ClosedLoopConfig, out / "config.toml") == cfg


def test_saved_classifiers_reproduce_the_validation_scores(run):
    from galaxai.models.morphology import GZ_COLUMNS
    from galaxai.morphology import load_classifier, predict

    out, cfg, _ = run
    data = make_data(cfg)
    scores = pd.read_csv(out / "classifiers.csv").set_index("model")
    barred = data.val_catalogue["has_bar"].to_numpy(dtype=bool)
    for arch in cfg.architectures:
        model, sidecar = load_classifier(out / "classifiers" / arch)
        assert sidecar["architecture"] == arch and not model.training
        pred = predict(model, data.val_images, list(data.val_catalogue["id"]), columns=GZ_COLUMNS)
        rmse = np.sqrt(np.mean((pred.to_numpy() - data.val_votes.to_numpy()) ** 2))
        assert rmse == pytest.approx(scores.loc[arch, "val_rmse"], rel=1e-5)
        assert pred["Class3.1"].to_numpy()[barred].mean() == pytest.approx(
            scores.loc[arch, "class31_barred"], rel=1e-5)


def test_data_split_and_truth_are_seeded():
    cfg = ClosedLoopConfig.preset("tiny", n_train=8, n_val=4)
    a, b = make_data(cfg), make_data(cfg)
    np.testing.assert_array_equal(a.eval_images, b.eval_images)
    assert a.validation_ids == b.validation_ids and not set(a.validation_ids) & set(a.test_ids)
    ev = a.eval_catalogue
    assert ev["has_bar"].all() and len(ev) == cfg.n_eval
    np.testing.assert_allclose(ev["length_scaled"] * 2 * ev["r90"], ev["bar_length_proj_px"])
    assert a.images.shape[1:] == (cfg.sim.frame, cfg.sim.frame, 3)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="architectures"):
        ClosedLoopConfig.preset("tiny", architectures=("alexnet",))
    with pytest.raises(ValueError, match="fewer than 3"):
        ClosedLoopConfig.preset("tiny", n_eval=4)


def test_control_presets_keep_the_authors_ratio():
    assert ClosedLoopConfig().n_control == 2520
    for name in ClosedLoopConfig.PRESETS:
        cfg = ClosedLoopConfig.preset(name)
        assert cfg.n_control / cfg.n_eval == pytest.approx(0.8, abs=0.03)
    with pytest.raises(ValueError, match="n_control"):
        ClosedLoopConfig.preset("tiny", n_control=0)


def test_control_subset_is_seeded_barred_and_sized():
    barred = np.arange(60) % 3 != 0
    data = SimpleNamespace(catalogue=pd.DataFrame({"has_bar": barred}))
    cfg = ClosedLoopConfig.preset("tiny", n_control=25)
    a = closedloop._control_subset(cfg, data)
    assert np.array_equal(a, closedloop._control_subset(cfg, data))
    assert len(a) == 25 == len(set(a)) and barred[a].all() and np.all(np.diff(a) > 0)
    other = closedloop._control_subset(ClosedLoopConfig.preset("tiny", n_control=25, seed=1), data)
    assert not np.array_equal(a, other)
    with pytest.raises(ValueError, match="n_control=41 .* only 40 barred"):
        closedloop._control_subset(ClosedLoopConfig.preset("tiny", n_control=41), data)


def test_control_trains_on_the_aligned_subset(monkeypatch, tmp_path):
    cfg = ClosedLoopConfig.preset("tiny", n_train=40, n_val=4, n_control=6,
                                  control_train=ClassifierTrainConfig.preset("tiny", epochs=1))
    data = make_data(cfg)
    seen = {}
    real = closedloop.train_control

    def spy(images, lengths, *args, **kwargs):
        seen.update(images=np.asarray(images), lengths=np.asarray(lengths))
        return real(images, lengths, *args, **kwargs)

    monkeypatch.setattr(closedloop, "train_control", spy)
    rows, pred = closedloop._control(cfg, data, tmp_path, False)
    idx = closedloop._control_subset(cfg, data)
    assert data.catalogue["has_bar"].sum() > cfg.n_control == len(seen["lengths"])
    np.testing.assert_array_equal(seen["images"], data.images[idx])
    np.testing.assert_array_equal(seen["lengths"], data.catalogue["length_scaled"].iloc[idx])
    assert list(pred.index) == list(data.test_ids)
