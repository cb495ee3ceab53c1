"""The ``galaxai`` command: one click group, one subcommand per job.

Every subcommand is a thin layer over the Python API: it parses options, turns on progress bars
and prints where results went. Heavy imports happen inside the commands so ``galaxai --help``
stays fast.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click
import numpy as np

from galaxai._cli_options import comma_list, self_ensemble_option
from galaxai.choices import (ACTIVATIONS, ARCHITECTURES, AUGMENT_PRESETS, BAR_ALGORITHMS,
                             COMPARED_METHODS, DEFAULT_MODEL, GUIDE_EXPLAINERS, LAYOUTS, MERGES,
                             PADDINGS, PIXEL_LOSSES, PRESETS, SIM_MODES, SPLITS)

__all__ = ["main"]


class _Galaxai(click.Group):
    """The command group: expected errors of any subcommand end as one line and exit status 2.

    Expected errors are bad input of every kind: ``ValueError`` (``StoreError``, ``SourceError``,
    input checks, corrupt Parquet/JSON/safetensors), ``OSError`` (missing or unreadable files,
    corrupt FITS) and a run folder locked by another trainer. Their messages name the file or
    array and the fix; ``galaxai --debug`` re-raises them with the traceback instead.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:  # noqa: D102
        ctx.meta["galaxai.argv"] = list(args)  # `train --nproc` relaunches itself under torchrun
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):  # noqa: D102
        from galaxai.train.runlock import RunLockedError

        try:
            return super().invoke(ctx)
        except (ValueError, OSError, RunLockedError) as exc:
            if ctx.meta.get("galaxai.debug"):
                raise
            error = click.ClickException(_one_line(exc))
            error.exit_code = 2
            raise error from None


def _one_line(exc: BaseException) -> str:
    """The message of an expected error on one line (a bare OS error gets its file and a fix)."""
    if isinstance(exc, OSError) and exc.filename and str(exc).startswith("[Errno"):
        return (f"cannot use {exc.filename}: {exc.strerror}; check that the path exists and is "
                "readable (or writable)")
    return " ".join(f"{exc}".split()) or type(exc).__name__


