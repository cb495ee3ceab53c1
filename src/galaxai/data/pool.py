"""A pool of simulated galaxies and an endless stream of blends drawn from it.

The paper draws two of 61,578 Kaggle galaxies for every blend, so a galaxy appears in many blends
under different augmentations. Simulating two fresh galaxies per blend (as
:func:`galaxai.data.store.build_store` does) costs ~0.3 s of GalSim time per blend, too much for a
training set on a CPU. A *pool* simulates each galaxy once; :class:`BlendStream` then makes blend
``i`` on the fly from a pair and an augmentation that depend only on ``(seed, i)``, so the stream is
unbounded, reproducible and indexable (the trainer's resumable sampler works on it unchanged).

Layout of a pool directory::

    path/galaxies.zarr/      display (N, F, F, 3) float32 in [0, 1]; noiseless (N, 3, F, F)
                             float32; sky_sigma (N, 3) float32
    path/catalogue.parquet   one row per galaxy (every simulated parameter, ``mode``)
    path/manifest.json       settings, chunks done, complete flag

Building is chunked, atomic per chunk and resumable exactly like the blend store (it reuses the
store's chunk writer). A pool mixes parametric galaxies with re-observed real HST (COSMOS) galaxies
by chunk: chunk ``c`` is a COSMOS chunk when ``floor((c+1)·f) > floor(c·f)`` for
``f = cosmos_fraction``, so the mix is fixed by the settings, not by interruption.
"""
from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import zarr

from galaxai._atomic import atomic_write, atomic_write_json
from galaxai.config import config_from_mapping, config_to_dict
from galaxai.data.blend import BlendConfig, make_blends
from galaxai.data._zarr_chunks import create_arrays, write_chunk
from galaxai.data.store import StoreError, check_same_settings, read_manifest

__all__ = ["build_galaxy_pool", "GalaxyPool", "BlendStream", "chunk_mode", "reproduction_error"]

_FORMAT = "galaxai-galaxy-pool"
_ZARR = "galaxies.zarr"
_CATALOGUE = "catalogue.parquet"
_MANIFEST = "manifest.json"


def chunk_mode(c: int, cosmos_fraction: float) -> str:
    """Simulator mode of pool chunk ``c`` for a COSMOS share ``cosmos_fraction``."""
    f = float(cosmos_fraction)
    return "cosmos" if math.floor((c + 1) * f) > math.floor(c * f) else "parametric"


def _simulate_chunk(args: tuple) -> tuple[int, dict[str, np.ndarray], pd.DataFrame]:
    c, lo, hi, seed, sim_config, mode, cosmos_dir = args
    from galaxai.data.simulate import simulate

    # Torch is not used here, but keep each worker to one thread so two workers share 2 cores.
    torch.set_num_threads(1)
    kwargs = {"cosmos_dir": cosmos_dir} if cosmos_dir is not None else {}
    sample = simulate(hi - lo, seed=seed, config=sim_config, mode=mode, start=lo, **kwargs)
    arrays = {"display": sample.display, "noiseless": sample.noiseless,
              "sky_sigma": sample.sky_sigma}
    cat = sample.catalogue.copy()
    cat.insert(0, "pool_index", np.arange(lo, hi, dtype=np.int64))
    cat["chunk"] = c
    return c, arrays, cat


def build_galaxy_pool(path: str | os.PathLike, n: int, seed: int, sim_config=None, *,
                      cosmos_fraction: float = 0.0, chunk: int = 64, workers: int = 1,
                      cosmos_dir: str | os.PathLike | None = None, progress: bool = False) -> Path:
    """Simulate ``n`` galaxies into a pool directory; resume an interrupted build.

    Parameters
    ----------
    path : path-like
        Pool directory (created).
    n, seed : int
        Number of galaxies and master seed. Parametric galaxy ``i`` is ``simulate(..., seed,
        start=i)``, COSMOS galaxy ``i`` likewise in ``"cosmos"`` mode.
    sim_config : galaxai.data.simulate.SimConfig, optional
        Default ``SimConfig.preset("small")``.
    cosmos_fraction : float
        Share of chunks drawn from real HST galaxies (0 = purely parametric).
    chunk : int
        Galaxies per chunk (unit of work, atomicity and Zarr chunking).
    workers : int
        Processes simulating chunks in parallel (GalSim is single-threaded).
    cosmos_dir : path-like, optional
        Folder of the COSMOS sample (see :func:`galaxai.data.simulate.find_cosmos_dir`).
    progress : bool
        Show a tqdm bar over chunks.
    """
    from galaxai.data.simulate import SimConfig

    path = Path(path)
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2 (a blend needs two galaxies), got {n}")
    if not 0.0 <= cosmos_fraction <= 1.0:
        raise ValueError(f"cosmos_fraction must lie in [0, 1], got {cosmos_fraction}")
    sim_config = sim_config if sim_config is not None else SimConfig.preset("small")
    settings = json.loads(json.dumps({
        "n": int(n), "seed": int(seed), "chunk": int(chunk), "cosmos_fraction": float(cosmos_fraction),
        "sim_config": config_to_dict(sim_config),
    }))
    manifest = _read_manifest(path)
    if manifest is None:
        if path.exists() and any(not p.name.startswith(".") for p in path.iterdir()):
            raise StoreError(f"{path} exists and is not a galaxai galaxy pool; choose a new path")
        manifest = {"format": _FORMAT, **settings, "n_chunks": -(-n // chunk), "chunks_done": [],
                    "complete": False}
        atomic_write_json(path / _MANIFEST, manifest)
    else:
        check_same_settings(path, manifest, settings)
        if manifest["complete"]:
            return path
    done = set(manifest["chunks_done"])
    jobs = [(c, c * chunk, min(n, (c + 1) * chunk), seed, sim_config,
             chunk_mode(c, cosmos_fraction), cosmos_dir)
            for c in range(manifest["n_chunks"]) if c not in done]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=manifest["n_chunks"], initial=len(done), desc="galaxy pool", unit="chunk")
    catalogues = [pd.read_parquet(path / _CATALOGUE)] if done else []
    executor = ProcessPoolExecutor(workers) if workers > 1 else None
    results = executor.map(_simulate_chunk, jobs) if executor else map(_simulate_chunk, jobs)
    try:
        for c, arrays, cat in results:
            if not (path / _ZARR).exists():
                create_arrays(path / _ZARR, n, chunk, arrays)
            write_chunk(path / _ZARR, c, c * chunk, arrays)
            catalogues.append(cat)
            table = pd.concat(catalogues, ignore_index=True).sort_values("pool_index")
            atomic_write(path / _CATALOGUE, lambda tmp: table.to_parquet(tmp, index=False))
            done.add(c)
            manifest["chunks_done"] = sorted(done)
            manifest["complete"] = len(done) == manifest["n_chunks"]
            atomic_write_json(path / _MANIFEST, manifest)
            if bar is not None:
                bar.update(1)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    return path


