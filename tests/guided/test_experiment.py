"""galaxai experiment guided: the protocol runner, its resumption, the deblender arm and the CLI."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from galaxai.cli import main
from galaxai.guided import experiment as ex
from galaxai.train.checkpoints import checkpoint_dir, read_safetensors


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("guided") / "store"
    made = CliRunner().invoke(main, ["data", "blend", "--n", "24", "--seed", "3", "--preset", "tiny",
                                     "--chunk", "12", "--test-fraction", "0.25", "--out", str(path)])
    assert made.exit_code == 0, made.output
    return path


def _guided(store, out, arms="baseline,saliency", seeds="0,1"):
    return CliRunner().invoke(main, ["experiment", "guided", "--arms", arms, "--seeds", seeds,
                                     "--preset", "tiny", "--iters", "2", "--eval-every", "2",
                                     "--guide-from", "4", "--data", str(store), "--out", str(out)])


def test_cli_end_to_end_shared_warm_up_and_rerun(tmp_path, store):
    result = _guided(store, tmp_path / "exp")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "exp" / "rows.csv")
    assert len(rows) == 2 * 2 * 2 and set(rows["iteration"]) == {4, 6}
    start = rows[rows["iteration"] == 4]
    assert (start["wall_s"] == 0).all()
    # every arm forks the same warm-up: identical scores at the fork, per seed
    assert start.groupby("seed")["psnr"].nunique().eq(1).all()
    assert start.groupby("seed")["psnr"].first().nunique() == 2
    assert (rows[rows["iteration"] == 6]["wall_s"] > 0).all()
    html = (tmp_path / "exp" / "report" / "index.html").read_text()
    assert "saliency − baseline" in html and "saliency − shuffled: not run" in html
    assert "psnr at iteration 6, 2 seeds" in result.output
    before = (tmp_path / "exp" / "rows.csv").read_bytes()
    again = _guided(store, tmp_path / "exp")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "exp" / "rows.csv").read_bytes() == before  # nothing retrained
    other = CliRunner().invoke(main, ["experiment", "guided", "--arms", "baseline", "--seeds", "0",
                                      "--preset", "tiny", "--iters", "3", "--eval-every", "2",
                                      "--guide-from", "4", "--data", str(store), "--out",
                                      str(tmp_path / "exp")])
    assert other.exit_code == 2 and "other settings (iterations: 2 -> 3)" in other.stderr


def test_bad_arms_are_one_line_errors(tmp_path, store):
    bad = _guided(store, tmp_path / "bad", arms="baseline,salience")
    assert bad.exit_code == 2 and "unknown arm 'salience'" in bad.stderr
    assert "choose from baseline, saliency" in bad.stderr
    no_base = _guided(store, tmp_path / "bad", arms="saliency")
    assert no_base.exit_code == 2 and "must include 'baseline'" in no_base.stderr
    assert len(no_base.stderr.strip().splitlines()) == 1
    early = CliRunner().invoke(main, ["experiment", "guided", "--preset", "tiny", "--iters", "2",
                                      "--eval-every", "1", "--guide-from", "2", "--data",
                                      str(store), "--out", str(tmp_path / "early")])
    assert early.exit_code == 2 and "inside the tiny preset's burn-in" in early.stderr


class _Fake:
    """A trainer with the run_arm signature: a straight line per arm; can fail on one call."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, arm, seed, *, preset, iterations, eval_every, guide_from, data, out,
                 progress):
        self.calls.append((arm, seed))
        if (arm, seed) == self.fail_on:
            raise RuntimeError("killed")
        its = list(range(guide_from, guide_from + iterations + 1, eval_every))
        gain = {"baseline": 0.0, "saliency": 0.5}.get(arm, 0.1)
        frame = pd.DataFrame({"iteration": its, "wall_s": [float(i - guide_from) for i in its],
                              "score": [10 + (gain + 0.01 * seed) * (i - guide_from) for i in its]})
        frame["arm"] = arm  # a trainer may name its arm itself (the cyclegan one does)
        frame.attrs.update(primary="score", higher_is_better=True)
        return frame