@click.group(cls=_Galaxai)
@click.version_option(package_name="galaxai")
@click.option("--debug", is_flag=True, help="Show the traceback of an error instead of one line.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """galaxai: train a galaxy deblender GAN and ask its discriminator why."""
    ctx.meta["galaxai.debug"] = debug


# --------------------------------------------------------------------------------------- data
@main.group()
def data() -> None:
    """Simulate galaxies, load real ones, and build blend stores."""


@data.command("simulate")
@click.option("--n", "n", type=click.IntRange(min=1), default=100, show_default=True,
              help="Number of galaxies.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--preset", type=click.Choice(PRESETS), default="small", show_default=True)
@click.option("--mode", type=click.Choice(SIM_MODES), default="parametric",
              show_default=True, help="Parametric GalSim profiles or real HST COSMOS galaxies.")
@click.option("--cosmos-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the GalSim COSMOS sample (mode=cosmos).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder: one g,r,i FITS cube per galaxy plus catalogue.parquet.")
def data_simulate(n, seed, preset, mode, cosmos_dir, out):
    """Simulate N galaxies and write them as FITS cubes with a Parquet catalogue."""
    from galaxai._atomic import atomic_write
    from galaxai.data.fits_export import write_fits_stamps
    from galaxai.data.simulate import SimConfig, simulate

    sample = simulate(n, seed=seed, config=SimConfig.preset(preset), mode=mode,
                      cosmos_dir=cosmos_dir, progress=True)
    names = [f"galaxy_{seed:04d}_{i:06d}" for i in range(n)]
    write_fits_stamps(out, sample.flux, names,
                      [{"GXSEED": seed, "GXINDEX": i, "GXMODE": mode, "BUNIT": "ADU"} for i in range(n)])
    catalogue = sample.catalogue.assign(file=[f"{name}.fits" for name in names])
    atomic_write(out / "catalogue.parquet", lambda tmp: catalogue.to_parquet(tmp, index=False))
    click.echo(f"wrote {n} galaxies to {out}")


_SOURCES = ("simulated", "hdf", "cosmos", "fits", "jpeg")
_REAL_HELP = ("Galaxies: 'simulated' (GalSim), or real isolated galaxies: 'hdf' (left half of "
              "skimage's Hubble Deep Field; the right half is reserved), 'cosmos' (the 100 HST "
              "stamps as observed), 'fits'/'jpeg' (a folder of stamps given by --dir). Repeat "
              "for a mix of real sources.")


def _galaxy_source_options(split: str, use: str):
    """``--source``, ``--dir`` and ``--split`` (default ``split``) of `data blend` and `data pool`."""
    def decorate(fn):
        for option in reversed([
            click.option("--source", "sources", type=click.Choice(_SOURCES), multiple=True,
                         default=("simulated",), show_default=True, help=_REAL_HELP),
            click.option("--dir", "directory", default=None,
                         type=click.Path(exists=True, file_okay=False, path_type=Path),
                         help="Folder of isolated-galaxy stamps (--source fits|jpeg)."),
            click.option("--split", type=click.Choice(SPLITS), default=split, show_default=True,
                         help=f"Which split of a real source's galaxies to {use}."),
        ]):
            fn = option(fn)
        return fn
    return decorate


def _real_frames(sources, directory, split, copies, seed):
    """RealFrames from the named real sources (one set, sources concatenated)."""
    from galaxai.data.real import RealFrames, real_frames

    parts = [real_frames(src, split, directory=directory, copies=copies, seed=seed + k)
             for k, src in enumerate(sources)]
    frames = RealFrames.concat(parts)
    if frames.report.skipped:
        click.echo(f"{len(frames.report.skipped)} candidate frame(s) left out "
                   f"(e.g. {frames.report.skipped[0][0]}: {frames.report.skipped[0][1]})", err=True)
    return frames


@data.command("blend")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Store folder (blends.zarr + catalogue.parquet).")
@click.option("--n", "n", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Number of blends.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--preset", type=click.Choice(PRESETS), default="small", show_default=True)
@click.option("--padding", type=click.Choice(PADDINGS), default=None,
              help="Fill of pixels warped in from outside B's frame (default: the preset's; "
                   "'zero' reproduces the paper's phantom boundary).")
@click.option("--merge", type=click.Choice(MERGES), default=None,
              help="'max' of display images (paper) or 'sum' (simulated: fluxes with noise added "
                   "once; real: B's sky-subtracted light added to A).")
@click.option("--mode", type=click.Choice(SIM_MODES), default="parametric",
              show_default=True, help="Simulator mode (--source simulated).")
@_galaxy_source_options(split="test", use="blend")
@click.option("--chunk", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--test-fraction", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of simulated blends labelled 'test' (1 for a held-out store); real "
                   "blends are labelled by --split.")
def data_blend(out, n, seed, preset, padding, merge, mode, sources, directory, split, chunk,
               test_fraction):
    """Blend galaxy pairs (simulated or real) into a Zarr + Parquet store."""
    import dataclasses

    from galaxai.data.blend import BlendConfig
    from galaxai.data.simulate import SimConfig
    from galaxai.data.store import build_store, write_store

    blend_cfg = BlendConfig.preset(preset)
    overrides = {k: v for k, v in {"padding": padding}.items() if v is not None}
    blend_cfg = dataclasses.replace(blend_cfg, **overrides)
    if "simulated" in sources:
        if len(sources) > 1:
            raise click.BadParameter("blend simulated and real galaxies into separate stores",
                                     param_hint="--source")
        if merge:
            blend_cfg = dataclasses.replace(blend_cfg, merge=merge)
        path = build_store(out, n, seed, sim_config=SimConfig.preset(preset),
                           blend_config=blend_cfg, chunk=chunk, progress=True, mode=mode,
                           test_fraction=test_fraction)
    else:
        from galaxai.data.real import real_blends

        frames = _real_frames(sources, directory, split, 1, seed)
        batch = real_blends(frames, n, seed, blend_cfg, merge=merge or "max")
        path = write_store(out, batch, split="test" if split == "all" else split, chunk=chunk,
                           metadata={"sources": list(sources), "split": split, "seed": seed,
                                     "merge": merge or "max", "galaxies": len(frames),
                                     "directory": str(directory) if directory else None})
    click.echo(f"store ready: {path}")


@data.command("pool")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Pool folder (galaxies.zarr + catalogue.parquet).")
@click.option("--n", "n", type=click.IntRange(min=2), default=2000, show_default=True,
              help="Number of galaxies (simulated pools).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--preset", type=click.Choice(PRESETS), default="small", show_default=True)
@click.option("--cosmos-fraction", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Share of real HST (COSMOS) galaxies re-observed through GalSim.")
@_galaxy_source_options(split="train", use="pool")
@click.option("--copies", type=click.IntRange(min=1), default=3, show_default=True,
              help="Frames per real galaxy, each at its own apparent size.")
@click.option("--chunk", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
def data_pool(out, n, seed, preset, cosmos_fraction, sources, directory, split, copies, chunk,
              workers):
    """Build a pool of galaxies (simulated or real) that training blends are drawn from on the fly."""
    from galaxai.data.pool import build_galaxy_pool, build_real_pool
    from galaxai.data.simulate import SimConfig

    if "simulated" in sources:
        if len(sources) > 1:
            raise click.BadParameter("pool simulated and real galaxies separately (train mixes "
                                     "pools with --data A --data B)", param_hint="--source")
        path = build_galaxy_pool(out, n, seed, SimConfig.preset(preset),
                                 cosmos_fraction=cosmos_fraction, chunk=chunk, workers=workers,
                                 progress=True)
    else:
        frames = _real_frames(sources, directory, split, copies, seed)
        path = build_real_pool(out, frames, source="+".join(sources), chunk=chunk,
                               settings={"split": split, "copies": copies, "seed": seed,
                                         "directory": str(directory) if directory else None})
        click.echo(f"{len(frames)} frames of real galaxies")
    click.echo(f"pool ready: {path}")


# --------------------------------------------------------------------------------------- train
def _warn_if_stale_pool(pool_path: Path) -> None:
    """Warn on stderr when a galaxy pool was simulated by other simulator code than this one."""
    from galaxai.data.pool import reproduction_error

    error = reproduction_error(pool_path)
    if error:
        click.echo(f"warning: {pool_path} was simulated by a different version of the galaxai "
                   f"simulator (its first parametric galaxy differs from a fresh simulation by up "
                   f"to {error:.3g} in display units); models trained on it will not match data "
                   f"made today. Rebuild it with `galaxai data pool` into a new folder.", err=True)


def _training_data(data_paths, weights, length: int, seed: int, padding: str | None,
                   augment: str):
    """Blend stores (blends.zarr) and galaxy pools (galaxies.zarr) as one training dataset."""
    import dataclasses

    from galaxai.data.augment import DisplayAugment
    from galaxai.data.blend import BlendConfig
    from galaxai.data.pool import BlendStream, GalaxyPool, MixedStream
    from galaxai.data.store import BlendStore

    if weights and len(weights) != len(data_paths):
        raise click.BadParameter(f"give one --data-weight per --data ({len(data_paths)}), got "
                                 f"{len(weights)}", param_hint="--data-weight")
    parts = []
    for k, data_path in enumerate(data_paths):
        if (data_path / "galaxies.zarr").exists():
            _warn_if_stale_pool(data_path)
            cfg = BlendConfig.preset("small", noise_method="border")
            if padding:
                cfg = dataclasses.replace(cfg, padding=padding)
            parts.append(BlendStream(GalaxyPool(data_path), length, seed + k, cfg,
                                     augment=None if augment == "none"
                                     else DisplayAugment.preset(augment)))
        else:
            if augment != "none":
                raise click.BadParameter(f"{data_path} is a blend store; --augment draws blends on "
                                         "the fly and needs galaxy pools", param_hint="--augment")
            parts.append(BlendStore(data_path, split="train"))
    if len(parts) == 1:
        return parts[0]
    return MixedStream(parts, weights or [1.0] * len(parts), seed)


def _write_data_recipe(run_dir: Path, data_paths, weights, augment: str, padding, length: int,
                       eval_data) -> None:
    """``run_dir/data.json``: each data folder's manifest settings, the mix, the survey look."""
    import dataclasses
    import json

    from galaxai._atomic import atomic_write_json
    from galaxai.data.augment import DisplayAugment
    from galaxai.train.checkpoints import DATA_RECIPE

    parts = []
    for path in data_paths:
        manifest = json.loads((path / "manifest.json").read_text())
        keep = {k: manifest[k] for k in ("format", "source", "n", "seed", "cosmos_fraction",
                                         "settings", "sim_config", "blend_config") if k in manifest}
        parts.append({"path": str(path), **keep})
    recipe = {"data": parts, "weights": list(weights) or [1.0] * len(parts),
              "augment": None if augment == "none" else {
                  "preset": augment, **dataclasses.asdict(DisplayAugment.preset(augment))},
              "padding": padding or "noise", "stream_length": length,
              "eval_data": str(eval_data) if eval_data else None}
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / DATA_RECIPE, recipe)


