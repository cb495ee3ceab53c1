"""`galaxai train --guide ...`: recorded in the run, kept on resume, refused inside the burn-in."""
from __future__ import annotations

import json

from click.testing import CliRunner

from galaxai.cli import main


def _train(store, run, *options):
    return CliRunner().invoke(main, ["train", "--data", str(store), "--run", str(run),
                                     "--device", "cpu", "--preset", "tiny", "--burn-in", "1",
                                     *options])


def test_guide_options_reach_the_run_and_bad_ones_are_one_line(tmp_path):
    store = tmp_path / "store"
    made = CliRunner().invoke(main, ["data", "blend", "--n", "12", "--seed", "3", "--preset",
                                     "tiny", "--chunk", "6", "--out", str(store)])
    assert made.exit_code == 0, made.output
    run = tmp_path / "run"
    result = _train(store, run, "--iterations", "2", "--guide", "saliency", "--guide-alpha", "0.5",
                    "--guide-from", "2")
    assert result.exit_code == 0, result.output
    assert "alpha = 0.5" in (run / "config.toml").read_text()
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r.get("guide") for r in rows] == [None, None, "saliency"]
    bad = _train(store, tmp_path / "bad", "--guide", "saliency", "--guide-from", "0")
    assert bad.exit_code == 2 and "inside the burn-in" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