def test_interrupted_experiment_resumes_only_what_is_missing(tmp_path):
    settings = dict(preset="tiny", iterations=4, eval_every=2, guide_from=0, data=None)
    arms, seeds = ["baseline", "saliency", "shuffled"], [0, 1]
    first = _Fake(fail_on=("saliency", 1))
    with pytest.raises(RuntimeError, match="killed"):
        ex.run_experiment(first, arms, seeds, out=tmp_path, **settings)
    assert first.calls == [("baseline", 0), ("saliency", 0), ("shuffled", 0), ("baseline", 1),
                           ("saliency", 1)]
    written = pd.read_csv(tmp_path / "rows.csv")
    assert len(written) == 4 * 3
    assert list(written.columns) == ["arm", "seed", "iteration", "wall_s", "score"]
    second = _Fake()
    result = ex.run_experiment(second, arms, seeds, out=tmp_path, **settings)
    assert second.calls == [("saliency", 1), ("shuffled", 1)]
    assert len(result.rows) == 6 * 3 and not result.rows.duplicated(["arm", "seed", "iteration"]).any()
    c = result.sections["saliency"]["contrasts"].set_index(["reference", "basis"])
    # saliency − baseline at iteration 4: (0.5 + 0.01 s) 4 − (0 + 0.01 s) 4 = 2 for each seed
    assert c.loc[("baseline", "iterations"), "diff"] == pytest.approx(2.0)
    assert result.report.is_file()


def test_trainer_contract_and_registry(tmp_path, monkeypatch):
    def no_attrs(arm, seed, **kw):
        return pd.DataFrame({"iteration": [0], "wall_s": [0.0], "score": [1.0]})

    with pytest.raises(ValueError, match="attrs\\['primary'\\]"):
        ex.run_experiment(no_attrs, ["baseline"], [0], out=tmp_path, preset="tiny", iterations=1,
                          eval_every=1, guide_from=0, data=None)
    monkeypatch.setitem(ex.TRAINERS, "cyclegan", "galaxai.train.not_there:run_arm")
    with pytest.raises(ValueError, match="'cyclegan' trainer is not available"):
        ex.get_trainer("cyclegan")
    assert ex.get_trainer("deblender") is ex.deblender_arm
    with pytest.raises(ValueError, match="missing \\['data'\\]"):
        ex.run_experiment("deblender", ["baseline"], [0], out=tmp_path / "x", preset="tiny",
                          iterations=1, eval_every=1, guide_from=4)


def test_forked_arm_trains_bit_identically_to_an_unbroken_guided_run(tmp_path, store):
    from galaxai.data.store import BlendStore
    from galaxai.train.gan import train

    ex.deblender_arm("saliency", 0, preset="tiny", iterations=3, eval_every=2, guide_from=4,
                     data=store, out=tmp_path / "runs" / "saliency-s0", progress=False)
    cfg = dataclasses.replace(ex._deblender_config("tiny", 0, 3, 4),
                              guide=ex.arm_guide("saliency", start=4))
    train(BlendStore(store, split="train"), tmp_path / "whole", cfg)
    forked = read_safetensors(checkpoint_dir(tmp_path / "runs" / "saliency-s0", 7) / "G.safetensors")[0]
    whole = read_safetensors(checkpoint_dir(tmp_path / "whole", 7) / "G.safetensors")[0]
    assert all(torch.equal(forked[k], whole[k]) for k in whole)
    ex.deblender_arm("baseline", 0, preset="tiny", iterations=3, eval_every=2, guide_from=4,
                     data=store, out=tmp_path / "runs" / "baseline-s0", progress=False)

    def g(arm, it):
        return read_safetensors(checkpoint_dir(tmp_path / "runs" / f"{arm}-s0", it)
                                / "G.safetensors")[0]

    assert all(torch.equal(g("baseline", 4)[k], g("saliency", 4)[k]) for k in whole)
    assert any(not torch.equal(g("baseline", 7)[k], whole[k]) for k in whole)


def test_demo_section_quick(tmp_path):
    from galaxai.viz.report import Report

    report = Report("demo")
    ex.demo_section(report, tmp_path, quick=True, seed=0, progress=False)
    html = report.write(tmp_path / "report").read_text()
    assert "saliency against baseline" in html and "saliency − shuffled" in html
    assert ("Null: " in html) or ("Positive: " in html) or ("Negative: " in html)