@main.command()
@click.option("--data", "data_paths", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, multiple=True,
              help="A blend store or a galaxy pool; repeat to mix several (see --data-weight).")
@click.option("--data-weight", "weights", type=click.FloatRange(min=0), multiple=True,
              help="Share of each --data in the mix (default equal).")
@click.option("--augment", type=click.Choice(("none",) + AUGMENT_PRESETS), default="none",
              show_default=True,
              help="Random survey look per blend (stretch, sky, max/sum merge, JPEG): 'full' or "
                   "'mild'; pools only.")
@click.option("--init-from", default=None,
              help="Start a new run from a checkpoint directory's weights or a shipped model's "
                   "(small, realsky, ...; 'shipped' is small).")
@click.option("--eval-data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Held-out blend store (its test split is scored).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory; an existing one is resumed. Default: runs/<id>-<preset>-deblender.")
@click.option("--preset", type=click.Choice(PRESETS), default="small", show_default=True)
@click.option("--iterations", type=click.IntRange(min=0), default=None,
              help="Adversarial iterations (default: the preset's).")
@click.option("--burn-in", type=click.IntRange(min=0), default=None,
              help="Perceptual burn-in steps (default: the preset's).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate (default: the preset's; the late rate stays at lr/10).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None)
@click.option("--padding", type=click.Choice(PADDINGS), default=None,
              help="Padding of on-the-fly blends from a pool (default noise).")
@click.option("--stream-length", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Distinct blends a pool exposes.")
@click.option("--vgg19-weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Local torchvision VGG19 weights for the perceptual burn-in (never downloaded).")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="DataLoader worker processes (default: the preset's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--g-filters", type=click.IntRange(min=1), default=None,
              help="Generator width (default: the preset's; 'small' has 16, 'paper' 64).")
@click.option("--skip-gate", is_flag=True, default=None,
              help="Gated output skip: each branch mixes a new value and the blend itself with a "
                   "per-pixel gate (DeblenderConfig.skip_gate; needs a preset with output_skip).")
@click.option("--shared-dilations", default=None, metavar="D1,D2,...",
              callback=comma_list("dilations", int),
              help="Dilation of each shared residual block of the generator, e.g. 1,2,4 for the "
                   "'small' preset's three (DeblenderConfig.shared_dilations; default undilated).")
@click.option("--coord-channels", is_flag=True, default=None,
              help="Give the generator the offset of each pixel from the stamp centre as two more "
                   "input planes (DeblenderConfig.coord_channels; A is the centred galaxy).")
@click.option("--pixel-loss", type=click.Choice(PIXEL_LOSSES), default=None,
              help="Pixel term of the generator loss: the paper's batch 'mse' (default) or the "
                   "per-image 'log-mse' that PSNR means score.")
@click.option("--extend", is_flag=True,
              help="Resume with more --iterations than the run had (recorded in stats.jsonl); "
                   "any other changed option is refused.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel processes on this machine (torchrun; gloo on CPU, NCCL on "
                   "GPUs). The preset's batch size is the global batch, split among them.")
@click.option("--guide", type=click.Choice(GUIDE_EXPLAINERS), default=None,
              help="xAI-GAN: scale the generator's adversarial output gradient by 1 + alpha*M, M "
                   "the discriminator's explanation of its fakes (galaxai.guided).")
@click.option("--guide-alpha", type=click.FloatRange(min=0), default=0.2, show_default=True,
              help="alpha of --guide.")
@click.option("--guide-from", type=click.IntRange(min=0), default=None,
              help="First iteration (burn-in included) of --guide (default: mid adversarial phase).")
@click.pass_context
def train(ctx, data_paths, weights, augment, init_from, eval_data, run_dir, preset, iterations,
          burn_in, lr, checkpoint_every, padding, stream_length, vgg19_weights, device, workers,
          seed, g_filters, skip_gate, shared_dilations, coord_channels, pixel_loss, extend, guide, guide_alpha, guide_from, nproc):
    """Train (or resume) the Galaxy Deblender GAN with checkpoints, stats.jsonl and evaluation.

    Resuming a run keeps the options left out at the run's values (from its config.toml) and
    refuses options that change them, except more --iterations with --extend.
    """
    import dataclasses
    import signal

    from galaxai.config import read_config
    from galaxai.data.store import BlendStore
    from galaxai.models.deblender import DeblenderConfig
    from galaxai.train.gan import GANTrainConfig, TrainingTerminated, new_run_dir
    from galaxai.train.gan import train as run_training

    overrides = {k: v for k, v in {"iterations": iterations, "burn_in": burn_in,
                                   "checkpoint_every": checkpoint_every,
                                   "perceptual_weights": vgg19_weights,
                                   "num_workers": workers, "init_from": init_from,
                                   "pixel_loss": pixel_loss,
                                   "lr": lr, "lr_late": lr / 10 if lr else None}.items()
                 if v is not None}
    if guide is not None:
        from galaxai.guided import GuideConfig

        overrides["guide"] = GuideConfig(explainer=guide, alpha=guide_alpha, start=guide_from)
    model = {k: v for k, v in {"skip_gate": skip_gate, "g_filters": g_filters,
                               "coord_channels": coord_channels,
                               "shared_dilations": tuple(shared_dilations or ())}.items() if v}
    if model:
        overrides["model"] = DeblenderConfig.preset(
            preset, **({"output_skip": True} if skip_gate else {}), **model)
    given = {name for name in ("preset", "seed")
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    if run_dir is not None and (run_dir / "resume.pt").exists() and "preset" not in given:
        own = read_config(GANTrainConfig, run_dir / "config.toml")
        cfg = dataclasses.replace(own, **overrides, **({"seed": seed} if "seed" in given else {}))
    else:
        cfg = GANTrainConfig.preset(preset, seed=seed, **overrides)
    dataset = _training_data(data_paths, weights, stream_length, cfg.seed, padding, augment)
    held_out = BlendStore(eval_data, split="test") if eval_data else None
    if run_dir is None:
        run_dir = new_run_dir("runs", f"{preset}-deblender")
    if nproc > 1:
        _relaunch(ctx, nproc, run_dir)
    _write_data_recipe(run_dir, data_paths, weights, augment, padding, stream_length, eval_data)
    try:
        result = run_training(dataset, run_dir, cfg, eval_dataset=held_out, progress=True,
                              device=device, extend=extend)
    except TrainingTerminated as exc:
        click.echo(str(exc), err=True)
        ctx.exit(128 + signal.SIGTERM)
    click.echo(f"run {result.run_dir}: iteration {result.iteration}, metrics {result.metrics}")


def _relaunch(ctx: click.Context, nproc: int, run_dir: Path) -> None:
    """Run this `galaxai train` command again under torchrun with ``nproc`` local processes
    (without --nproc, with --run fixed so every rank trains the same run), and exit with its
    status."""
    from galaxai.train.distributed import launch

    argv, rest = [], iter(ctx.find_root().meta["galaxai.argv"])
    for token in rest:
        if token == "--nproc":
            next(rest, None)
        elif not token.startswith("--nproc="):
            argv.append(token)
    if "--run" not in argv and not any(t.startswith("--run=") for t in argv):
        argv += ["--run", str(run_dir)]
    ctx.exit(launch(nproc, argv))


# --------------------------------------------------------------------------------------- batch
@main.command("batch")
@click.argument("task", type=click.Choice(("deblend", "explain", "discriminate")))
@click.option("--catalogue", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="Parquet table with a 'row' (blend-store row) or 'path' "
                                  "(stamp file) column; other columns are carried through.")
@click.option("--stamps", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="The blend store, or the folder that 'path' is relative to.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder: parts/ (Zarr + Parquet per batch) and results.parquet; a "
                   "rerun skips the stamps already done.")
@click.option("--engine", type=click.Choice(("local", "ray")), default="local", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--actors", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray actors, each with its own copy of the model.")
@click.option("--gpus-per-actor", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--address", default=None,
              help="Join this running Ray cluster (ray.init(address=...)); default: a local one.")
@click.option("--checkpoint", default=None,
              help=f"Checkpoint directory or shipped model name (default: '{DEFAULT_MODEL}').")
def batch_cmd(task, catalogue, stamps, out, engine, batch_size, actors, gpus_per_actor, address,
              checkpoint):
    """Deblend, explain or score every stamp of a survey catalogue, in batches (local or Ray)."""
    from galaxai.batch import run_batch_job

    if engine == "ray" and address:
        import ray

        ray.init(address=address)
    results = run_batch_job(task, catalogue, stamps, out, engine=engine, batch_size=batch_size,
                            actors=actors, gpus_per_actor=gpus_per_actor, checkpoint=checkpoint,
                            progress=True)
    failed = results[results["status"] != "ok"]
    for _, row in failed.head(20).iterrows():
        click.echo(f"  stamp {row['id']}: {row['error']}", err=True)
    click.echo(f"{len(results) - len(failed)} stamp(s) done, {len(failed)} failed -> "
               f"{out / 'results.parquet'}")


# ------------------------------------------------------------------------------------- deblend
@main.command("deblend")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False,
                                                                   path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for <name>_a.fits, <name>_b.fits, <name>.png and catalogue.parquet/.csv.")
@click.option("--checkpoint", default=None,
              help="Checkpoint directory (G and D), G.safetensors, or a shipped model's name "
                   f"(default: '{DEFAULT_MODEL}').")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=3.0,
              show_default=True, help="SEP detection threshold (sigma) for whole FITS images.")
@self_ensemble_option
def deblend_cmd(inputs, out, checkpoint, threshold, self_ensemble):
    """Deblend your own data: stamps (FITS cube or g/r/i files, PNG/JPEG, .npy) or whole FITS images.

    A FITS image larger than 160 px is searched for blended pairs (touching SEP footprints); a
    stamp is cut around each. Stamps that are not 80×80 are resampled, with a warning.
    """
    import warnings

    from galaxai.api import StampSizeWarning
    from galaxai.userdata import deblend_files

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StampSizeWarning)
        job = deblend_files(list(inputs), out, checkpoint=checkpoint, progress=True,
                            field_threshold=threshold, self_ensemble=self_ensemble)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    if job.report.skipped:
        click.echo(f"skipped {len(job.report.skipped)} input(s):", err=True)
        for item, reason in job.report.skipped:
            click.echo(f"  {item}: {reason}", err=True)
    click.echo(f"{len(job.catalogue)} blend(s) from {len(job.report.loaded)} file(s) -> "
               f"{job.out / 'catalogue.parquet'}")


