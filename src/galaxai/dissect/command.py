"""``galaxai dissect``: GAN Dissection of a generator, and interventions on it.

``galaxai dissect RUN --data STORE --out DIR`` runs the pipeline (:mod:`galaxai.dissect.workflow`;
it is the ``run`` subcommand, which may be left out); ``galaxai dissect apply RUN --intervention
FILE.json --data STORE --out DIR`` renders blends before and after an intervention with the
per-branch scores. RUN is a run folder (its latest checkpoint), a checkpoint folder or weights
file, or a shipped model's name (``small``).
"""
from __future__ import annotations

from pathlib import Path

import click

__all__ = ["dissect"]


class _DefaultGroup(click.Group):
    """A group whose first argument, unless it names a subcommand or an option, starts ``run``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _networks(run: str, device: str):
    """Generator, discriminator (``None`` if the run has none) and a name, from RUN."""
    from galaxai import api
    from galaxai.cli import _checkpoint_of
    from galaxai.train.checkpoints import shipped_file, shipped_models

    path = Path(run).expanduser()
    if shipped_file(run, "deblender") is not None:
        ckpt: str | Path = run
    elif path.exists():
        ckpt = _checkpoint_of(path)
    else:
        raise click.BadParameter(f"{run!r} is neither a run folder, a checkpoint nor a shipped "
                                 f"model ({', '.join(shipped_models())})", param_hint="RUN")
    try:
        generator = api.generator(ckpt, device)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        raise click.ClickException(f"cannot load the generator of {run}: {exc}") from None
    try:
        critic = api.discriminator(ckpt, device)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError):
        critic = None
    return generator, critic, str(ckpt)


def _sets(data: Path, n: int):
    from galaxai.dissect.workflow import load_sets

    try:
        return load_sets(data, n)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None


@click.group(cls=_DefaultGroup)
def dissect():
    """GAN Dissection of a generator's units (`galaxai dissect RUN ...` = `dissect run RUN ...`)."""


_DATA = click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     required=True, help="Simulated blend store with component truth (its test "
                     "rows, or all rows), e.g. from `galaxai data blend --test-fraction 1`.")
_OUT = click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                    help="Output folder.")
_DEVICE = click.option("--device", default="cpu", show_default=True, help="Torch device.")


@dissect.command("run")
@click.argument("run")
@_DATA
@_OUT
@click.option("--layers", default=None,
              help="Comma-separated layers (default all: head, root.k, trunk, branch1.k, ...).")
