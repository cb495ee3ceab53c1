"""The guided-training protocol: arms × seeds on one trainer, one metric table, one report.

:func:`run_experiment` trains every arm (``baseline``, an explainer, or a control; names in
:data:`galaxai.choices.GUIDE_ARMS`) with every seed through a pluggable trainer, appends each
finished arm × seed's evaluations to ``OUT/rows.csv`` (atomically, so an interrupted experiment
resumes and skips what is complete) and writes the comparison of
:mod:`galaxai.guided.convergence` to ``OUT/report/index.html``.

A trainer is a callable registered in :data:`TRAINERS` with the signature::

    run_arm(arm: str, seed: int, *, preset: str, iterations: int, eval_every: int,
            guide_from: int, data: Path | None, out: Path, progress: bool) -> pandas.DataFrame

returning one row per evaluation with ``iteration``, ``wall_s`` (cumulative training seconds,
evaluation excluded) and metric columns, and ``df.attrs["primary"]`` (the primary metric's
column) and ``df.attrs["higher_is_better"]``. The same seed gives every arm the same
initialisation and data order; guidance acts from iteration ``guide_from`` for ``iterations``
more.

:func:`deblender_arm` is the deblender's trainer (:mod:`galaxai.train.gan` with its
``GuideConfig``). It trains the warm-up up to ``guide_from`` once per seed (without guidance,
which before ``guide_from`` is bit for bit the same training) and forks every arm from that
checkpoint, so arms differ only after it; ``wall_s`` counts from the fork.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galaxai._atomic import atomic_write_json, atomic_write_text
from galaxai.choices import GUIDE_ARMS, GUIDE_EXPLAINERS
from galaxai.guided.convergence import report_section

__all__ = ["TRAINERS", "ExperimentResult", "get_trainer", "arm_guide", "deblender_arm",
           "run_experiment", "demo_section"]

#: Trainer name → ``"module:function"`` of its ``run_arm`` (imported on first use).
TRAINERS: dict[str, str] = {
    "deblender": "galaxai.guided.experiment:deblender_arm",
    "cyclegan": "galaxai.train.cyclegan:run_arm",
}
_CONTROLS = ("constant", "shuffled")
_SETTINGS = ("preset", "iterations", "eval_every", "guide_from", "data")


@dataclass(frozen=True)
class ExperimentResult:
    """What :func:`run_experiment` returns: the rows, the report and the comparison."""

    rows: pd.DataFrame
    report: Path
    primary: str
    higher_is_better: bool
    sections: dict[str, dict]


def get_trainer(trainer: str | Callable) -> Callable:
    """The ``run_arm`` callable of a :data:`TRAINERS` name (a callable is returned as it is)."""
    if callable(trainer):
        return trainer
    if trainer not in TRAINERS:
        raise ValueError(f"trainer={trainer!r} is not one of {sorted(TRAINERS)}")
    module, name = TRAINERS[trainer].split(":")
    try:
        return getattr(import_module(module), name)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise ValueError(f"the {trainer!r} trainer is not available: {module}.{name} cannot be "
                         f"imported ({exc}); update galaxai to a version that has it, or use "
                         f"--trainer deblender") from None


def arm_guide(arm: str, *, start: int, alpha: float = 0.2):
    """The :class:`~galaxai.guided.GuideConfig` of an arm (``None`` for the baseline); the
    controls use the saliency map."""
    from galaxai.guided.core import GuideConfig

    if arm not in GUIDE_ARMS:
        raise ValueError(f"arm {arm!r} is not one of {GUIDE_ARMS}")
    if arm == "baseline":
        return None
    if arm in _CONTROLS:
        return GuideConfig(explainer="saliency", control=arm, alpha=alpha, start=start)
    return GuideConfig(explainer=arm, alpha=alpha, start=start)


# ------------------------------------------------------------------------------ deblender
def _deblender_config(preset: str, seed: int, iterations: int, guide_from: int):
    """The arms' shared training config (no guide): guidance starts at ``guide_from`` and runs
    ``iterations`` more; checkpoints only where the runner stops (at evaluations)."""
    from galaxai.train.gan import GANTrainConfig

    base = GANTrainConfig.preset(preset, seed=seed)
    if guide_from < base.burn_in:
        raise ValueError(f"guide_from={guide_from} lies inside the {preset} preset's burn-in "
                         f"({base.burn_in} iterations); guidance acts on adversarial steps: use "
                         f"guide_from >= {base.burn_in}")
    total = guide_from + iterations
    return dataclasses.replace(base, iterations=total - base.burn_in, checkpoint_every=total + 1)


def _fork(warm_dir: Path, arm_dir: Path, iteration: int, digest: str) -> None:
    """Start ``arm_dir`` from ``warm_dir``'s checkpoint ``iteration`` under config ``digest``.

    Only a config whose guidance starts at or after ``iteration`` may fork: up to there it
    trains exactly as the warm-up did. ``resume.pt`` is written last (atomically), so a fork cut
    short is redone.
    """
    from galaxai.train.checkpoints import checkpoint_dir, load_resume, save_resume

    state = load_resume(warm_dir)
    if state is None or state["iteration"] != iteration:
        raise ValueError(f"warm-up {warm_dir} is not at iteration {iteration}; delete it to redo it")
    target = checkpoint_dir(arm_dir, iteration)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(checkpoint_dir(warm_dir, iteration), target)
    shutil.copyfile(warm_dir / "stats.jsonl", arm_dir / "stats.jsonl")
    save_resume(arm_dir, {**state, "config_hash": digest})


@dataclass
class _HeldOut:
    """The first ``n`` blends of a store's test split, kept in memory."""

    blend: Any
    target_a: Any
    target_b: Any