# ------------------------------------------------------------------------------------ evaluate
@main.command()
@click.option("--data", "data_path", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Blend store; its test split is scored (all rows if it has none).")
@click.option("--checkpoint", default=None,
              help="Checkpoint directory, G.safetensors or a shipped model's name (default: "
                   f"'{DEFAULT_MODEL}').")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for tables, panels and report/index.html.")
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help="Score only the first N held-out blends.")
@click.option("--classical/--no-classical", default=True, show_default=True,
              help="Also run photutils, SEP (and scarlet2 if installed) and copy-the-blend.")
@self_ensemble_option
def evaluate(data_path, checkpoint, out, n, classical, self_ensemble):
    """Score the deblender (and classical peers) on held-out blends: PSNR/SSIM, bins, panels."""
    from galaxai.viz.report import Report
    from galaxai.workflows import deblenders_for, evaluation_section

    stack, catalogue = _store_images(data_path, n)
    report = Report("galaxai evaluation", f"{data_path} · checkpoint {checkpoint or DEFAULT_MODEL}")
    methods = deblenders_for(checkpoint, classical=classical, self_ensemble=self_ensemble)
    table = evaluation_section(report, methods,
                               stack["blend"], stack["target_a"], stack["target_b"], catalogue, out,
                               title="Deblending scores")
    click.echo(table.to_string(float_format=lambda v: f"{v:.4g}"))
    click.echo(str(report.write(out / "report").resolve()))


