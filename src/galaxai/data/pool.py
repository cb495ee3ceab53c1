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

import functools
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
from galaxai.data.augment import DisplayAugment, augment_pair, draw_look
from galaxai.data.blend import BlendConfig, make_blends
from galaxai.data._zarr_chunks import create_arrays, write_chunk
from galaxai.data.store import StoreError, check_same_settings, read_manifest

__all__ = ["build_galaxy_pool", "build_real_pool", "GalaxyPool", "BlendStream", "MixedStream",
           "chunk_mode", "reproduction_error"]

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
    if m.get("source", "simulated") != "simulated":
        return None
    c = next((c for c in range(m["n_chunks"])
              if chunk_mode(c, m["cosmos_fraction"]) == "parametric"), None)
    if c is None:
        return None
    i = c * m["chunk"]
    stored = np.asarray(zarr.open_group(store=str(path / _ZARR), mode="r")["display"][i])
    cfg = config_from_mapping(SimConfig, m["sim_config"], source=f"{path / _MANIFEST}")
    fresh = simulate(1, seed=m["seed"], config=cfg, start=i)
    return float(np.abs(fresh.display[0] - stored).max())


def build_real_pool(path: str | os.PathLike, frames, *, source: str, chunk: int = 64,
                    settings: dict | None = None) -> Path:
    """Write real-galaxy frames (:class:`galaxai.data.real.RealFrames`) as a galaxy pool.

    The pool holds ``display``, ``sky_mean`` and ``sky_std`` (no noiseless model: real data
    have none) and the frames' catalogue; ``manifest.json`` records ``source`` and ``settings``
    (how the frames were made). Written atomically; an existing pool is refused.
    """
    path = Path(path)
    if path.exists() and any(not p.name.startswith(".") for p in path.iterdir()):
        raise StoreError(f"{path} exists and is not empty; choose a new pool folder")
    n = len(frames.display)
    if n < 2:
        raise ValueError(f"a pool needs at least 2 galaxies, got {n}")
    arrays = {"display": frames.display, "sky_mean": frames.sky_mean, "sky_std": frames.sky_std}
    n_chunks = -(-n // chunk)
    manifest = {"format": _FORMAT, "source": source, "n": n, "chunk": int(chunk),
                "cosmos_fraction": 0.0, "settings": dict(settings or {}), "n_chunks": n_chunks,
                "chunks_done": [], "complete": False}
    atomic_write_json(path / _MANIFEST, manifest)
    create_arrays(path / _ZARR, n, chunk, arrays)
    for c in range(n_chunks):
        write_chunk(path / _ZARR, c, c * chunk, {k: v[c * chunk:(c + 1) * chunk]
                                                 for k, v in arrays.items()})
    table = frames.catalogue.copy()
    table.insert(0, "pool_index", np.arange(n, dtype=np.int64))
    atomic_write(path / _CATALOGUE, lambda tmp: table.to_parquet(tmp, index=False))
    manifest.update(chunks_done=list(range(n_chunks)), complete=True)
    atomic_write_json(path / _MANIFEST, manifest)
    return path


class GalaxyPool:
    """A finished galaxy pool, loaded into memory.

    Attributes
    ----------
    display : ndarray, (N, F, F, 3)
    noiseless, sky_sigma : ndarray or None
        Flux models and noise of simulated pools (``None`` for real-galaxy pools).
    sky : ndarray, (N, 2, 3)
        Sigma-clipped sky mean and standard deviation of each display frame: stored by
        :func:`build_real_pool`; for simulated pools computed on first use (about 35 s for 2,560
        galaxies on one core, needed only by the survey looks).
    source : str
        ``"simulated"`` or the real source the pool was built from.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        manifest = _finished_manifest(self.path)
        root = zarr.open_group(store=str(self.path / _ZARR), mode="r")
        self.display = np.asarray(root["display"][:])
        self.noiseless = np.asarray(root["noiseless"][:]) if "noiseless" in root else None
        self.sky_sigma = np.asarray(root["sky_sigma"][:]) if "sky_sigma" in root else None
        self._stored_sky = ((np.asarray(root["sky_mean"][:]), np.asarray(root["sky_std"][:]))
                            if "sky_mean" in root else None)
        self.catalogue = pd.read_parquet(self.path / _CATALOGUE)
        self.manifest = manifest
        self.source = manifest.get("source", "simulated")

    def __len__(self) -> int:
        return len(self.display)

    @functools.cached_property
    def sky(self) -> np.ndarray:  # noqa: D102 (documented in the class)
        from galaxai.data.real import frame_sky

        mean, std = self._stored_sky if self._stored_sky is not None else frame_sky(self.display)
        return np.stack([mean, std], axis=1).astype(np.float32)


class BlendStream(torch.utils.data.Dataset):
    """Blends made on the fly from a :class:`GalaxyPool`; item ``i`` depends only on ``(seed, i)``.

    Parameters
    ----------
    pool : GalaxyPool
    length : int
        Number of distinct blends the dataset exposes (the trainer samples indices from it).
    seed : int
    blend_config : BlendConfig, optional
        Default ``BlendConfig.preset("small", noise_method="border")`` (noise padding drawn from
        B's own warped border pixels, max merge).
    augment : DisplayAugment, optional
        Random survey look per blend (:mod:`galaxai.data.augment`); ``None`` keeps the stored
        display and the config's merge.

    Items are dicts like :class:`galaxai.data.store.BlendStore`'s: ``blend``, ``target_a``,
    ``target_b`` (3, S, S) float32 in [0, 1], ``fill_mask_b`` (1, S, S) bool, ``index``.
    """

    def __init__(self, pool: GalaxyPool, length: int, seed: int,
                 blend_config: BlendConfig | None = None,
                 augment: DisplayAugment | None = None) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.pool, self.length, self.seed = pool, int(length), int(seed)
        self.config = blend_config if blend_config is not None else BlendConfig.preset(
            "small", noise_method="border")
        if self.config.merge == "sum" and pool.noiseless is None:
            raise ValueError(f'{pool.path} holds real galaxies without flux models; use merge="max" '
                             "with augment=DisplayAugment(p_sum=...) for sum-merged blends")
        self.augment = augment

    def __len__(self) -> int:
        return self.length

    def pair(self, index: int) -> tuple[int, int]:
        """Pool indices ``(a, b)`` of blend ``index`` (two different galaxies)."""
        rng = np.random.default_rng([self.seed, 0, index])
        a, b = rng.choice(len(self.pool), size=2, replace=False)
        return int(a), int(b)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """Items ``indices`` made in one vectorised call (the DataLoader's batch path); equal to
        making them one by one."""
        for index in indices:
            if not 0 <= index < self.length:
                raise IndexError(f"index {index} out of range for a stream of {self.length} blends")
        pairs = np.array([self.pair(i) for i in indices]).reshape(-1, 2)
        a, b = pairs[:, 0], pairs[:, 1]
        p = self.pool
        # Flux models are warped only where the blend needs them (sum merge); a max-merged
        # blend's flux_ratio then comes from the display images.
        flux = {} if p.noiseless is None or self.config.merge != "sum" else {
            "flux_a": p.noiseless[a], "flux_b": p.noiseless[b], "sky_sigma": p.sky_sigma[a]}
        batch = make_blends(p.display[a], p.display[b],
                            [np.random.SeedSequence([self.seed, 1, i]) for i in indices],
                            self.config, ids_a=a, ids_b=b, **flux)
        items = []
        for k, index in enumerate(indices):
            blend, ta, tb = batch.blend[k], batch.target_a[k], batch.target_b[k]
            if self.augment is not None:
                look = draw_look(np.random.default_rng([self.seed, 2, index]), self.augment)
                blend, ta, tb = augment_pair(ta, tb, p.sky[a[k], 0], p.sky[b[k], 0], look)
            items.append({"blend": torch.from_numpy(blend), "target_a": torch.from_numpy(ta),
                          "target_b": torch.from_numpy(tb),
                          "fill_mask_b": torch.from_numpy(batch.fill_mask_b[k]),
                          "index": int(index)})
        return items


class MixedStream(torch.utils.data.Dataset):
    """Item ``i`` comes from stream ``k`` with probability ``weights[k]``, drawn from ``(seed, i)``.

    Every stream must be at least as long as the mixture; item ``i`` of the mixture is item
    ``i`` of the chosen stream, so the mixture stays indexable and reproducible.
    """

    def __init__(self, streams: list[torch.utils.data.Dataset], weights, seed: int) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if len(streams) < 1 or w.shape != (len(streams),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"need one non-negative weight per stream ({len(streams)}), got "
                             f"{list(np.atleast_1d(w))}")
        self.streams, self.weights, self.seed = list(streams), w / w.sum(), int(seed)
        self.length = min(len(s) for s in self.streams)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.length

    def source(self, index: int) -> int:
        """Which stream item ``index`` is drawn from."""
        u = np.random.default_rng([self.seed, 3, index]).uniform()
        return int(min(np.searchsorted(np.cumsum(self.weights), u, side="right"),
                       len(self.streams) - 1))

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.streams[self.source(index)][index]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """Items of each stream fetched together (its batch path), returned in ``indices`` order."""
        sources = [self.source(i) for i in indices]
        out: list[dict[str, Any]] = [{}] * len(indices)
        for k, stream in enumerate(self.streams):
            where = [j for j, s in enumerate(sources) if s == k]
            if not where:
                continue
            wanted = [indices[j] for j in where]
            fetch = getattr(stream, "__getitems__", None)
            items = fetch(wanted) if fetch else [stream[i] for i in wanted]
            for j, item in zip(where, items):
                out[j] = item
        return out