def _held_out(data: Path, n: int) -> _HeldOut:
    import torch

    from galaxai.data.store import BlendStore

    store = BlendStore(data, split="test")
    if len(store) == 0:
        raise ValueError(f"{data} has no test split to evaluate on; build it with `galaxai data "
                         "blend --test-fraction 0.2`")
    items = [store[i] for i in range(min(n, len(store)))]
    return _HeldOut(*(torch.stack([it[k] for it in items]) for k in ("blend", "target_a",
                                                                     "target_b")))


def _score(checkpoint: Path, held: _HeldOut, batch_size: int = 64) -> dict[str, float]:
    """PSNR and SSIM (data_range 1 and 2) per branch and pooled, of a checkpoint's generator."""
    import torch

    from galaxai.metrics import DeblendScorer
    from galaxai.models.deblender import from_network
    from galaxai.train.checkpoints import load_generator

    generator, _ = load_generator(checkpoint)
    scorer = DeblendScorer()
    with torch.no_grad():
        for lo in range(0, len(held.blend), batch_size):
            g1, g2 = generator(held.blend[lo:lo + batch_size])
            scorer.update(from_network(g1), from_network(g2), held.target_a[lo:lo + batch_size],
                          held.target_b[lo:lo + batch_size])
    s = scorer.compute().summary
    return {"psnr": s["psnr_pooled_mean"], "psnr_a": s["psnr_a_mean"], "psnr_b": s["psnr_b_mean"],
            "ssim_dr1": s["ssim_pooled_dr1_mean"], "ssim_a_dr1": s["ssim_a_dr1_mean"],
            "ssim_b_dr1": s["ssim_b_dr1_mean"], "ssim_dr2": s["ssim_pooled_dr2_mean"]}