# --------------------------------------------------------------------------------------- audit
@main.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--max-items", type=click.IntRange(min=1), default=None,
              help="Audit a random sample of this many stamps.")
def audit(dataset, max_items):
    """Find zero-padded "phantom boundaries" in a blend store's targets, without training.

    Exits with status 1 when padding artefacts are found, so pipelines can gate on it.
    """
    from galaxai.diagnose.padding import audit_store

    audits = audit_store(dataset, max_items=max_items, progress=True)
    found = False
    for name, result in audits.items():
        click.echo(f"== {name} ==\n{result.summary}")
        found |= bool(result.verdict)
    click.echo("PROBLEM FOUND: padded regions the discriminator can exploit" if found
               else "no padding artefacts found")
    sys.exit(1 if found else 0)


# ---------------------------------------------------------------------------- export / explain
@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder receiving deblender_<name> and discriminator_<name> (.safetensors + "
                   ".json) [default: the weights folder of the installed galaxai package].")
@click.option("--name", default="small", show_default=True)
@click.option("--self-ensemble", is_flag=True,
              help="Record in the deblender's sidecar that it runs as a self-ensemble over the "
                   "eight rotations and mirror images of each stamp (galaxai.deblend's default "
                   "for this model).")
def export(checkpoint, dest, name, self_ensemble):
    """Ship a checkpoint (run directory = its latest) as a deblender and discriminator NAME."""
    from galaxai import api
    from galaxai.train.checkpoints import export_network

    checkpoint = _checkpoint_of(checkpoint)
    dest = dest if dest is not None else api.DEFAULT_WEIGHTS.parent
    for network, stem in (("G", "deblender"), ("D", "discriminator")):
        inference = {"self_ensemble": True} if self_ensemble and network == "G" else None
        out = export_network(checkpoint, dest / f"{stem}_{name}", network, inference)
        click.echo(f"{network}: {out} ({out.stat().st_size / 1e6:.2f} MB)")
    click.echo(f"exported {checkpoint} to {dest.resolve()}")


def _store_images(path: Path, n: int | None):
    """The first ``n`` (default all) test blends of a store, or of all rows if it has no test split.

    Returns the arrays ``blend``, ``target_a``, ``target_b`` (channel-first, [0, 1]) and their
    catalogue rows. The chunks read are checked against the store's manifest hashes.
    """
    from galaxai.data.store import BlendStore

    store = BlendStore(path, split="test", verify=True)
    store = store if len(store) else BlendStore(path, verify=True)
    arrays = store.to_arrays(n)
    return arrays, store.catalogue.iloc[:len(arrays["blend"])].reset_index(drop=True)


def _checkpoint_of(run: Path) -> Path:
    """A checkpoint path as given, or the latest checkpoint of a run directory."""
    from galaxai.train.checkpoints import latest_checkpoint

    if (run / "checkpoints").is_dir():
        ref = latest_checkpoint(run)
        if ref is None:
            raise click.ClickException(f"{run} has no finished checkpoint yet")
        return ref.path
    return run


@main.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Blend store whose test blends are explained.")
@click.option("--method", "methods", multiple=True,
              type=click.Choice(COMPARED_METHODS),
              default=("polarized_lrp",), show_default=True, help="Repeat to run several.")
@click.option("--n", "n", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--report/--no-report", default=True, show_default=True,
              help="Also write the figure + AOPC report for the first 4 real and generated images.")