def _read_manifest(path: Path) -> dict[str, Any] | None:
    return read_manifest(path, _FORMAT, f"build one with `galaxai data pool --out {path}`")


def _finished_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a completely built pool, or a StoreError saying how to finish it."""
    manifest = _read_manifest(path)
    if manifest is None or not manifest["complete"]:
        raise StoreError(
            f"{path} is not a finished galaxy pool; build it with "
            f"`galaxai data pool --out {path}` (re-running resumes an interrupted build)")
    return manifest


def reproduction_error(path: str | os.PathLike) -> float | None:
    """Largest display difference between a pool's first parametric galaxy and a fresh simulation.

    Galaxy ``i`` depends only on ``(seed, i)``, so a pool simulated by this version of
    :mod:`galaxai.data.simulate` reproduces exactly (0.0). Anything else means the pool was made
    by other simulator code (e.g. an older galaxai) and its images differ from what the same
    command makes today. ``None`` when the pool has no parametric chunk to re-simulate.
    """
    from galaxai.data.simulate import SimConfig, simulate

    path = Path(path)
    m = _finished_manifest(path)
    c = next((c for c in range(m["n_chunks"])
              if chunk_mode(c, m["cosmos_fraction"]) == "parametric"), None)
    if c is None:
        return None
    i = c * m["chunk"]
    stored = np.asarray(zarr.open_group(store=str(path / _ZARR), mode="r")["display"][i])
    cfg = config_from_mapping(SimConfig, m["sim_config"], source=f"{path / _MANIFEST}")
    fresh = simulate(1, seed=m["seed"], config=cfg, start=i)
    return float(np.abs(fresh.display[0] - stored).max())


class GalaxyPool:
    """A finished galaxy pool, loaded into memory (display frames, noiseless flux, sky sigma)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        manifest = _finished_manifest(self.path)
        root = zarr.open_group(store=str(self.path / _ZARR), mode="r")
        self.display = np.asarray(root["display"][:])
        self.noiseless = np.asarray(root["noiseless"][:])
        self.sky_sigma = np.asarray(root["sky_sigma"][:])
        self.catalogue = pd.read_parquet(self.path / _CATALOGUE)
        self.manifest = manifest

    def __len__(self) -> int:
        return len(self.display)


class BlendStream(torch.utils.data.Dataset):
    """Blends made on the fly from a :class:`GalaxyPool`; item ``i`` depends only on ``(seed, i)``.

    Parameters
    ----------
    pool : GalaxyPool
    length : int
        Number of distinct blends the dataset exposes (the trainer samples indices from it).
    seed : int
    blend_config : BlendConfig, optional
        Default ``BlendConfig.preset("small")`` (noise padding, max merge).

    Items are dicts like :class:`galaxai.data.store.BlendStore`'s: ``blend``, ``target_a``,
    ``target_b`` (3, S, S) float32 in [0, 1], ``fill_mask_b`` (1, S, S) bool, ``index``.
    """

    def __init__(self, pool: GalaxyPool, length: int, seed: int,
                 blend_config: BlendConfig | None = None) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.pool, self.length, self.seed = pool, int(length), int(seed)
        self.config = blend_config if blend_config is not None else BlendConfig.preset("small")

    def __len__(self) -> int:
        return self.length

    def pair(self, index: int) -> tuple[int, int]:
        """Pool indices ``(a, b)`` of blend ``index`` (two different galaxies)."""
        rng = np.random.default_rng([self.seed, 0, index])
        a, b = rng.choice(len(self.pool), size=2, replace=False)
        return int(a), int(b)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a stream of {self.length} blends")
        a, b = self.pair(index)
        p = self.pool
        batch = make_blends(p.display[a:a + 1], p.display[b:b + 1],
                            np.random.SeedSequence([self.seed, 1, index]), self.config,
                            ids_a=[a], ids_b=[b], flux_a=p.noiseless[a:a + 1],
                            flux_b=p.noiseless[b:b + 1], sky_sigma=p.sky_sigma[a:a + 1])
        return {"blend": torch.from_numpy(batch.blend[0]),
                "target_a": torch.from_numpy(batch.target_a[0]),
                "target_b": torch.from_numpy(batch.target_b[0]),
                "fill_mask_b": torch.from_numpy(batch.fill_mask_b[0]),
                "index": int(index)}