def deblender_arm(arm: str, seed: int, *, preset: str, iterations: int, eval_every: int,
                  guide_from: int, data: Path | None, out: Path, progress: bool) -> pd.DataFrame:
    """Train one arm × seed of the deblender (the :data:`TRAINERS` signature).

    The store ``data`` gives the training blends (its train split) and the fixed held-out set
    (the first ``eval_size`` blends of its test split, the preset's number). The warm-up to
    ``guide_from`` is trained once per seed in ``out.parent/warmup-s<seed>-<config hash>`` and
    forked; then the arm trains in chunks of ``eval_every`` iterations, and each chunk's
    checkpoint is scored (:func:`galaxai.metrics.deblend_scores`). A run interrupted in ``out``
    resumes from its last checkpoint.

    Returns
    -------
    pandas.DataFrame
        ``iteration`` (global), ``wall_s`` (training seconds since ``guide_from``: the
        trainer's step time, without evaluation, checkpoints or set-up), ``psnr`` (mean of both
        branches, dB, data_range 1; primary), ``psnr_a``, ``psnr_b``, ``ssim_dr1``,
        ``ssim_a_dr1``, ``ssim_b_dr1``, ``ssim_dr2``.
    """
    from tqdm.auto import tqdm

    from galaxai.data.store import BlendStore
    from galaxai.train.checkpoints import checkpoint_dir, load_resume, read_checkpoint_info
    from galaxai.train.gan import config_digest, train

    if data is None:
        raise ValueError("the deblender trainer needs a blend store: pass data (--data STORE), "
                         "e.g. one made by `galaxai data blend --test-fraction 0.2`")
    if iterations < 1 or eval_every < 1:
        raise ValueError(f"iterations ({iterations}) and eval_every ({eval_every}) must be >= 1")
    base = _deblender_config(preset, seed, iterations, guide_from)
    cfg = dataclasses.replace(base, guide=arm_guide(arm, start=guide_from))
    dataset = BlendStore(data, split="train")
    held = _held_out(Path(data), base.eval_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if load_resume(out) is None:  # guide_from >= burn-in > 0 (checked by _deblender_config)
        warm = out.parent / f"warmup-s{seed}-{config_digest(base)[:10]}"
        train(dataset, warm, base, max_iterations=guide_from)
        _fork(warm, out, guide_from, config_digest(cfg))
    stops = list(range(guide_from, guide_from + iterations, eval_every))[1:]
    stops.append(guide_from + iterations)
    rows = []
    start_elapsed = None
    bar = tqdm(total=len(stops) + 1, disable=not progress, desc=f"{arm} seed {seed}",
               unit="eval", leave=False)
    try:
        for stop in [guide_from, *stops]:
            train(dataset, out, cfg, max_iterations=stop)
            elapsed = float(read_checkpoint_info(checkpoint_dir(out, stop))["elapsed"])
            metrics = _score(checkpoint_dir(out, stop), held)
            start_elapsed = elapsed if start_elapsed is None else start_elapsed
            rows.append({"iteration": stop, "wall_s": elapsed - start_elapsed, **metrics})
            bar.update(1)
            bar.set_postfix(psnr=f"{metrics['psnr']:.2f}")
    finally:
        bar.close()
    frame = pd.DataFrame(rows)
    frame.attrs.update(primary="psnr", higher_is_better=True)
    return frame


# -------------------------------------------------------------------------------- protocol
def _check_arms(arms: Sequence[str], seeds: Sequence[int]) -> tuple[list[str], list[int]]:
    arms, seeds = list(arms), [int(s) for s in seeds]
    bad = [a for a in arms if a not in GUIDE_ARMS]
    if bad:
        raise ValueError(f"unknown arm(s) {bad}; choose from {', '.join(GUIDE_ARMS)}")
    if "baseline" not in arms:
        raise ValueError("arms must include 'baseline' (every arm is compared with it)")
    if len(set(arms)) != len(arms) or len(set(seeds)) != len(seeds):
        raise ValueError(f"arms {arms} and seeds {seeds} must not repeat")
    if not seeds:
        raise ValueError("give at least one seed")
    return arms, seeds


def run_experiment(trainer: str | Callable, arms: Sequence[str], seeds: Sequence[int], *,
                   out: str | Path, progress: bool = False, **settings: Any) -> ExperimentResult:
    """Run every arm with every seed, append the rows to ``out/rows.csv``, write the report.

    Parameters
    ----------
    trainer : str or callable
        A :data:`TRAINERS` name or a ``run_arm`` callable.
    arms : sequence of str
        Arms (:data:`galaxai.choices.GUIDE_ARMS`); ``baseline`` is required.
    seeds : sequence of int
        The same seeds for every arm.
    out : path-like
        Experiment folder: ``experiment.json`` (the settings), ``rows.csv``, ``runs/<arm>-s<seed>``
        (each trainer's own folder) and ``report/index.html``.
    progress : bool
        Progress bars.
    **settings
        ``preset``, ``iterations``, ``eval_every``, ``guide_from``, ``data`` of ``run_arm``.
        Resuming with other settings is refused; more arms or seeds are welcome.

    Returns
    -------
    ExperimentResult
    """
    from tqdm.auto import tqdm

    arms, seeds = _check_arms(arms, seeds)
    missing = [k for k in _SETTINGS if k not in settings]
    unknown = sorted(set(settings) - set(_SETTINGS))
    if missing or unknown:
        raise ValueError(f"settings: missing {missing}, unknown {unknown}; give exactly "
                         f"{list(_SETTINGS)}")
    name = trainer if isinstance(trainer, str) else getattr(trainer, "__qualname__",
                                                            type(trainer).__qualname__)
    run_arm = get_trainer(trainer)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"trainer": name, **{k: (None if v is None else str(v)) if k == "data" else v
                                  for k, v in settings.items()}}
    meta_path = out / "experiment.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    old = {k: meta.get(k) for k in record} if meta else record
    if old != record:
        diff = "; ".join(f"{k}: {old[k]!r} -> {record[k]!r}" for k in record if old[k] != record[k])
        raise ValueError(f"{out} holds an experiment with other settings ({diff}); use its "
                         "settings to resume or add arms, or another --out")
    rows_path = out / "rows.csv"
    rows = pd.read_csv(rows_path) if rows_path.is_file() else None
    done = set() if rows is None else set(zip(rows["arm"], rows["seed"]))
    todo = [(arm, seed) for seed in seeds for arm in arms if (arm, seed) not in done]
    bar = tqdm(total=len(arms) * len(seeds), initial=len(arms) * len(seeds) - len(todo),
               disable=not progress, desc="arms x seeds", unit="run")
    try:
        for arm, seed in todo:
            bar.set_postfix(arm=arm, seed=seed)
            frame = run_arm(arm, seed, out=out / "runs" / f"{arm}-s{seed}", progress=progress,
                            **settings)
            meta = _check_frame(frame, meta, name, record)
            atomic_write_json(meta_path, meta)
            own = [c for c in frame.columns if c not in ("arm", "seed")]
            new = frame.assign(arm=arm, seed=seed)[["arm", "seed", *own]]
            rows = new if rows is None else pd.concat([rows, new], ignore_index=True)
            atomic_write_text(rows_path, rows.to_csv(index=False))
            bar.update(1)
    finally:
        bar.close()
    if not meta.get("primary"):
        raise ValueError(f"{rows_path} has no rows; nothing was run")
    rows = rows[rows["arm"].isin(arms) & rows["seed"].isin(seeds)]
    return _write_report(rows, out, meta["primary"], bool(meta["higher_is_better"]), record)