def explain(run, images, methods, n, batch_size, report):
    """Explain the discriminator of RUN (run dir or checkpoint) on real and generated images.

    Maps go to RUN/explanations/<checkpoint>/<method>_{real,generated}.fits (one cube per image
    set, with provenance keywords) next to the run.
    """
    import torch
    from tqdm.auto import tqdm

    from galaxai.data.fits_export import write_fits_image
    from galaxai.models.deblender import to_network
    from galaxai.train.checkpoints import load_discriminator, load_generator
    from galaxai.viz.report import Report
    from galaxai.workflows import explain_methods, explanation_section

    ckpt = _checkpoint_of(run)
    D, _ = load_discriminator(ckpt)
    G, _ = load_generator(ckpt)
    data, _ = _store_images(images, n)
    real = to_network(data["target_a"])
    with torch.no_grad():
        generated = G(torch.from_numpy(data["blend"]))[0].numpy()
    base = run if (run / "checkpoints").is_dir() else ckpt.parent
    out = base / "explanations" / ckpt.name
    for kind, x in (("real", real), ("generated", generated)):
        maps = {m: [] for m in methods}
        for lo in tqdm(range(0, len(x), batch_size), desc=f"explain {kind}"):
            for m, attribution in explain_methods(D, torch.from_numpy(x[lo:lo + batch_size]), methods).items():
                signed = attribution.signed()
                maps[m].append((signed.sum(1) if signed.ndim == 4 else signed).numpy())
        for m, parts in maps.items():
            path = write_fits_image(out / f"{m}_{kind}.fits", np.concatenate(parts),
                                    {"GXCKPT": ckpt.name, "GXMETHOD": m[:68], "GXIMAGES": kind})
            click.echo(f"wrote {path}")
    if report:
        page = Report("galaxai explanations", f"{ckpt}")
        explanation_section(page, D, real[:4], generated[:4], out, title="Discriminator explanations")
        click.echo(str(page.write(out / "report").resolve()))


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Blend store; its first test targets are explained.")
@click.option("--n", "n", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Default: RUN/timeline.")
def timeline(run, images, n, out):
    """Explain the same images at every checkpoint of RUN: montage PNG, GIF and curves."""
    from galaxai.models.deblender import to_network
    from galaxai.viz.report import Report
    from galaxai.workflows import timeline_section

    out = out or run / "timeline"
    data, _ = _store_images(images, n)
    page = Report("galaxai training timeline", str(run))
    timeline_section(page, run, to_network(data["target_a"]), out, title="Polarized-LRP over training")
    click.echo(str(page.write(out / "report").resolve()))


@main.command("explain-eval")
@click.argument("runs", nargs=-1, required=True)
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Held-out blend store: its test targets (real) and the "
                                  "checkpoints' outputs of its blends (generated) are explained.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for summary/paired tables (CSV + Parquet), records and the report.")
@click.option("--n", "n", type=click.IntRange(min=1), default=256, show_default=True,
              help="Blends used: n real targets + n generated outputs per checkpoint.")
@click.option("--method", "methods", multiple=True, type=click.Choice(COMPARED_METHODS),
              help="Repeat to choose (default: all compared methods).")
@click.option("--max-checkpoints", type=click.IntRange(min=1), default=3, show_default=True,
              help="Checkpoints taken from each run directory, evenly spaced, the last included.")
@click.option("--preset", type=click.Choice(("small", "tiny")), default="small", show_default=True,
              help="Sizes of the sub-measures (tiny: tests).")
@click.option("--n-localise", type=click.IntRange(min=0), default=None,
              help="Real targets planted with artefacts (default: the preset's, 128).")
@click.option("--n-randomise", type=click.IntRange(min=0), default=None,
              help="Images of the randomisation checks (default: the preset's, 8).")
@click.option("--n-sensitivity", type=click.IntRange(min=0), default=None,
              help="Images of the sky-noise sensitivity (default: the preset's, 32).")
@click.option("--fill", type=click.Choice(("sky", "zero")), default="sky", show_default=True,
              help="What replaces a removed region in region perturbation: sky-like noise, or 0 "
                   "in the network's range (mid-grey).")
@click.option("--seed", type=int, default=0, show_default=True)
def explain_eval(runs, images, out, n, methods, max_checkpoints, preset, n_localise, n_randomise,
                 n_sensitivity, fill, seed):
    """Explanation quality of the discriminator at checkpoints of RUNS, with 95 % intervals.

    RUNS: run directories (up to --max-checkpoints each), checkpoint directories, or shipped
    model names (small, realsky). Faithfulness (MoRF/LeRF vs random), localisation of planted
    artefacts, randomisation sanity checks, sparseness and sky-noise sensitivity of every method,
    split by D's verdict; Polarized-LRP is compared with LRP-z+ and LRP-ε on the same images.
    """
    from galaxai.explain_eval import ExplainEvalConfig, run_explain_eval

    overrides = {k: v for k, v in {"n_localise": n_localise, "n_randomise": n_randomise,
                                   "n_sensitivity": n_sensitivity}.items() if v is not None}
    if methods:
        overrides["methods"] = tuple(dict.fromkeys(methods))
    cfg = ExplainEvalConfig.preset(preset, seed=seed, fill=fill, **overrides)
    data, _ = _store_images(images, n)
    html, _ = run_explain_eval(runs, data["blend"], data["target_a"], out, cfg,
                               max_checkpoints=max_checkpoints, progress=True)
    click.echo(f"wrote {out / 'summary.csv'}, {out / 'paired.csv'} and {html.resolve()}")


# ---------------------------------------------------------------------------------- experiment
@main.group()
def experiment() -> None:
    """Controlled experiments that train models."""


