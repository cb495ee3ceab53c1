"""Convergence statistics of a guided-training experiment: curves, paired differences, verdict.

Input is the long table an experiment writes (``rows.csv`` of :mod:`galaxai.guided.experiment`):
one row per evaluation with ``arm``, ``seed``, ``iteration``, ``wall_s`` (cumulative training
seconds, evaluation excluded) and metric columns. Every arm runs the same seeds, so arms are
compared **per seed** (``arm − reference`` of the same seed) and the seed-paired differences are
summarised by their mean and a percentile bootstrap interval over seeds
(:func:`galaxai.explain.quality.bootstrap_mean`). Comparisons are made at equal iterations and at
equal wall-clock: each run's metric is interpolated linearly at common times
(:func:`at_wallclock`), inside the span that every run covers (no extrapolation).

A gain counts only if it beats the baseline **and both controls** (constant and shuffled map)
with intervals excluding 0 (:func:`verdict`), as ``specs/xai_guided_training.md`` asks. With
three seeds a bootstrap over seeds has only ten distinct resamples: its interval is coarse and
usually wide; it is what the data allow, not a refinement.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from galaxai.explain.quality import bootstrap_mean

__all__ = [
    "REQUIRED_COLUMNS",
    "MIN_SEEDS",
    "check_rows",
    "arm_curves",
    "at_wallclock",
    "paired_differences",
    "to_target",
    "area_under_curve",
    "arm_summary",
    "contrasts",
    "Verdict",
    "verdict",
    "report_section",
]

#: Columns every experiment table has (besides its metric columns).
REQUIRED_COLUMNS = ("arm", "seed", "iteration", "wall_s")
#: Fewest paired seeds behind a positive or negative verdict (one seed has no spread at all).
MIN_SEEDS = 2
_KEYS = ["arm", "seed"]


def check_rows(rows: pd.DataFrame, metric: str, x: str = "iteration") -> pd.DataFrame:
    """``rows`` sorted by arm, seed and ``x``, after checking its columns and duplicates.

    With ``x="iteration"`` (an experiment table) all of :data:`REQUIRED_COLUMNS` are required;
    otherwise (e.g. :func:`at_wallclock`'s table) ``arm``, ``seed`` and ``x``.
    """
    need = [*REQUIRED_COLUMNS, metric] if x == "iteration" else ["arm", "seed", x, metric]
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise ValueError(f"experiment rows lack columns {missing}; expected {need[:-1]} and the "
                         f"metric {metric!r} (got {list(rows.columns)})")
    if rows.duplicated(["arm", "seed", x]).any():
        raise ValueError(f"experiment rows repeat an (arm, seed, {x}); each evaluation must "
                         "appear once")
    return rows.sort_values(["arm", "seed", x], kind="stable").reset_index(drop=True)


def arm_curves(rows: pd.DataFrame, metric: str, *, x: str = "iteration") -> pd.DataFrame:
    """Per-arm mean and standard deviation (ddof 1) over seeds of ``metric`` at each ``x``.

    Returns
    -------
    pandas.DataFrame
        ``arm``, ``x``'s column, ``mean``, ``sd`` (NaN for one seed) and ``n`` (seeds).
    """
    rows = check_rows(rows, metric, x)
    grouped = rows.groupby(["arm", x], sort=True)[metric]
    out = grouped.agg(mean="mean", sd=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan,
                      n="count")
    return out.reset_index()


def at_wallclock(rows: pd.DataFrame, metrics: str | Sequence[str], *, n_times: int = 20
                 ) -> pd.DataFrame:
    """Each run's metrics linearly interpolated at common wall-clock times.

    The times are ``n_times`` equally spaced points from the latest first evaluation to the
    earliest last evaluation over all runs (arm × seed), so every run covers every time.

    Returns
    -------
    pandas.DataFrame
        ``arm``, ``seed``, ``wall_s`` and the metrics, one row per run and time.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    rows = check_rows(rows, metrics[0])
    runs = list(rows.groupby(_KEYS, sort=True))
    for (arm, seed), run in runs:
        if not np.all(np.diff(run["wall_s"].to_numpy()) >= 0):
            raise ValueError(f"wall_s of arm {arm!r} seed {seed} decreases with iteration; it "
                             "must be cumulative training time")
    start = max(float(run["wall_s"].min()) for _, run in runs)
    stop = min(float(run["wall_s"].max()) for _, run in runs)
    if stop < start:
        raise ValueError(f"the runs share no wall-clock span (latest start {start:.3g} s is after "
                         f"the earliest end {stop:.3g} s); train longer or compare at iterations")
    times = np.linspace(start, stop, int(n_times))
    frames = []
    for (arm, seed), run in runs:
        frame = {"arm": arm, "seed": seed, "wall_s": times}
        for m in metrics:
            frame[m] = np.interp(times, run["wall_s"].to_numpy(float), run[m].to_numpy(float))
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def paired_differences(rows: pd.DataFrame, metric: str, arm: str, reference: str, *,
                       x: str = "iteration", n_boot: int = 2000, level: float = 0.95,
                       seed: int = 0) -> pd.DataFrame:
    """Seed-paired ``arm − reference`` of ``metric`` at each ``x`` with a bootstrap interval.

    At each ``x`` both arms must have the seed for it to count; the differences of the shared
    seeds are resampled (percentile bootstrap of their mean, ``n_boot`` draws, ``level``).

    Returns
    -------
    pandas.DataFrame
        ``arm``, ``reference``, ``x``'s column, ``n`` (seeds), ``diff``, ``low``, ``high``.
    """
    for name in (arm, reference):
        if name not in set(rows["arm"]):
            raise ValueError(f"arm {name!r} is not in the experiment (arms: "
                             f"{sorted(set(rows['arm']))})")
    if arm == reference:
        raise ValueError(f"arm and reference are both {arm!r}; compare two different arms")
    wide = rows[rows["arm"].isin([arm, reference])].pivot_table(
        index=[x, "seed"], columns="arm", values=metric, aggfunc="first").dropna()
    out = []
    for at, group in wide.groupby(level=0, sort=True):
        d = (group[arm] - group[reference]).to_numpy(float)
        mean, low, high = bootstrap_mean(d, n_boot=n_boot, seed=seed, level=level)
        out.append({"arm": arm, "reference": reference, x: at, "n": len(d),
                    "diff": mean, "low": low, "high": high})
    return pd.DataFrame(out, columns=["arm", "reference", x, "n", "diff", "low", "high"])


def to_target(rows: pd.DataFrame, metric: str, target: float, *, higher_is_better: bool = True
              ) -> pd.DataFrame:
    """Iterations- and time-to-target of each run: the first evaluation reaching ``target``.

    Returns
    -------
    pandas.DataFrame
        ``arm``, ``seed``, ``iteration`` and ``wall_s`` of that evaluation (NaN if never reached).
    """
    rows = check_rows(rows, metric)
    out = []
    for (arm, seed), run in rows.groupby(_KEYS, sort=True):
        values = run[metric].to_numpy(float)
        hit = values >= target if higher_is_better else values <= target
        first = int(np.argmax(hit)) if hit.any() else None
        out.append({"arm": arm, "seed": seed,
                    "iteration": np.nan if first is None else float(run["iteration"].iloc[first]),
                    "wall_s": np.nan if first is None else float(run["wall_s"].iloc[first])})
    return pd.DataFrame(out, columns=["arm", "seed", "iteration", "wall_s"])


def area_under_curve(rows: pd.DataFrame, metric: str, *, x: str = "iteration") -> pd.DataFrame:
    """Trapezoid area under each run's ``metric`` over ``x``, divided by the span of ``x``.

    The result is the curve's mean height (in the metric's unit), so runs over the same span
    compare directly; a run with one evaluation gets its value.

    Returns
    -------
    pandas.DataFrame
        ``arm``, ``seed``, ``auc``.
    """
    rows = check_rows(rows, metric, x)
    out = []
    for (arm, seed), run in rows.groupby(_KEYS, sort=True):
        xs, ys = run[x].to_numpy(float), run[metric].to_numpy(float)
        span = xs[-1] - xs[0]
        auc = float(ys[0]) if span == 0 else float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2) / span)
        out.append({"arm": arm, "seed": seed, "auc": auc})
    return pd.DataFrame(out, columns=["arm", "seed", "auc"])