def _check_frame(frame: pd.DataFrame, meta: dict, name: str, record: dict) -> dict:
    """The trainer's returned table checked against the contract; the experiment's metadata."""
    primary = frame.attrs.get("primary")
    missing = [c for c in ("iteration", "wall_s", primary) if c is None or c not in frame.columns]
    if missing or "higher_is_better" not in frame.attrs:
        raise ValueError(f"trainer {name} returned a table without {missing or 'attrs'}: it must "
                         "have columns iteration, wall_s and the metric named by "
                         "attrs['primary'], and attrs['higher_is_better']")
    if not np.all(np.diff(frame["wall_s"].to_numpy(float)) >= 0):
        raise ValueError(f"trainer {name} returned a wall_s that decreases; it must be "
                         "cumulative training time")
    return {**record, "primary": primary, "higher_is_better": bool(frame.attrs["higher_is_better"]),
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _write_report(rows: pd.DataFrame, out: Path, primary: str, higher: bool, record: dict
                  ) -> ExperimentResult:
    from galaxai.viz.report import Report

    report = Report("Explanation-guided training", f"trainer {record['trainer']}, preset "
                    f"{record['preset']}, {record['iterations']} iterations from iteration "
                    f"{record['guide_from']}, evaluated every {record['eval_every']}")
    arms = list(dict.fromkeys(rows["arm"]))
    guided = [a for a in arms if a in GUIDE_EXPLAINERS] or [a for a in arms if a != "baseline"]
    sections = {}
    for arm in guided:
        sections[arm] = report_section(report, rows, primary, arm=arm,
                                       higher_is_better=higher,
                                       unit="dB" if primary.startswith("psnr") else "")
    if not guided:
        report.add_section("Baseline only", "No guided arm was run; nothing to compare.")
    path = report.write(out / "report")
    return ExperimentResult(rows.reset_index(drop=True), path, primary, higher, sections)


def demo_section(report, work_dir: str | Path, *, quick: bool, seed: int, progress: bool,
                 title: str = "Explanation-guided training (xAI-GAN): saliency against baseline"
                 ) -> None:
    """Add the demo's guided-vs-baseline section (``title``): the ``tiny`` deblender, two seeds.

    Arms baseline, saliency and the shuffled control (``quick``: no control, 2 iterations, 24
    blends); a small simulated store in ``work_dir``; the verdict worded by the numbers.
    """
    from galaxai.data.blend import BlendConfig
    from galaxai.data.simulate import SimConfig
    from galaxai.data.store import build_store

    work = Path(work_dir) / "guided"
    n, iterations, every = (24, 2, 2) if quick else (64, 12, 4)
    store = build_store(work / "store", n, seed, sim_config=SimConfig.preset("tiny"),
                        blend_config=BlendConfig.preset("tiny"), chunk=n, test_fraction=0.25)
    arms = ["baseline", "saliency"] + ([] if quick else ["shuffled"])
    seeds = [seed, seed + 1]
    settings = dict(preset="tiny", iterations=iterations, eval_every=every, guide_from=4,
                    data=store)
    rows = None
    for s in seeds:
        for arm in arms:
            frame = deblender_arm(arm, s, out=work / "runs" / f"{arm}-s{s}", progress=progress,
                                  **settings)
            frame = frame.assign(arm=arm, seed=s)
            rows = frame if rows is None else pd.concat([rows, frame], ignore_index=True)
    report_section(report, rows, "psnr", arm="saliency", unit="dB", title=title, n_times=6, n_boot=1000)
    report.add_text(f"tiny deblender, {len(seeds)} seeds, {iterations} iterations after a "
                    f"4-iteration burn-in, {n} simulated blends; a demonstration of the protocol, "
                    "far too short to settle the question (see docs/guided.md for the small "
                    "preset's measurement).")
