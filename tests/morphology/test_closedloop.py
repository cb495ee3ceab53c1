"""The tiny closed loop: simulated bars → votes → classifiers → SmoothGrad → lengths → ρ."""
import numpy as np
import pandas as pd
import pytest

from galaxai.config import read_config
from galaxai.morphology.closedloop import ClosedLoopConfig, make_data, run_closed_loop


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
    assert np.isfinite(main[["value", "low", "high"]].to_numpy()).all()
    assert (main["low"] <= main["value"] + 1e-12).all() and (main["value"] <= main["high"] + 1e-12).all()
    n_val = int(cfg.n_eval * cfg.validation_fraction)
    assert (table["n_test"] == cfg.n_eval - n_val).all()
    # the size null is one number per run: R90 vs the true length on the same test galaxies
    assert table.loc[table["statistic"] == "size_null", "value"].nunique() == 1
    pd.testing.assert_frame_equal(pd.read_csv(out / "rho.csv"), table, check_dtype=False)


def test_run_directory(run):
    out, cfg, _ = run
    for name in ("config.toml", "classifiers.csv", "measurements.csv.gz", "summary.json",
                 "history_control.csv", "fig3_saliency_bars.png", "fig4_measured_vs_true.png",
                 *(f"history_{a}.csv" for a in cfg.architectures)):
        assert (out / name).is_file(), name
    assert read_config(ClosedLoopConfig, out / "config.toml") == cfg


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
