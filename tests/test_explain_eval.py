"""galaxai explain-eval: records, interval tables and the command on a tiny discriminator."""
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from galaxai.cli import main
from galaxai.explain_eval import (METRICS, ExplainEvalConfig, evaluate_checkpoint, paired_table,
                                  summary_table, write_evaluation)
from galaxai.models.deblender import DeblenderConfig, build_discriminator


@pytest.fixture(scope="module")
def disc():
    """A tiny discriminator left in training mode, as a trainer holds it."""
    return build_discriminator(DeblenderConfig.preset("tiny"), seed=3).train()


@pytest.fixture(scope="module")
def evaluation(disc):
    cfg = DeblenderConfig.preset("tiny")
    rng = np.random.default_rng(0)
    size = cfg.image_size
    real = rng.uniform(-1, 0.2, (6, 3, size, size)).astype(np.float32)
    generated = rng.uniform(-1, 1, (6, 3, size, size)).astype(np.float32)
    config = ExplainEvalConfig.preset("tiny", methods=("polarized_lrp", "lrp_zplus", "lrp_epsilon",
                                                       "grad_cam"), n_localise=8)
    return evaluate_checkpoint(disc, real, generated, config, checkpoint="t")


def test_records_cover_every_method_metric_and_image(evaluation):
    rec = evaluation.records
    methods = set(evaluation.config.methods)
    faith = rec[rec["metric"] == "morf_vs_random"]
    assert set(faith["method"]) == methods and faith.groupby("method")["image"].nunique().eq(12).all()
    assert set(faith["source"]) == {"real target", "generated output"}
    for metric in ("lerf_vs_random", "morf_minus_lerf", "gini", "sensitivity", "cascading_ssim",
                   "independent_spearman"):
        assert set(rec.loc[rec["metric"] == metric, "method"]) == methods, metric
    counts = rec[rec["metric"] == "called_generated"].groupby("verdict").size()
    assert set(counts.index) == {f"planted {k}" for k in evaluation.config.artefacts}
    assert set(evaluation.curves["mode"]) == {"cascading", "independent"}
    wide = faith.pivot_table(index="image", columns="method", values="value")
    assert np.isfinite(wide.to_numpy()).all() and wide.shape == (12, len(methods))


def test_the_callers_training_flags_come_back(evaluation, disc):
    assert evaluation.records["checkpoint"].eq("t").all()
    assert disc.training and all(m.training for m in disc.modules())


def test_positive_polarized_lrp_equals_zplus_on_images_called_real(evaluation):
    """By the spec, Polarized-LRP's positive map is LRP-z+ (bias included); same map, same scores."""
    rec = evaluation.records
    real = rec[(rec["verdict"] == "called real") & (rec["metric"] == "morf_vs_random")]
    if real.empty:
        pytest.skip("the tiny discriminator called no image real")
    wide = real.pivot_table(index="image", columns="method", values="value")
    np.testing.assert_allclose(wide["polarized_lrp"], wide["lrp_zplus"], atol=1e-6)


def test_summary_and_paired_tables(evaluation, tmp_path):
    summary = summary_table(evaluation)
    assert {"mean", "low", "high", "n", "flag"} <= set(summary.columns)
    assert (summary["low"] <= summary["mean"] + 1e-12).all() and (summary["mean"] <= summary["high"] + 1e-12).all()
    rec = evaluation.records
    one = rec[(rec["metric"] == "gini") & (rec["method"] == "lrp_epsilon")
              & (rec["verdict"] == rec["verdict"].iloc[0])]
    row = summary[(summary["metric"] == METRICS["gini"][1]) & (summary["method"] == "LRP-ε 0.01")
                  & (summary["verdict"] == rec["verdict"].iloc[0])]
    assert float(row["mean"].iloc[0]) == pytest.approx(one["value"].mean())
    paired = paired_table(evaluation)
    assert set(paired["comparison"]) == {"Polarized-LRP − original LRP (z+)", "Polarized-LRP − LRP-ε 0.01"}
    assert set(paired["reference better"]) <= {"yes", "no", "undecided"}
    html = write_evaluation(evaluation, tmp_path / "out")
    assert html.is_file() and "Polarized-LRP" in html.read_text()
    back = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert len(back) == len(summary)


def test_bad_config_and_inputs():
    with pytest.raises(ValueError, match="methods"):
        ExplainEvalConfig(methods=("lime",))
    with pytest.raises(ValueError, match="artefacts"):
        ExplainEvalConfig(artefacts=("scratch",))
    disc = build_discriminator(DeblenderConfig.preset("tiny"))
    with pytest.raises(ValueError, match="real"):
        evaluate_checkpoint(disc, np.zeros((2, 3, 8, 8)), np.zeros((2, 3, 16, 16)))


def test_command_on_the_shipped_model_and_a_bad_run(tmp_path):
    runner = CliRunner()
    store = tmp_path / "store"
    result = runner.invoke(main, ["data", "blend", "--source", "cosmos", "--split", "test",
                                  "--n", "3", "--seed", "1", "--out", str(store)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "eval"
    result = runner.invoke(main, ["explain-eval", "small", "--images", str(store), "--out", str(out),
                                  "--n", "3", "--preset", "tiny", "--method", "polarized_lrp",
                                  "--method", "lrp_epsilon", "--n-localise", "0", "--n-randomise", "1"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["checkpoint"]) == {"shipped small"}
    faith = summary[(summary["metric"] == METRICS["morf_vs_random"][1])
                    & (summary["method"] == "Polarized-LRP")]
    assert faith["n"].sum() == 6  # 3 real targets + 3 generated outputs, split by verdict
    result = runner.invoke(main, ["explain-eval", str(tmp_path / "nothing"), "--images", str(store),
                                  "--out", str(out)])
    assert result.exit_code == 2 and "neither a run directory" in result.output
