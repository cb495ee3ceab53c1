"""closed_loop_section reads a closed-loop run directory and judges it against the size null."""
import pandas as pd
import pytest

from galaxai.viz.report import Report
from galaxai.morphology.closedloop import closed_loop_section


def _run_dir(path, xception_low):
    """A hand-written run directory: two methods and the control, size null 0.70 [0.60, 0.80]."""
    path.mkdir()
    pd.DataFrame([{"model": "xception", "epochs": 3, "val_rmse": 0.15, "val_rmse_constant": 0.18,
                   "class31_barred": 0.4, "class31_unbarred": 0.1}]).to_csv(
        path / "classifiers.csv", index=False)
    setting = dict(best_s_noise=0.1, best_x_input=False, best_t_c=0.85, best_t_l=40.0, n_test=50)
    rows = []
    for method, algorithm, value, low in (("xception", "paper", 0.9, xception_low),
                                          ("vgg16", "elongation", 0.5, 0.3),
                                          ("control", "regression", 0.72, 0.62)):
        rows += [dict(method=method, algorithm=algorithm, statistic="pearson_px", value=value,
                      low=low, high=min(value + 0.1, 1.0), **setting),
                 dict(method=method, algorithm=algorithm, statistic="size_null", value=0.70,
                      low=0.60, high=0.80, **setting),
                 dict(method=method, algorithm=algorithm, statistic="partial_r90", value=0.2,
                      low=0.05, high=0.35, **setting)]
    pd.DataFrame(rows).to_csv(path / "rho.csv", index=False)
    pd.DataFrame([dict(method="xception", algorithm="paper", stratum="bar_q", low_edge=0.2,
                       high_edge=0.3, bin="[0.2, 0.3)", n=7, pearson=0.5)]).to_csv(
        path / "stratified.csv", index=False)
    return path


@pytest.mark.parametrize("xception_low, beats", [(0.85, True), (0.75, False)])
def test_verdict_names_only_methods_above_the_size_null(tmp_path, xception_low, beats):
    report = Report("t")
    table = closed_loop_section(report, _run_dir(tmp_path / "run", xception_low), title="bars")
    html = report.write(tmp_path / "report").read_text()
    assert list(table["method"]) == ["xception", "vgg16", "control"]
    assert table.loc[0, "ρ measured vs true [95 % CI]"] == f"0.90 [{xception_low:.2f}, 1.00]"
    assert table.loc[2, "chosen on validation"] == "–"
    assert "0.70 [0.60, 0.80]" in html
    if beats:
        assert "above the size-only null: xception (paper)." in html
        assert "vgg16 (elongation)" not in html.split("above the size-only null")[1][:80]
    else:
        assert "interval lies above the size-only null: at this size" in html


def test_strata_are_shown_unless_switched_off(tmp_path):
    run = _run_dir(tmp_path / "run", 0.75)
    for strata in (True, False):
        report = Report("t")
        closed_loop_section(report, run, title="bars", strata=strata)
        html = report.write(tmp_path / f"report_{strata}").read_text()
        assert ("[0.2, 0.3)" in html) == strata