@experiment.command("phantom-boundary")
@click.option("--pool", "pool_path", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Galaxy pool both runs draw their blends from.")
@click.option("--eval-data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Held-out blend store.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--preset", type=click.Choice(PRESETS), default="small", show_default=True)
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Adversarial iterations of each run (default: the preset's).")
@click.option("--seed", type=int, default=0, show_default=True)
def experiment_phantom(pool_path, eval_data, out, preset, iterations, seed):
    """Train zero- and noise-padded twins; measure relevance in the band and the shortcut."""
    from galaxai.experiments import phantom_boundary_experiment

    _warn_if_stale_pool(pool_path)
    result = phantom_boundary_experiment(pool_path, eval_data, out, preset=preset,
                                         iterations=iterations, seed=seed, progress=True)
    for padding, run in result["runs"].items():
        click.echo(f"{padding}: PSNR {run['psnr_pooled']:.2f} dB, band relevance ratio "
                   f"{run['band_ratio']:.2f} ± {run['band_ratio_se']:.2f}")
    click.echo(result["report"])


# ---------------------------------------------------------------------------------- morphology
@main.group()
def morphology() -> None:
    """Galaxy morphology saliency: SmoothGrad bar lengths (Bhambra et al. 2022)."""


@morphology.command("validate")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--preset", type=click.Choice(PRESETS), default="small", show_default=True)
@click.option("--n-train", type=click.IntRange(min=1), default=None,
              help="Classifier training galaxies [default: the preset's].")
@click.option("--n-val", type=click.IntRange(min=1), default=None,
              help="Classifier validation galaxies [default: the preset's].")
@click.option("--n-eval", type=click.IntRange(min=6), default=None,
              help="Barred galaxies measured, a third for the grid search [default: the "
                   "preset's].")
@click.option("--n-control", type=click.IntRange(min=1), default=None,
              help="Labelled bars the control regressor trains on [default: the preset's].")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Maximum epochs of the classifiers and the control [default: the preset's].")
def morphology_validate(out, preset, n_train, n_val, n_eval, n_control, epochs):
    """Closed loop on simulated bars of known length: train CNNs on GZ-style votes, SmoothGrad,
    Algorithm 1 (paper and elongation), grid search, and ρ with nulls and bootstrap intervals,
    also per stratum of bar angle, inclination, q_b, a/FWHM, B/T and bar S/N."""
    from galaxai.morphology.closedloop import ClosedLoopConfig, run_closed_loop

    sizes = {k: v for k, v in (("n_train", n_train), ("n_val", n_val), ("n_eval", n_eval),
                               ("n_control", n_control)) if v is not None}
    try:
        config = ClosedLoopConfig.preset(preset, epochs=epochs, **sizes)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    table = run_closed_loop(out, config, progress=True)
    click.echo(table.to_string(float_format=lambda v: f"{v:.3g}"))
    click.echo(f"strata: {(out / 'stratified.csv').resolve()}")
    click.echo(f"report: {(out / 'report' / 'index.html').resolve()}")


@contextlib.contextmanager
def _input_errors():
    """Turn the workflow's input errors into click errors naming the option at fault."""
    from galaxai.morphology import InputError

    try:
        yield
    except InputError as exc:
        if exc.param:
            raise click.BadParameter(str(exc), param_hint=f"'--{exc.param.replace('_', '-')}'"
                                     ) from None
        raise click.ClickException(str(exc)) from None


def _skipped_summary(skipped: list, what: str) -> None:
    if skipped:
        click.echo(f"skipped {len(skipped)} {what}:", err=True)
        for item in skipped[:10]:
            click.echo(f"  {item['id']}: {item['reason']}", err=True)
        if len(skipped) > 10:
            click.echo(f"  ... and {len(skipped) - 10} more", err=True)


_DIR = click.Path(file_okay=False, path_type=Path)


@morphology.command("train")
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Kaggle galaxy-zoo-the-galaxy-challenge folder (images_training_rev1/ + "
                   "training_solutions_rev1.csv).")
@click.option("--model", "architecture", type=click.Choice(ARCHITECTURES),
              default="vgg16", show_default=True)
@click.option("--preset", type=click.Choice(PRESETS), default="small", show_default=True,
              help="Network size and recipe: paper (224², published), small (128², CPU), tiny.")
@click.option("--out", type=_DIR, required=True, help="Run directory to create.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Local initial weights (.safetensors, torch state dict or Keras .h5); "
                   "never downloaded.")
@click.option("--backbone-only", is_flag=True,
              help="Load only the convolutional backbone from --weights (e.g. ImageNet VGG16).")
@click.option("--layout", type=click.Choice(LAYOUTS), default="keras",
              show_default=True,
              help="keras: the Keras networks (the paper); timm: ResNet50V2/Xception as timm's "
                   "resnetv2_50/legacy_xception, where their ImageNet weights load exactly "
                   "(no effect on vgg16).")
@click.option("--limit", type=click.IntRange(min=2), default=None,
              help="Use only the first N labelled images (all are held in memory).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Maximum epochs (default: the preset's; early stopping may end sooner).")
@click.option("--shift", type=click.FloatRange(0, 0.5, max_open=True), default=None,
              help="Augmentation shift, fraction of the image side [default: the preset's, "
                   "0.1 as in the authors' code; 0.005 is attributed to the paper].")
@click.option("--augment-validation/--no-augment-validation", default=None,
              help="Augment the validation split too [default: the preset's, on as in the "
                   "authors' code].")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default=None,
              help="swish everywhere (the authors' code) or the published ReLU [default: the "
                   "preset's, swish].")
@click.option("--seed", type=int, default=0, show_default=True)
def morphology_train(data_path, architecture, preset, out, weights, backbone_only, layout, limit,
                     epochs, shift, augment_validation, activation, seed):
    """Train a Galaxy Zoo vote-fraction classifier (37 sigmoid outputs, MSE/RMSE)."""
    from galaxai.morphology.classifier_runs import train_classifier

    with _input_errors():
        run = train_classifier(data_path, out, architecture=architecture, preset=preset,
                               weights=weights, backbone_only=backbone_only, layout=layout,
                               limit=limit, epochs=epochs, shift=shift,
                               augment_validation=augment_validation, activation=activation,
                               seed=seed, progress=True)
    _skipped_summary(run.skipped, "unreadable images")
    info = run.info
    click.echo(f"{architecture} ({preset}): {info['epochs']} epochs on {info['n_train']} images, "
               f"validation RMSE {info['val_rmse']:.4f} (predicting the mean: "
               f"{info['val_rmse_constant']:.4f})")
    click.echo(str(run.run_dir.resolve()))


@morphology.command("saliency")
@click.option("--model", "model_path", type=click.Path(path_type=Path), required=True,
              help="Run directory of `galaxai morphology train`.")
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Kaggle folder or a folder of <id>.jpg images (e.g. GZ2 cut-outs by objid).")
@click.option("--ids", default=None,
              help="Comma-separated ids or a file of ids (default: the catalogue's galaxies "
                   "found in --data).")
@click.option("--catalogue", type=click.Path(path_type=Path), default=None,
              help="Catalogue choosing the default ids (default: the Hoyle et al. 2011 table, "
                   "$GALAXAI_HOYLE_CATALOGUE or the copy shipped with galaxai).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Maps file: <name>.npz or <name>.zarr.")
@click.option("--n-samples", type=click.IntRange(min=1), default=256, show_default=True,
              help="SmoothGrad N (the authors' 256).")
@click.option("--noise", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="SmoothGrad S, relative to each image's range (the authors' 0.1).")
@click.option("--x-input", "use_x_input", is_flag=True,
              help="Measure bars on saliency × grayscale image (recorded for `bars`).")
@click.option("--target", default="Class3.1", show_default=True,
              help="Galaxy Zoo column whose pre-sigmoid logit is explained.")
@click.option("--chunk", type=click.IntRange(min=1), default=64, show_default=True,
              help="Noisy copies per forward/backward pass (bounds memory; same maps).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Galaxies per written batch.")
@click.option("--seed", type=int, default=0, show_default=True)
def morphology_saliency(model_path, data_path, ids, catalogue, out, n_samples, noise, use_x_input,
                        target, chunk, batch_size, seed):
    """SmoothGrad maps of the bar logit for many galaxies, saved with their ids (resumable)."""
    from galaxai.morphology.saliency_maps import compute_saliency

    with _input_errors():
        run = compute_saliency(model_path, data_path, out, ids=ids, catalogue=catalogue,
                               n_samples=n_samples, noise=noise, use_x_input=use_x_input,
                               target=target, chunk=chunk, batch_size=batch_size, seed=seed,
                               progress=True)
    _skipped_summary(run.skipped, "galaxies")
    resumed = f" ({run.resumed} from an interrupted run)" if run.resumed else ""
    click.echo(f"{len(run.ids)} maps{resumed}, {len(run.skipped)} skipped")
    click.echo(str(run.path.resolve()))


@morphology.command("bars")
@click.option("--maps", "maps", type=click.Path(path_type=Path), required=True, multiple=True,
              help="Maps file of `galaxai morphology saliency`; repeat for several models "
                   "(averaged as averagemeasurements) and, with --grid-search, several S.")
@click.option("--out", type=_DIR, required=True,
              help="Folder for bar_lengths.csv, rho.csv, figures and report/index.html.")
@click.option("--catalogue", type=click.Path(path_type=Path), default=None,
              help="Bar-length catalogue with length_scaled (e.g. hoyle_barlengths.csv).")
@click.option("--r90", type=click.Path(path_type=Path), default=None,
              help="Table of id + petroR90_r, for the faithful ρ and its nulls.")
@click.option("--t-c", type=click.FloatRange(0, 1), default=None,
              help="Correlation threshold [default: 0.85].")
@click.option("--t-l", type=click.IntRange(min=0), default=None,
              help="Pixel-count threshold in map pixels [default: 40 scaled to the map area].")
@click.option("--grid-search", "use_grid_search", is_flag=True,
              help="Choose method, S, x_input, T_c, T_l by validation ρ on the catalogue "
                   "(authors' split); report test ρ of the best and of each method's best.")
@click.option("--source", "sources", multiple=True,
              help="Method: a model of the maps files (vgg16, resnet50v2, xception), "
                   "averageheatmaps or averagemeasurements; repeat to search several with "
                   "--grid-search [default: every available; one model, or averagemeasurements "
                   "of several, with fixed thresholds].")
@click.option("--method", type=click.Choice(BAR_ALGORITHMS), default="fast",
              show_default=True, help="fast = paper's Algorithm 1, faster; elongation = "
                                      "rotation invariant.")
@click.option("--format", "table_format", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def morphology_bars(maps, out, catalogue, r90, t_c, t_l, use_grid_search, sources, method,
                    table_format, seed):
    """Bar lengths from saliency maps; with a catalogue, ρ with its nulls and an HTML report."""
    from galaxai.morphology.bars import measure_bars

    with _input_errors():
        result = measure_bars(list(maps), out, catalogue=catalogue, r90=r90, t_c=t_c, t_l=t_l,
                              use_grid_search=use_grid_search, sources=list(sources) or None,
                              method=method, table_format=table_format, seed=seed,
                              progress=True)
    st = result.settings
    click.echo(f"{st['n_measured']} bar lengths ({st['source']}, S {st['s_noise']}, T_c "
               f"{st['t_c']}, T_l {st['t_l']}, x_input {st['x_input']}, {st['thresholds']}): "
               f"{result.table_path}")
    if result.per_method is not None:
        cols = ["method", "s_noise", "x_input", "t_c", "t_l", "rho_validation", "rho_test",
                "rho_test_low", "rho_test_high"]
        click.echo("best setting per method (validation ρ; test ρ with 95 % interval):")
        click.echo(result.per_method[cols].to_string(index=False,
                                                     float_format=lambda v: f"{v:.3f}"))
    if result.rho is not None:
        click.echo(result.rho.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo(str(result.report_path.resolve()))


# ---------------------------------------------------------------------------------------- app
@main.command()
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--images", "stores", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Blend store to browse (repeatable); default: 8 blends simulated at start-up.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; the default serves this computer only.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache folder of relevance maps and unit tables (default ~/.cache/galaxai/app).")
def app(runs, stores, host, port, cache):
    """Browse RUN folders in the browser: checkpoints × images × explanation methods, and units."""
    try:
        from galaxai.app import create_app, serve
        server = create_app(runs, stores, cache)
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"{exc.name} is missing; install the app extra: "
                                   "pip install 'galaxai[app]'") from None
    click.echo(f"galaxai app: http://{host}:{port}/  (Ctrl+C stops it)")
    serve(server, host=host, port=port)


# Subcommands that live in their own modules (each imports its heavy parts inside the command).
from galaxai.dissect.command import dissect as _dissect  # noqa: E402

main.add_command(_dissect)

from galaxai.guided.command import guided as _experiment_guided  # noqa: E402

experiment.add_command(_experiment_guided)

from galaxai.cli_cyclegan import cyclegan  # noqa: E402

main.add_command(cyclegan)


# --------------------------------------------------------------------------------------- demo
@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_output"),
              show_default=True)
@click.option("--quick", is_flag=True, help="Fewer galaxies and iterations (used by the tests).")
def demo(out, quick):
    """Run the end-to-end demo and write its HTML report; the last line is the report's path."""
    from galaxai.demo import run_demo

    report = run_demo(out, quick=quick, progress=True)
    click.echo(str(report.resolve()))


if __name__ == "__main__":  # pragma: no cover - `python -m galaxai.cli`
    sys.exit(main())
