"""``galaxai experiment guided``: the arms × seeds protocol of explanation-guided training.

Registered on the ``experiment`` group by :mod:`galaxai.cli`; heavy imports happen inside the
command, so ``galaxai --help`` stays fast.
"""
from __future__ import annotations

from pathlib import Path

import click

from galaxai._cli_options import comma_list
from galaxai.choices import GUIDE_ARMS, GUIDE_TRAINERS, PRESETS

__all__ = ["guided"]


def _arm(name: str) -> str:
    if name not in GUIDE_ARMS:
        raise click.BadParameter(f"unknown arm {name!r}; choose from {', '.join(GUIDE_ARMS)}",
                                 param_hint="--arms")
    return name


@click.command("guided")
@click.option("--trainer", type=click.Choice(GUIDE_TRAINERS), default="deblender",
              show_default=True, help="Which GAN trainer runs the arms.")
@click.option("--arms", default="baseline,saliency,constant,shuffled", show_default=True,
              callback=comma_list("arms", _arm),
              help=f"Comma-separated arms: {', '.join(GUIDE_ARMS)}; baseline is required.")
@click.option("--seeds", default="0,1,2", show_default=True, callback=comma_list("seeds", int),
              help="Comma-separated seeds, the same for every arm.")
@click.option("--preset", type=click.Choice(PRESETS), default="small", show_default=True)
@click.option("--iters", "iterations", type=click.IntRange(min=1), required=True,
              help="Iterations each arm trains after --guide-from.")
@click.option("--eval-every", type=click.IntRange(min=1), required=True,
              help="Iterations between evaluations on the fixed held-out set.")
@click.option("--guide-from", type=click.IntRange(min=0), required=True,
              help="Guidance starts after this many iterations (burn-in included); trained once "
                   "per seed and shared by every arm.")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="The trainer's data: deblender, a blend store (train split to train, test "
                   "split to evaluate); cyclegan, a saved stamp-set file (default: built).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Experiment folder; an existing one resumes (finished arm × seed are kept).")
@click.pass_context
def guided(ctx, trainer, arms, seeds, preset, iterations, eval_every, guide_from, data, out):
    """Guided training against a baseline and two controls: curves, intervals, verdict.

    Every finished arm x seed is appended to OUT/rows.csv; the same command continues an
    interrupted experiment, and more --arms or --seeds add to it.
    """
    import signal

    from galaxai.guided.experiment import run_experiment
    from galaxai.train.gan import TrainingTerminated

    try:
        result = run_experiment(trainer, arms, seeds, out=out, progress=True, preset=preset,
                                iterations=iterations, eval_every=eval_every,
                                guide_from=guide_from, data=data)
    except TrainingTerminated as exc:
        click.echo(f"{exc}; finished arms are in {out / 'rows.csv'}", err=True)
        ctx.exit(128 + signal.SIGTERM)
    for section in result.sections.values():
        for v in section["verdicts"].values():
            click.echo(v.text)
    click.echo(f"rows: {(out / 'rows.csv').resolve()}")
    click.echo(str(result.report.resolve()))