@click.option("--n", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Blends in the threshold set and in the dissection set each.")
@click.option("--effect-n", type=click.IntRange(min=1), default=64, show_default=True,
              help="Blends for the α optimisation / artifact scores, and held-out blends for the "
                   "ablation curves and artifact removal.")
@click.option("--n-random", type=click.IntRange(min=1), default=5, show_default=True,
              help="Random unit sets per size.")
@click.option("--ace-epochs", type=click.IntRange(min=0), default=10, show_default=True,
              help="Epochs of the ACE α optimisation (0: rank by IoU only).")
@click.option("--concept", "concepts", multiple=True,
              help="Headline concept (repeatable; default galaxy_B and the best component).")
@click.option("--concept-layer", default=None,
              help="Layer where the headline concepts are ranked and ablated (default: each at "
                   "the layer of its best-IoU unit).")
@click.option("--artifacts/--no-artifacts", default=True, show_default=True,
              help="Score artifact units (one ablation per unit).")
@click.option("--artifact-k", type=click.IntRange(min=1), default=4, show_default=True,
              help="Units removed per artifact score.")
@click.option("--gallery-units", type=click.IntRange(min=0), default=48, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_DEVICE
def run_command(run, data, out, layers, n, effect_n, n_random, ace_epochs, concepts,
                concept_layer, artifacts, artifact_k, gallery_units, batch_size, seed, device):
    """Dissect RUN's generator on --data: units.csv, concepts.csv, curves, artifacts, report.

    Costly parts are cached in OUT/cache: running the same command again skips them.
    """
    from galaxai.dissect.workflow import DissectConfig, run_dissection

    generator, critic, name = _networks(run, device)
    config = DissectConfig(layers=tuple(x.strip() for x in layers.split(",") if x.strip())
                           if layers else None, n=n, effect_n=effect_n, n_random=n_random,
                           ace_epochs=ace_epochs, concepts=tuple(concepts) or None,
                           concept_layer=concept_layer,
                           artifacts=artifacts, artifact_k=artifact_k,
                           gallery_units=gallery_units, batch_size=batch_size, seed=seed)
    sets = _sets(data, n)
    if critic is None and artifacts:
        click.echo("no discriminator beside the generator: artifact scores by ΔPSNR/ΔSSIM only")
    try:
        summary = run_dissection(generator, sets, out, config, discriminator=critic,
                                 model_name=name, progress=True, log=click.echo)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--layers/--concept") from None
    click.echo(f"{summary['interpretable']} of {summary['units']} units interpretable")
    for row in summary["headline"]:
        shares = ", ".join(f"top-{row['n']} {k[6:]} {row[k]:.3f}" for k in row
                           if k.startswith("share_"))
        click.echo(f"{row['concept']} at {row['layer']}: {shares}; random {row['random_mean']:.3f}"
                   f" [{row['random_min']:.3f}, {row['random_max']:.3f}]")
    click.echo(summary["report"])


@dissect.command("apply")
@click.argument("run")
@click.option("--intervention", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="JSON: {layer, units, mode, alpha, value, mask} or a list.")
@_DATA
@_OUT
@click.option("--n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Blends rendered and scored.")
@_DEVICE
def apply_command(run, intervention, data, out, n, device):
    """Render blends before and after an intervention on RUN's generator, with per-branch scores."""
    import numpy as np
    import pandas as pd
    import torch

    from galaxai._atomic import atomic_write_text
    from galaxai.dissect.effects import intervention_effects
    from galaxai.dissect.hooks import intervene, load_interventions
    from galaxai.viz.render import montage, save_png, stretch_image
    from galaxai.viz.report import Report

    try:
        items = load_interventions(intervention)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--intervention") from None
    generator, _, name = _networks(run, device)
    sets = _sets(data, n)
    effect = sets.effect_set(np.arange(min(n, len(sets.blends))), 16)
    try:
        with torch.inference_mode(), intervene(generator, items):
            generator(effect.inputs[:1].to(device))
    except (KeyError, ValueError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        raise click.BadParameter(f"{intervention}: {msg}", param_hint="--intervention") from None
    before = effect.outputs(generator)
    after = effect.outputs(generator, items)
    concepts = [c for c in ("galaxy_A", "galaxy_B") if c in effect.concepts.names]
    table = pd.DataFrame([{"concept": c, **intervention_effects(generator, effect, items, c,
                                                                baseline=before)}
                          for c in concepts])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "effects.csv", table.to_csv(index=False))
    # one fixed display range for every tile, so flux an intervention removes stays visible
    show = lambda v: stretch_image(np.moveaxis(v, 0, -1), "asinh", vmin=0.0, vmax=1.0)  # noqa: E731
    tiles = []
    for i in range(len(effect)):
        tiles += [show(effect.inputs[i].numpy()), show(before[0][i].numpy()),
                  show(after[0][i].numpy()), show(before[1][i].numpy()), show(after[1][i].numpy())]
    figure = save_png(montage(tiles, ncols=5, size=160, pad=2), out / "before_after.png")
    page = Report("Intervention on the generator", f"{name} · {data}")
    page.add_section("Interventions", "; ".join(str(i.to_dict()) for i in items))
    page.add_figure(figure, "Per row: blend, branch A before, after, branch B before, after.")
    page.add_table(table, f"Share of each galaxy's flux removed from its branch, leakage and "
                          f"ΔPSNR / ΔSSIM per branch (0 = A, 1 = B) over {len(effect)} blends")
    click.echo(table.to_string(index=False))
    click.echo(str(page.write(out / "report")))