def _final(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each run's last evaluation."""
    last = rows.groupby(_KEYS, sort=True).tail(1)
    return last[["arm", "seed", "iteration", "wall_s", metric]].reset_index(drop=True)


def arm_summary(rows: pd.DataFrame, metric: str, *, baseline: str = "baseline",
                higher_is_better: bool = True, target: float | None = None) -> pd.DataFrame:
    """One row per arm: final value, area under the curve, cost per iteration, target reached.

    ``target`` defaults to the baseline's mean final value. Seconds per iteration are each run's
    final ``wall_s`` over the iterations it trained (first to last evaluation); ``cost_ratio`` is
    the seed-paired mean of an arm's seconds per iteration over the baseline's.

    Returns
    -------
    pandas.DataFrame
        ``arm``, ``seeds``, ``final_mean``, ``final_sd``, ``auc_mean``, ``s_per_iter``,
        ``cost_ratio``, ``target``, ``reached`` (seeds), ``iters_to_target``, ``s_to_target``
        (means over the seeds that reached it).
    """
    rows = check_rows(rows, metric)
    final = _final(rows, metric)
    if target is None:
        if baseline not in set(final["arm"]):
            raise ValueError(f"no target given and no {baseline!r} arm to take it from")
        target = float(final.loc[final["arm"] == baseline, metric].mean())
    first = rows.groupby(_KEYS, sort=True)[["iteration", "wall_s"]].first()
    last = rows.groupby(_KEYS, sort=True)[["iteration", "wall_s"]].last()
    trained = (last["iteration"] - first["iteration"]).replace(0, np.nan)
    per_iter = ((last["wall_s"] - first["wall_s"]) / trained).rename("s_per_iter").reset_index()
    auc = area_under_curve(rows, metric)
    hits = to_target(rows, metric, target, higher_is_better=higher_is_better)
    base_cost = per_iter[per_iter["arm"] == baseline].set_index("seed")["s_per_iter"]
    out = []
    for arm, group in final.groupby("arm", sort=False):
        cost = per_iter[per_iter["arm"] == arm].set_index("seed")["s_per_iter"]
        ratio = (cost / base_cost).dropna()
        hit = hits[hits["arm"] == arm]
        out.append({
            "arm": arm, "seeds": len(group),
            "final_mean": float(group[metric].mean()),
            "final_sd": float(group[metric].std(ddof=1)) if len(group) > 1 else np.nan,
            "auc_mean": float(auc.loc[auc["arm"] == arm, "auc"].mean()),
            "s_per_iter": float(cost.mean()),
            "cost_ratio": float(ratio.mean()) if len(ratio) else np.nan,
            "target": target, "reached": int(hit["iteration"].notna().sum()),
            "iters_to_target": float(hit["iteration"].mean()),
            "s_to_target": float(hit["wall_s"].mean()),
        })
    order = [baseline] + sorted(a for a in set(final["arm"]) if a != baseline)
    table = pd.DataFrame(out).set_index("arm")
    return table.loc[[a for a in order if a in table.index]].reset_index()


def _bases(rows: pd.DataFrame, metric: str, n_times: int) -> list[tuple[str, pd.DataFrame, str]]:
    """The comparison bases: equal iterations, and equal wall-clock when the runs share a span
    of training time (a much slower arm may not: then it is compared at iterations only)."""
    bases = [("iterations", rows, "iteration")]
    try:
        bases.append(("wall-clock", at_wallclock(rows, metric, n_times=n_times), "wall_s"))
    except ValueError as exc:
        if "share no wall-clock span" not in str(exc):
            raise
    return bases


def contrasts(rows: pd.DataFrame, metric: str, pairs: Sequence[tuple[str, str]], *,
              n_times: int = 20, n_boot: int = 2000, level: float = 0.95, seed: int = 0
              ) -> pd.DataFrame:
    """Seed-paired ``arm − reference`` at the last common iteration and the last common time.

    Parameters
    ----------
    pairs : sequence of (arm, reference)
        E.g. ``[("saliency", "baseline"), ("saliency", "constant"), ("saliency", "shuffled")]``.

    Returns
    -------
    pandas.DataFrame
        ``arm``, ``reference``, ``basis`` (``"iterations"`` or ``"wall-clock"``), ``at`` (the
        iteration or seconds), ``n``, ``diff``, ``low``, ``high``, and ``auc_diff``,
        ``auc_low``, ``auc_high`` (the same for the area under the curve over that basis).
    """
    rows = check_rows(rows, metric)
    bases = _bases(rows, metric, n_times)
    out = []
    for arm, reference in pairs:
        for basis, frame, x in bases:
            diffs = paired_differences(frame, metric, arm, reference, x=x, n_boot=n_boot,
                                       level=level, seed=seed)
            if diffs.empty:
                raise ValueError(f"{arm!r} and {reference!r} share no seed at any {x}")
            # the last point that every paired seed reached (not a late point of one seed)
            end = diffs[diffs["n"] == diffs["n"].max()].iloc[-1]
            auc = area_under_curve(frame[frame[x] <= end[x]], metric, x=x).assign(at=0.0)
            adiff = paired_differences(auc, "auc", arm, reference, x="at", n_boot=n_boot,
                                       level=level, seed=seed).iloc[0]
            out.append({"arm": arm, "reference": reference, "basis": basis, "at": float(end[x]),
                        "n": int(end["n"]), "diff": end["diff"], "low": end["low"],
                        "high": end["high"], "auc_diff": adiff["diff"], "auc_low": adiff["low"],
                        "auc_high": adiff["high"]})
    return pd.DataFrame(out)


@dataclass(frozen=True)
class Verdict:
    """The worded outcome of one arm: ``outcome`` is ``"positive"``, ``"null"`` or
    ``"negative"``; ``text`` gives the numbers it rests on."""

    outcome: str
    text: str


def verdict(table: pd.DataFrame, arm: str, *, baseline: str = "baseline",
            controls: Sequence[str] = ("constant", "shuffled"), basis: str = "iterations",
            higher_is_better: bool = True, unit: str = "", metric: str = "metric") -> Verdict:
    """Word the result of ``arm`` from a :func:`contrasts` table, by the numbers.

    ``positive`` only if ``arm`` beats the baseline **and every control** with intervals that
    exclude 0 in the better direction; ``negative`` if it is worse than the baseline with an
    interval excluding 0; ``null`` otherwise (including a gain over the baseline that a control
    matches, or a missing control).
    """
    sub = table[(table["arm"] == arm) & (table["basis"] == basis)].set_index("reference")
    if baseline not in sub.index:
        raise ValueError(f"the contrasts table has no {arm!r} − {baseline!r} row on basis "
                         f"{basis!r}; compute contrasts with that pair")
    sign = 1.0 if higher_is_better else -1.0

    # one seed gives a zero-width "interval": fewer than MIN_SEEDS paired seeds is always null
    def better(ref: str) -> bool:
        row = sub.loc[ref]
        return bool(row["n"] >= MIN_SEEDS and min(sign * row["low"], sign * row["high"]) > 0)

    def worse(ref: str) -> bool:
        row = sub.loc[ref]
        return bool(row["n"] >= MIN_SEEDS and max(sign * row["low"], sign * row["high"]) < 0)

    suffix = f" {unit}" if unit else ""
    parts = []
    for ref in [baseline, *controls]:
        if ref in sub.index:
            r = sub.loc[ref]
            parts.append(f"{arm} − {ref}: {r['diff']:+.3f}{suffix} [{r['low']:+.3f}, "
                         f"{r['high']:+.3f}]")
        else:
            parts.append(f"{arm} − {ref}: not run")
    at = sub.loc[baseline]
    where = (f"at iteration {at['at']:.0f}" if basis == "iterations"
             else f"at equal wall-clock ({at['at']:.3g} s of training)")
    numbers = (f"{metric} {where}, {int(at['n'])} seeds, seed-paired bootstrap 95 % intervals: "
               + "; ".join(parts) + ".")
    missing = [c for c in controls if c not in sub.index]
    if worse(baseline):
        return Verdict("negative", f"Negative: {arm} is worse than the baseline. {numbers}")
    if better(baseline) and not missing and all(better(c) for c in controls):
        return Verdict("positive", f"Positive: {arm} beats the baseline and both controls. "
                                   f"{numbers}")
    if better(baseline):
        why = (f"the {' and '.join(missing)} control{'s were' if len(missing) > 1 else ' was'} "
               "not run" if missing else
               "a control does as well or better, so the gain is not specific to the "
               "explanation")
        return Verdict("null", f"Null: {arm} beats the baseline but {why}. {numbers}")
    if at["n"] < MIN_SEEDS:
        return Verdict("null", f"Null: {int(at['n'])} seed cannot show a difference; run at "
                               f"least {MIN_SEEDS} (3 or more for a usable interval). {numbers}")
    return Verdict("null", f"Null: no difference from the baseline that the intervals can "
                           f"resolve. {numbers}")


def report_section(report, rows: pd.DataFrame, metric: str, *, arm: str = "saliency",
                   baseline: str = "baseline", controls: Sequence[str] = ("constant", "shuffled"),
                   higher_is_better: bool = True, unit: str = "", title: str | None = None,
                   n_times: int = 20, n_boot: int = 2000) -> dict:
    """Add a section to a :class:`galaxai.viz.report.Report`: curves, tables and the verdict.

    Figures: every arm's mean ± sd over seeds against iterations and against wall-clock, and one
    panel per arm with its per-seed curves and mean band. Tables: :func:`arm_summary`,
    :func:`contrasts` of ``arm`` against the baseline and the controls that were run, and the
    paired differences against the baseline at every evaluation.

    Returns
    -------
    dict
        ``summary``, ``contrasts`` (DataFrames) and ``verdicts`` (basis → :class:`Verdict`).
    """
    from galaxai.viz.render import curve_plot, png_bytes

    rows = check_rows(rows, metric)
    arms = list(dict.fromkeys(rows["arm"]))
    refs = [r for r in [baseline, *controls] if r in arms and r != arm]
    table = contrasts(rows, metric, [(arm, r) for r in refs], n_times=n_times, n_boot=n_boot)
    summary = arm_summary(rows, metric, baseline=baseline, higher_is_better=higher_is_better)
    verdicts = {basis: verdict(table, arm, baseline=baseline, controls=controls, basis=basis,
                               higher_is_better=higher_is_better, unit=unit, metric=metric)
                for basis in dict.fromkeys(table["basis"])}
    label = f"{metric} ({unit})" if unit else metric
    report.add_section(title or f"Guided training: {arm} against {', '.join(refs)}",
                       f"{len(set(rows['seed']))} seeds per arm, the same seeds (initialisation "
                       f"and data order) in every arm; {metric} on a fixed held-out set at every "
                       f"evaluation; wall-clock counts training only (evaluation excluded).")
    report.add_note(verdicts["iterations"].text)
    report.add_note(verdicts["wall-clock"].text if "wall-clock" in verdicts else
                    "No comparison at equal wall-clock: the runs share no span of training time "
                    "(one arm's first evaluation comes after another's last); train longer or "
                    "evaluate more often.")
    for _, frame, x in _bases(rows, metric, n_times):
        xlabel = "iteration" if x == "iteration" else "training wall-clock (s)"
        curves = arm_curves(frame, metric, x=x)
        xs = np.sort(curves[x].unique())
        means, bands = {}, {}
        for a in arms:
            c = curves[curves["arm"] == a].set_index(x).reindex(xs)
            sd = c["sd"].fillna(0.0).to_numpy()
            means[a] = c["mean"].to_numpy()
            bands[a] = (means[a] - sd, means[a] + sd)
        image = curve_plot(xs, means, bands=bands, xlabel=xlabel, ylabel=label,
                           title=f"mean ± sd over seeds, against {xlabel}")
        report.add_figure(png_bytes(image), f"{label} against {xlabel}: every arm's mean over "
                                            "seeds, shaded ± one standard deviation")
    curves = arm_curves(rows, metric)
    for a in arms:
        own = rows[rows["arm"] == a]
        xs = np.sort(own["iteration"].unique())
        c = curves[curves["arm"] == a].set_index("iteration").reindex(xs)
        ys = {f"seed {s}": run.set_index("iteration")[metric].reindex(xs).to_numpy()
              for s, run in own.groupby("seed")}
        sd = c["sd"].fillna(0.0).to_numpy()
        ys["mean"] = c["mean"].to_numpy()
        image = curve_plot(xs, ys, bands={"mean": (ys["mean"] - sd, ys["mean"] + sd)},
                           xlabel="iteration", ylabel=label, title=a, size=(480, 300))
        report.add_figure(png_bytes(image), f"{a}: per-seed curves and their mean ± sd")
    report.add_table(summary, f"Per arm: final {metric} (mean, sd over seeds), area under the "
                              "curve (mean height), training seconds per iteration and their "
                              "seed-paired ratio to the baseline, evaluations reaching the "
                              "target (the baseline's mean final value)")
    report.add_table(table, f"Seed-paired differences {arm} − reference of the final {metric} "
                            "and of the area under the curve, at equal iterations and at equal "
                            "wall-clock, with bootstrap 95 % intervals over seeds")
    if baseline in arms and arm != baseline:
        report.add_table(paired_differences(rows, metric, arm, baseline, n_boot=n_boot),
                         f"{arm} − {baseline} at every evaluation (seed-paired, bootstrap 95 %)")
    return {"summary": summary, "contrasts": table, "verdicts": verdicts}
