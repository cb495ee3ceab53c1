"""galaxai.guided.convergence against hand-computed references."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from galaxai.guided.convergence import (
    area_under_curve,
    arm_curves,
    arm_summary,
    at_wallclock,
    contrasts,
    paired_differences,
    report_section,
    to_target,
    verdict,
)
from galaxai.viz.report import Report


def _rows(runs: dict) -> pd.DataFrame:
    """runs: (arm, seed) -> (wall_s list, psnr list) at iterations 0, 10, 20."""
    out = []
    for (arm, seed), (wall, psnr) in runs.items():
        for it, w, p in zip((0, 10, 20), wall, psnr):
            out.append({"arm": arm, "seed": seed, "iteration": it, "wall_s": w, "psnr": p})
    return pd.DataFrame(out)


@pytest.fixture
def rows():
    return _rows({
        ("baseline", 0): ([0, 5, 10], [10, 12, 14]),
        ("baseline", 1): ([0, 5, 10], [12, 12, 16]),
        ("saliency", 0): ([0, 10, 20], [10, 13, 15]),
        ("saliency", 1): ([0, 10, 20], [12, 14, 19]),
    })


def test_arm_curves_mean_and_sd(rows):
    c = arm_curves(rows, "psnr").set_index(["arm", "iteration"])
    assert c.loc[("baseline", 0), "mean"] == 11 and c.loc[("baseline", 10), "sd"] == 0
    assert c.loc[("baseline", 20), "mean"] == 15
    assert math.isclose(c.loc[("baseline", 20), "sd"], math.sqrt(2))  # (14-15)², (16-15)², /1
    assert c.loc[("saliency", 20), "n"] == 2


def test_paired_differences_bootstrap_over_two_seeds(rows):
    d = paired_differences(rows, "psnr", "saliency", "baseline", n_boot=4000)
    # per-seed differences at iteration 20: 15-14 = 1 and 19-16 = 3; resampled means 1, 2, 3
    # with probabilities 1/4, 1/2, 1/4, so the 2.5 % and 97.5 % percentiles are 1 and 3
    last = d.set_index("iteration").loc[20]
    assert (last["diff"], last["low"], last["high"], last["n"]) == (2.0, 1.0, 3.0, 2)
    at10 = d.set_index("iteration").loc[10]  # differences 1 and 2
    assert at10["diff"] == 1.5 and (at10["low"], at10["high"]) == (1.0, 2.0)
    first = d.set_index("iteration").loc[0]  # identical start: a point interval at 0
    assert (first["diff"], first["low"], first["high"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="arm 'lrp' is not in the experiment"):
        paired_differences(rows, "psnr", "lrp", "baseline")


def test_at_wallclock_interpolates_inside_the_common_span():
    rows = pd.DataFrame({"arm": ["a"] * 3 + ["b"] * 3, "seed": 0, "iteration": [0, 1, 2] * 2,
                         "wall_s": [0, 10, 20, 0, 5, 15], "m": [0, 10, 30, 1, 2, 3]})
    t = at_wallclock(rows, "m", n_times=4)  # span [0, min(20, 15)] = 0, 5, 10, 15 s
    np.testing.assert_allclose(t[t["arm"] == "a"]["wall_s"], [0, 5, 10, 15])
    np.testing.assert_allclose(t[t["arm"] == "a"]["m"], [0, 5, 10, 20])
    np.testing.assert_allclose(t[t["arm"] == "b"]["m"], [1, 2, 2.5, 3])
    late = rows.assign(wall_s=[30, 40, 50, 0, 5, 15])
    with pytest.raises(ValueError, match="share no wall-clock span"):
        at_wallclock(late, "m")


def test_to_target_and_area_under_curve(rows):
    hits = to_target(rows, "psnr", 13.5).set_index(["arm", "seed"])
    assert hits.loc[("baseline", 0), "iteration"] == 20 and hits.loc[("baseline", 0), "wall_s"] == 10
    assert hits.loc[("saliency", 1), "iteration"] == 10 and hits.loc[("saliency", 1), "wall_s"] == 10
    assert np.isnan(to_target(rows, "psnr", 99).loc[0, "iteration"])
    low = to_target(rows, "psnr", 11, higher_is_better=False).set_index(["arm", "seed"])
    assert low.loc[("baseline", 0), "iteration"] == 0 and np.isnan(low.loc[("baseline", 1), "iteration"])
    auc = area_under_curve(rows, "psnr").set_index(["arm", "seed"])["auc"]
    assert auc[("baseline", 0)] == (10 * 11 + 10 * 13) / 20  # trapezoids over 0-10-20
    uneven = pd.DataFrame({"arm": "a", "seed": 0, "iteration": [0, 10, 30], "wall_s": [0, 1, 2],
                           "m": [0, 10, 10]})
    assert math.isclose(area_under_curve(uneven, "m")["auc"][0], (10 * 5 + 20 * 10) / 30)


def test_arm_summary_cost_ratio_and_target(rows):
    s = arm_summary(rows, "psnr").set_index("arm")
    assert list(s.index) == ["baseline", "saliency"]
    assert s.loc["baseline", "target"] == 15  # the baseline's mean final value
    assert s.loc["saliency", "final_mean"] == 17 and s.loc["saliency", "final_sd"] == math.sqrt(8)
    assert s.loc["baseline", "s_per_iter"] == 0.5 and s.loc["saliency", "cost_ratio"] == 2.0
    # baseline reaches 15 only with seed 1 (16 at iteration 20); saliency: seed 0 at 20, seed 1 at 20
    assert s.loc["baseline", "reached"] == 1 and s.loc["saliency", "reached"] == 2
    assert s.loc["saliency", "iters_to_target"] == 20 and s.loc["saliency", "s_to_target"] == 20


def test_contrasts_at_equal_iterations_and_equal_wallclock(rows):
    c = contrasts(rows, "psnr", [("saliency", "baseline")], n_times=3, n_boot=4000)
    it = c[c["basis"] == "iterations"].iloc[0]
    assert (it["at"], it["diff"], it["low"], it["high"]) == (20, 2.0, 1.0, 3.0)
    wall = c[c["basis"] == "wall-clock"].iloc[0]
    # common span 0-10 s: saliency at 10 s is its iteration 10 (13, 14), baseline its end (14, 16)
    assert wall["at"] == 10 and wall["diff"] == ((13 - 14) + (14 - 16)) / 2
    assert (wall["low"], wall["high"]) == (-2.0, -1.0)
    # mean heights over 0-20: saliency 255/20 and 295/20, baseline 240/20 and 260/20
    assert math.isclose(it["auc_diff"], ((12.75 - 12) + (14.75 - 13)) / 2)


def _table(rows):
    return pd.DataFrame([{"arm": "saliency", "reference": r, "basis": "iterations", "at": 100,
                          "n": 3, "diff": d, "low": lo, "high": hi} for r, d, lo, hi in rows])


def test_verdict_needs_both_controls():
    positive = _table([("baseline", 0.5, 0.2, 0.8), ("constant", 0.4, 0.1, 0.7),
                       ("shuffled", 0.3, 0.05, 0.6)])
    v = verdict(positive, "saliency", unit="dB", metric="PSNR")
    assert v.outcome == "positive"
    assert "saliency − baseline: +0.500 dB [+0.200, +0.800]" in v.text and "3 seeds" in v.text
    matched = _table([("baseline", 0.5, 0.2, 0.8), ("constant", 0.1, -0.2, 0.4),
                      ("shuffled", 0.3, 0.05, 0.6)])
    v = verdict(matched, "saliency")
    assert v.outcome == "null" and "control does as well" in v.text
    no_controls = _table([("baseline", 0.5, 0.2, 0.8)])
    v = verdict(no_controls, "saliency")
    assert v.outcome == "null" and "the constant and shuffled controls were not run" in v.text and "saliency − shuffled: not run" in v.text
    assert verdict(_table([("baseline", -0.01, -0.07, 0.03)]), "saliency").outcome == "null"
    assert verdict(_table([("baseline", -0.3, -0.5, -0.1)]), "saliency").outcome == "negative"
    # lower is better: a negative difference is a gain
    lower = _table([("baseline", -0.5, -0.8, -0.2), ("constant", -0.4, -0.7, -0.1),
                    ("shuffled", -0.3, -0.6, -0.05)])
    assert verdict(lower, "saliency", higher_is_better=False).outcome == "positive"
    assert verdict(lower, "saliency").outcome == "negative"
    with pytest.raises(ValueError, match="no 'saliency' − 'baseline' row"):
        verdict(_table([("constant", 0, 0, 0)]), "saliency")


def test_report_section_writes_figures_tables_and_verdicts(tmp_path, rows):
    more = pd.concat([rows, rows[rows["arm"] == "baseline"].assign(arm="constant")])
    report = Report("t")
    out = report_section(report, more, "psnr", unit="dB", n_times=3, n_boot=200)
    assert set(out["verdicts"]) == {"iterations", "wall-clock"}
    assert set(out["contrasts"]["reference"]) == {"baseline", "constant"}
    html = report.write(tmp_path).read_text()
    assert html.count("<img") == 2 + 3 and "Null: " in html  # 2 mean figures + one per arm
    with pytest.raises(ValueError, match="lack columns"):
        report_section(Report("t"), rows.drop(columns="wall_s"), "psnr")


def test_one_seed_is_never_a_verdict():
    # saliency beats everything by 2 dB on one seed: a zero-width "interval", not evidence
    runs = {(arm, 0): ([0, 5, 10], [10, 12, 14 + (2 if arm == "saliency" else 0)])
            for arm in ("baseline", "saliency", "constant", "shuffled")}
    table = contrasts(_rows(runs), "psnr", [("saliency", r) for r in
                                             ("baseline", "constant", "shuffled")], n_boot=50)
    v = verdict(table, "saliency", unit="dB")
    assert v.outcome == "null" and "1 seed" in v.text


def test_contrasts_use_the_last_point_every_seed_reached():
    rows = _rows({("baseline", 0): ([0, 5, 10], [10, 12, 14]),
                  ("baseline", 1): ([0, 5, 10], [10, 12, 14]),
                  ("saliency", 0): ([0, 5, 10], [10, 13, 15]),
                  ("saliency", 1): ([0, 5, 10], [10, 13, 15])})
    # seed 1 stopped after iteration 10 in both arms: the final contrast is at 10 over 2 seeds
    rows = rows[~((rows["seed"] == 1) & (rows["iteration"] == 20))]
    table = contrasts(rows, "psnr", [("saliency", "baseline")], n_boot=50)
    it = table[table["basis"] == "iterations"].iloc[0]
    assert it["at"] == 10 and it["n"] == 2 and it["diff"] == pytest.approx(1.0)


def test_runs_without_a_shared_wallclock_span_are_compared_at_iterations(tmp_path):
    # saliency's first training second comes after the baseline's last: no equal-time basis
    rows = _rows({("baseline", 0): ([1, 2, 3], [10, 12, 14]),
                  ("baseline", 1): ([1, 2, 3], [11, 12, 15]),
                  ("saliency", 0): ([5, 6, 7], [10, 13, 15]),
                  ("saliency", 1): ([5, 6, 7], [11, 13, 16])})
    table = contrasts(rows, "psnr", [("saliency", "baseline")], n_boot=50)
    assert list(table["basis"]) == ["iterations"]
    report = Report("t", "t")
    out = report_section(report, rows, "psnr", arm="saliency", n_boot=50, n_times=5)
    assert set(out["verdicts"]) == {"iterations"}
    assert "No comparison at equal wall-clock" in report.write(tmp_path / "r").read_text()
