"""Data-pipeline throughput, measured side by side in one run.

Prints

1. simulated stamps per second (:func:`galaxai.data.simulate.simulate`, ``small`` preset, 142 px
   with component truth);
2. blends per second (:func:`galaxai.data.blend.make_blends` on those stamps, with fluxes and
   components, for each padding mode) and the ratio to simulation;
3. the :class:`galaxai.data.store.BlendStore` loader's share of a training step: seconds to load
   a shuffled batch of 16 through a ``DataLoader`` (in memory, per-item Zarr reads, whole-chunk
   reads) next to one forward + backward pass of the deblender generator
   (:func:`galaxai.models.deblender.build_generator`, ``small`` preset; add ``--paper`` for the
   published 1.7 M-parameter generator, whose CPU step takes about a minute) on the same batch.

4. on-the-fly blends per second on **one core** from a galaxy pool, side by side: the old
   per-item path (sigma-clipped sky statistics of every warped frame for the noise padding, a
   catalogue per blend), :class:`galaxai.data.pool.BlendStream` items (padding drawn from B's
   own warped border pixels, only B's central cut warped), its batched ``__getitems__`` path
   (what the DataLoader calls), and the same with the random survey look (:class:`galaxai.data.augment.DisplayAugment`); each beside the
   500 blends/s per core that keeps a GPU step fed.

Usage: ``python benchmarks/bench_data.py [n_galaxies] [--paper]`` (default 24 galaxies; the run
takes one to two minutes on a 2-core CPU). Timings are medians of a few repeats (loader: a mean over 8 batches).
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galaxai.data.augment import DisplayAugment
from galaxai.data.blend import BlendConfig, draw_pairs, make_blends
from galaxai.data.pool import BlendStream, GalaxyPool, build_galaxy_pool
from galaxai.data.simulate import SimConfig, simulate
from galaxai.data.store import BlendStore, ChunkShuffleSampler, write_store

BATCH = 16
#: On-the-fly blends per second per core that keep a GPU training step fed.
TARGET_PER_CORE = 500.0


def timed(fn, repeats: int = 3) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def blend_args(sample, n_pairs: int, seed: int = 0) -> dict:
    ia, ib = draw_pairs(len(sample.display), n_pairs, seed)
    return dict(frames_a=sample.display[ia], frames_b=sample.display[ib],
                flux_a=sample.noiseless[ia], flux_b=sample.noiseless[ib],
                sky_sigma=sample.sky_sigma[ia],
                components_a={k: v[ia] for k, v in sample.components.items()},
                components_b={k: v[ib] for k, v in sample.components.items()})


def loader_seconds(ds: BlendStore, sampler=None, n_batches: int = 8) -> float:
    """Mean seconds per batch of 16 from a DataLoader over ``ds`` (shuffled); 8 batches are one
    128-example chunk, so whole-chunk reads are amortised as in an epoch."""
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, sampler=sampler,
                                         shuffle=sampler is None, drop_last=True)
    it = iter(loader)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return (time.perf_counter() - t0) / n_batches


def train_step_seconds(preset: str, batch: dict) -> float:
    """Median seconds of one generator forward + backward (pixel MSE) on ``batch``."""
    from galaxai.models.deblender import build_generator

    g = build_generator(preset)
    g.train()
    x, ta, tb = batch["blend"], batch["target_a"] * 2 - 1, batch["target_b"] * 2 - 1

    def step():
        g.zero_grad(set_to_none=True)
        g1, g2 = g(x)
        loss = torch.nn.functional.mse_loss(g1, ta) + torch.nn.functional.mse_loss(g2, tb)
        loss.backward()

    step()  # warm-up
    return timed(step, repeats=1)


def on_the_fly_rates(n_galaxies: int, n_blends: int = 256) -> None:
    """Blends/s on one core: old per-item path vs pool streams (item, batch, augmented)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = BlendConfig.preset("small")  # what BlendStream used before: whole-frame Gaussian fill
    fast = BlendConfig.preset("small", noise_method="border")  # BlendStream's default now
    with tempfile.TemporaryDirectory() as tmp:
        pool = GalaxyPool(build_galaxy_pool(Path(tmp) / "pool", n_galaxies, seed=5,
                                            sim_config=SimConfig.preset("small"),
                                            cosmos_fraction=0.25, chunk=8))
    plain = BlendStream(pool, n_blends, seed=0, blend_config=fast)
    looks = BlendStream(pool, n_blends, seed=0, blend_config=fast, augment=DisplayAugment())

    def old_path():  # BlendStream's item before sky statistics were computed once per galaxy
        for i in range(n_blends // 8):
            a, b = plain.pair(i)
            make_blends(pool.display[a:a + 1], pool.display[b:b + 1],
                        np.random.SeedSequence([0, 1, i]), cfg, flux_a=pool.noiseless[a:a + 1],
                        flux_b=pool.noiseless[b:b + 1], sky_sigma=pool.sky_sigma[a:a + 1])
        return n_blends // 8

    def items(stream):
        return lambda: [stream[i] for i in range(n_blends)] and n_blends

    def batches(stream, size=64):
        return lambda: [stream.__getitems__(list(range(lo, lo + size)))
                        for lo in range(0, n_blends, size)] and n_blends

    rates = {}
    for name, fn in [("old per-item path (clipped sky stats per blend)", old_path),
                     ("BlendStream item (border fill, cut warped)", items(plain)),
                     ("BlendStream batch of 64", batches(plain)),
                     ("BlendStream batch of 64 + survey look", batches(looks))]:
        count = fn()  # warm-up, and the number of blends one call makes
        rates[name] = count / timed(fn, repeats=2)
    torch.set_num_threads(threads)
    base = rates["old per-item path (clipped sky stats per blend)"]
    print(f"\non-the-fly blends from a pool, one core (target {TARGET_PER_CORE:.0f}/s per core):")
    for name, rate in rates.items():
        print(f"  {name:50s} {rate:8.1f} blends/s  = {rate / base:6.1f}x old path, "
              f"{rate / TARGET_PER_CORE:5.2f}x target ({1e3 / rate:6.2f} ms/blend)")


def main(n: int = 24, presets: tuple[str, ...] = ("small",)) -> None:
    torch.manual_seed(0)
    print(f"torch threads: {torch.get_num_threads()}")
    cfg = SimConfig.preset("small")
    simulate(2, seed=99, config=cfg)  # warm-up (GalSim caches)
    t_sim = timed(lambda: simulate(n, seed=0, config=cfg), repeats=1)
    sample = simulate(n, seed=1, config=cfg)
    print(f"simulate (small, {cfg.frame} px, {len(sample.components)} components): "
          f"{n / t_sim:8.1f} stamps/s")

    n_pairs = 32
    args = blend_args(sample, n_pairs)
    rates = {}
    for padding in ("zero", "noise", "reflect"):
        bc = BlendConfig.preset("small", padding=padding)
        try:
            t = timed(lambda: make_blends(seed=0, config=bc, **args), repeats=2)
        except ImportError as exc:  # background.py not available yet
            print(f"make_blends padding={padding:7s}: skipped ({exc})")
            continue
        rates[padding] = n_pairs / t
        print(f"make_blends padding={padding:7s} (display + flux + components): "
              f"{rates[padding]:8.1f} blends/s = {rates[padding] * t_sim / n:6.1f}x simulation "
              f"(a blend needs 2 stamps)")
    display_only = {k: args[k] for k in ("frames_a", "frames_b")}
    t = timed(lambda: make_blends(seed=0, config=BlendConfig.preset("paper"), **display_only), repeats=2)
    print(f"make_blends paper recipe (display only):            {n_pairs / t:8.1f} blends/s")

    # a 512-example store (4 chunks of 128): 128 distinct display-only blends, repeated
    small = make_blends(seed=0, config=BlendConfig.preset("paper"),
                        **{k: blend_args(sample, 128, seed=2)[k] for k in ("frames_a", "frames_b")})
    batch = dataclasses.replace(
        small, **{k: np.concatenate([getattr(small, k)] * 4)
                  for k in ("blend", "target_a", "target_b", "fill_mask_b")},
        catalogue=pd.concat([small.catalogue] * 4, ignore_index=True))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_store(Path(tmp) / "bench", batch, chunk=128)
        stores = {
            "in memory": (BlendStore(path, in_memory=True), None),
            "per-item Zarr reads": (BlendStore(path, in_memory=False), None),
        }
        chunked = BlendStore(path, in_memory=False, cache_chunks=1)
        stores["whole chunks + ChunkShuffleSampler"] = (chunked, ChunkShuffleSampler(chunked, seed=0))
        loads = {name: loader_seconds(ds, sampler) for name, (ds, sampler) in stores.items()}
        sample_batch = next(iter(torch.utils.data.DataLoader(stores["in memory"][0], batch_size=BATCH)))
    on_the_fly_rates(n)
    steps = {preset: train_step_seconds(preset, sample_batch) for preset in presets}
    print(f"\nbatch of {BATCH} (80x80): loader time vs one generator forward+backward")
    for preset, t_step in steps.items():
        print(f"  generator '{preset}': {t_step * 1e3:8.1f} ms per step")
    for name, t_load in loads.items():
        shares = ", ".join(f"{t_load / (t_load + t_step):6.1%} of a '{p}' step"
                           for p, t_step in steps.items())
        print(f"  {name:36s} {t_load * 1e3:8.1f} ms  -> loader share {shares}")


if __name__ == "__main__":
    argv = [a for a in sys.argv[1:] if a != "--paper"]
    main(int(argv[0]) if argv else 24, ("small", "paper") if "--paper" in sys.argv else ("small",))
