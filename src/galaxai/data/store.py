"""The stamp store: blends in Zarr v3, provenance in Parquet, a manifest, and a torch Dataset.

Layout of a store directory::

    path/blends.zarr/         arrays blend, target_a, target_b (N, 3, S, S) float32 in [0, 1],
                              fill_mask_b (N, 1, S, S) bool, comp_<a|b>_<name> (N, 3, S, S) float32
    path/catalogue.parquet    one row per example: index, split, chunk, seed, the blend provenance
                              of :class:`galaxai.data.blend.BlendBatch` and, for simulations, every
                              drawn galaxy parameter prefixed ``a_`` / ``b_``
    path/manifest.json        configs, seed, chunk size, chunks done, per-chunk and total hashes

Arrays are split along N only: one shard file per ``chunk`` examples, holding one Blosc/zstd
compressed inner chunk per example, so a random read decodes one example, not a whole chunk.

Building (:func:`build_store`) is atomic per chunk and resumable. Chunk ``c`` holds examples
``lo … hi − 1``; it simulates galaxies ``2·lo … 2·hi − 1`` of the simulator's stream ``seed``
(each galaxy depends only on ``(seed, index)``) and draws its blends and splits from seeds
derived from ``(seed, c)``, so its content does not depend on which chunks ran before or whether
the build was interrupted. For each chunk: its Zarr chunk files are
written, then ``catalogue.parquet`` is rewritten atomically (rows of finished chunks plus the new
ones), and only then ``manifest.json`` is replaced atomically with the chunk marked done. A build
killed at any point leaves a manifest that describes only fully written chunks; re-running the
same call continues after them and produces exactly the bytes of an uninterrupted build.
Readers refuse a store whose manifest is not marked complete, and one whose finished chunks lost
a Zarr file (Zarr would read it as zeros); with ``verify=True`` they also check every chunk they
read against its hash in the manifest (bytes changed on disk). A damaged chunk of a simulated store
is rebuilt by :func:`forget_chunks` and the original :func:`build_store` call.

Splits: every example carries a ``split`` column (``"train"`` or ``"test"``). Simulated stores
assign ``"test"`` with probability ``test_fraction`` from a stream seeded by ``(seed, chunk)``,
so the rule is deterministic and independent of interruption; since every simulated galaxy is
new, test blends never share a galaxy with training blends. For real sources (the paper: train
blends from Kaggle training images, test blends from Kaggle test images) write one store per
split with :func:`write_store` (``split="train"`` / ``"test"``) or pass per-row labels.
:class:`BlendStore` selects rows with ``split=``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import zarr

import galaxai
from galaxai._atomic import atomic_write, atomic_write_json
from galaxai.config import config_to_dict
from galaxai.data._zarr_chunks import create_arrays, missing_chunk_files, write_chunk
from galaxai.data.blend import BlendBatch, BlendConfig, make_blends
from galaxai.data.errors import DataError

__all__ = [
    "ARRAYS",
    "StoreError",
    "check_same_settings",
    "read_manifest",
    "forget_chunks",
    "build_store",
    "write_store",
    "open_store",
    "BlendStore",
    "ChunkShuffleSampler",
]

#: Arrays every store holds; component truth adds ``comp_<a|b>_<name>``.
ARRAYS = ("blend", "target_a", "target_b", "fill_mask_b")
_FORMAT = "galaxai-blend-store"
_VERSION = 1
_ZARR = "blends.zarr"
_CATALOGUE = "catalogue.parquet"
_MANIFEST = "manifest.json"
_OWN = {_ZARR, _CATALOGUE, _MANIFEST}
# Tags that keep the seed streams of one chunk independent of each other.
_BLEND, _SPLIT = 1, 2


class StoreError(DataError):
    """A path that is not a usable blend store; the message names it and what to do."""


def _how_to_build(path: Path) -> str:
    return (f"build one with galaxai.data.store.build_store({str(path)!r}, n, seed) or "
            "write_store(path, batch)")


def _how_to_rebuild(path: Path, manifest: dict, chunks: Sequence[int]) -> str:
    if manifest.get("kind") == "simulated":
        return (f"rebuild it: galaxai.data.store.forget_chunks({str(path)!r}, {list(chunks)}), "
                "then re-run build_store (`galaxai data blend`) with the store's original "
                "arguments, which rewrites exactly those chunks")
    return "rewrite the store from its source with write_store(..., overwrite=True)"


def forget_chunks(path: str | os.PathLike, chunks: Sequence[int]) -> Path:
    """Mark chunks of a simulated store as not built, so :func:`build_store` rebuilds them.

    Use it for chunks that lost files or fail their hash; re-running the original
    :func:`build_store` call then rewrites exactly those chunks (a chunk's content depends only
    on the seed and its number). The store reads as unfinished until then.

    Parameters
    ----------
    path : path-like
        Store directory.
    chunks : sequence of int
        Chunk numbers (``catalogue.parquet`` column ``chunk``).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is None or manifest.get("kind") != "simulated":
        raise StoreError(f"{path} is not a store made by build_store; "
                         "rewrite it from its source with write_store(..., overwrite=True)")
    bad = sorted(set(int(c) for c in chunks) - set(manifest["chunks_done"]))
    if bad:
        raise StoreError(f"{path} has no finished chunk(s) {bad}; its chunks are "
                         f"0–{manifest['n_chunks'] - 1}")
    gone = {int(c) for c in chunks}
    manifest["chunks_done"] = [c for c in manifest["chunks_done"] if c not in gone]
    manifest["chunk_hashes"] = {k: v for k, v in manifest["chunk_hashes"].items()
                                if int(k) not in gone}
    manifest.update(complete=False, data_hash=None)
    atomic_write_json(path / _MANIFEST, manifest)
    return path


def _batch_arrays(batch: BlendBatch) -> dict[str, np.ndarray]:
    arrays = {"blend": batch.blend, "target_a": batch.target_a, "target_b": batch.target_b,
              "fill_mask_b": batch.fill_mask_b}
    arrays.update({f"comp_{k}": v for k, v in sorted(batch.components.items())})
    return arrays


def _chunk_hash(arrays: dict[str, np.ndarray], catalogue: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    h.update(pd.util.hash_pandas_object(catalogue, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _write_catalogue(path: Path, new: pd.DataFrame, keep_chunks: set[int]) -> None:
    """Rewrite ``catalogue.parquet`` atomically: rows of ``keep_chunks`` plus ``new``."""
    cat_path = path / _CATALOGUE
    tables = []
    if cat_path.exists() and keep_chunks:
        old = pq.read_table(cat_path)
        mask = pc.is_in(old["chunk"], value_set=pa.array(sorted(keep_chunks), old["chunk"].type))
        tables.append(old.filter(mask))
    tables.append(pa.Table.from_pandas(new, preserve_index=False))
    table = pa.concat_tables(tables, promote_options="default")
    table = table.sort_by("index").combine_chunks()
    atomic_write(cat_path, lambda tmp: pq.write_table(table, tmp))


def _data_hash(manifest: dict) -> str:
    h = hashlib.sha256()
    for c in range(manifest["n_chunks"]):
        h.update(manifest["chunk_hashes"][str(c)].encode())
    return h.hexdigest()


def _simulated_chunk(c: int, lo: int, hi: int, seed: int, sim_config, blend_config: BlendConfig,
                     mode: str, cosmos_dir, test_fraction: float) -> tuple[BlendBatch, pd.DataFrame]:
    from galaxai.data import simulate as sim

    m = hi - lo
    kwargs = {"cosmos_dir": cosmos_dir} if cosmos_dir is not None else {}
    # galaxies 2·lo … 2·hi − 1 of the simulator's stream `seed`: A the first m, B the next m
    sample = sim.simulate(2 * m, seed=seed, config=sim_config, mode=mode, progress=False,
                          start=2 * lo, **kwargs)
    a, b = slice(0, m), slice(m, 2 * m)
    ids = np.arange(lo, hi, dtype=np.int64)
    batch = make_blends(
        sample.display[a], sample.display[b], np.random.SeedSequence([seed, _BLEND, c]),
        blend_config, ids_a=2 * lo + np.arange(m), ids_b=2 * lo + m + np.arange(m),
        flux_a=sample.noiseless[a], flux_b=sample.noiseless[b], sky_sigma=sample.sky_sigma[a],
        components_a={k: v[a] for k, v in sample.components.items()},
        components_b={k: v[b] for k, v in sample.components.items()},
    )
    u = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT, c])).random(m)
    cat = pd.concat([
        pd.DataFrame({"index": ids, "split": np.where(u < test_fraction, "test", "train"),
                      "chunk": np.full(m, c, dtype=np.int64), "seed": np.full(m, seed, dtype=np.int64)}),
        batch.catalogue,
        sample.catalogue.iloc[a].reset_index(drop=True).add_prefix("a_"),
        sample.catalogue.iloc[b].reset_index(drop=True).add_prefix("b_"),
    ], axis=1)
    return batch, cat


def check_same_settings(path: Path, manifest: dict, settings: dict) -> None:
    """Refuse to resume a build at ``path`` whose manifest was written with other settings."""
    diff = sorted(k for k in settings if manifest.get(k) != settings[k])
    if diff:
        raise StoreError(f"{path} was started with different settings ({', '.join(diff)}); "
                         "re-run with the original arguments to resume, or use a new path")


def read_manifest(path: Path, fmt: str = _FORMAT, advice: str | None = None) -> dict | None:
    """The ``manifest.json`` of a store-like directory of format ``fmt``; ``None`` if absent.

    An unreadable file or another format raises :class:`StoreError` naming it (and ``advice``).
    """
    mpath = path / _MANIFEST
    if not mpath.exists():
        return None
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"{mpath} is unreadable ({exc}); delete {path} and rebuild it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise StoreError(f"{mpath} is not a galaxai {fmt} manifest; "
                         f"{advice if advice is not None else _how_to_build(path)}")
    return manifest


def build_store(path: str | os.PathLike, n: int, seed: int, sim_config=None,
                blend_config: BlendConfig | None = None, chunk: int = 128, progress: bool = False,
                mode: str = "parametric", *, test_fraction: float = 0.1,
                cosmos_dir: str | os.PathLike | None = None) -> Path:
    """Simulate ``n`` galaxy pairs, blend them and write a store; resume an interrupted build.

    Parameters
    ----------
    path : path-like
        Store directory (created). If it holds a manifest of an unfinished build with the same
        arguments, the build continues after the last finished chunk.
    n : int
        Number of blends.
    seed : int
        Master seed: the simulator's stream, and with the chunk number the blend and split seeds.
    sim_config : galaxai.data.simulate.SimConfig, optional
        Default ``SimConfig.preset("small")``.
    blend_config : BlendConfig, optional
        Default ``BlendConfig.preset("small")`` (noise padding, max merge).
    chunk : int
        Examples per chunk: the unit of work, of atomicity and of Zarr chunking (64–256).
    progress : bool
        Show a tqdm bar over chunks.
    mode : {"parametric", "cosmos"}
        Simulator mode (:func:`galaxai.data.simulate.simulate`).
    test_fraction : float
        Probability that an example is labelled ``"test"``.
    cosmos_dir : path-like, optional
        Passed to the simulator in ``"cosmos"`` mode.

    Returns
    -------
    pathlib.Path
        The store directory.
    """
    from galaxai.data import simulate as sim

    path = Path(path)
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1], got {test_fraction}")
    sim_config = sim_config if sim_config is not None else sim.SimConfig.preset("small")
    blend_config = blend_config if blend_config is not None else BlendConfig.preset("small")
    settings = {
        "kind": "simulated", "n": int(n), "seed": int(seed), "chunk": int(chunk), "mode": mode,
        "test_fraction": float(test_fraction),
        "cosmos_dir": None if cosmos_dir is None else str(cosmos_dir),
        "sim_config": config_to_dict(sim_config), "blend_config": config_to_dict(blend_config),
    }
    # round-trip through JSON so that comparisons with a manifest read back are like for like
    settings = json.loads(json.dumps(settings))
    manifest = read_manifest(path)
    if manifest is None:
        if path.exists() and any(p.name not in _OWN and not p.name.startswith(".")
                                 for p in path.iterdir()):
            raise StoreError(f"{path} exists and is not a galaxai blend store; choose a new path")
        if path.exists():  # debris of a build killed before its first manifest: start over
            shutil.rmtree(path / _ZARR, ignore_errors=True)
            (path / _CATALOGUE).unlink(missing_ok=True)
        n_chunks = -(-n // chunk)
        manifest = {"format": _FORMAT, "version": _VERSION, **settings, "n_chunks": n_chunks,
                    "arrays": {}, "chunks_done": [], "chunk_hashes": {}, "complete": False,
                    "data_hash": None, "galaxai_version": galaxai.__version__,
                    "zarr_version": zarr.__version__}
        atomic_write_json(path / _MANIFEST, manifest)
    else:
        if manifest.get("kind") != "simulated":
            raise StoreError(f"{path} holds a store written by write_store, not a simulated build; "
                             "choose a new path")
        check_same_settings(path, manifest, settings)
        if manifest["complete"]:
            return path
    done = set(manifest["chunks_done"])
    todo = [c for c in range(manifest["n_chunks"]) if c not in done]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=manifest["n_chunks"], initial=len(done), desc="blend store", unit="chunk")
    try:
        for c in todo:
            lo, hi = c * chunk, min(n, (c + 1) * chunk)
            batch, cat = _simulated_chunk(c, lo, hi, seed, sim_config, blend_config, mode,
                                          cosmos_dir, test_fraction)
            arrays = _batch_arrays(batch)
            if not manifest["arrays"]:
                manifest["arrays"] = create_arrays(path / _ZARR, n, chunk, arrays)
            elif sorted(arrays) != sorted(manifest["arrays"]):
                raise StoreError(f"chunk {c} of {path} produced arrays {sorted(arrays)}, expected "
                                 f"{sorted(manifest['arrays'])}")
            write_chunk(path / _ZARR, c, lo, arrays)
            _write_catalogue(path, cat, done)
            done.add(c)
            manifest["chunks_done"] = sorted(done)
            manifest["chunk_hashes"][str(c)] = _chunk_hash(arrays, cat)
            manifest["chunk_hashes"] = dict(sorted(manifest["chunk_hashes"].items(),
                                                   key=lambda kv: int(kv[0])))
            if len(done) == manifest["n_chunks"]:
                manifest["complete"] = True
                manifest["data_hash"] = _data_hash(manifest)
            atomic_write_json(path / _MANIFEST, manifest)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return path


def write_store(path: str | os.PathLike, batch: BlendBatch, *, split: str | Sequence[str] = "train",
                chunk: int = 128, overwrite: bool = False, metadata: dict[str, Any] | None = None
                ) -> Path:
    """Write an arbitrary :class:`BlendBatch` (e.g. blends of real galaxies) as a store.

    The store is assembled in a temporary directory beside ``path`` and renamed into place, so a
    reader never sees a half-written store.

    Parameters
    ----------
    path : path-like
    batch : BlendBatch
    split : str or sequence of str
        One label for every row (e.g. ``"test"`` for blends of Kaggle test images) or one per row.
    chunk : int
        Zarr chunk length along N.
    overwrite : bool
        Replace an existing store at ``path``.
    metadata : dict, optional
        JSON-serialisable provenance kept in the manifest (e.g. source directory, blend config).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    n = len(batch)
    if n < 1:
        raise ValueError("write_store needs a non-empty batch")
    if path.exists() and not overwrite:
        raise StoreError(f"{path} already exists; pass overwrite=True or choose a new path")
    labels = np.full(n, split, dtype=object) if isinstance(split, str) else np.asarray(split, dtype=object)
    if labels.shape != (n,):
        raise ValueError(f"split must be one label or {n} labels, got {labels.shape[0]}")
    arrays = _batch_arrays(batch)
    for name, arr in arrays.items():
        if arr.shape[0] != n:
            raise ValueError(f"batch.{name} has {arr.shape[0]} rows, expected {n}")
    idx = np.arange(n, dtype=np.int64)
    cat = pd.concat([pd.DataFrame({"index": idx, "split": labels.astype(str),
                                   "chunk": idx // chunk}),
                     batch.catalogue.reset_index(drop=True)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        spec = create_arrays(tmp / _ZARR, n, chunk, arrays)
        root = zarr.open_group(store=str(tmp / _ZARR), mode="r+", zarr_format=3)
        for name, arr in arrays.items():
            root[name][:] = arr
        atomic_write(tmp / _CATALOGUE,
                     lambda t: pq.write_table(pa.Table.from_pandas(cat, preserve_index=False), t))
        n_chunks = -(-n // chunk)
        hashes = {str(c): _chunk_hash({k: v[c * chunk:(c + 1) * chunk] for k, v in arrays.items()},
                                      cat.iloc[c * chunk:(c + 1) * chunk])
                  for c in range(n_chunks)}
        manifest = {"format": _FORMAT, "version": _VERSION, "kind": "batch", "n": n, "chunk": chunk,
                    "n_chunks": n_chunks, "arrays": spec, "chunks_done": list(range(n_chunks)),
                    "chunk_hashes": hashes, "complete": True, "metadata": metadata or {},
                    "galaxai_version": galaxai.__version__, "zarr_version": zarr.__version__}
        manifest["data_hash"] = _data_hash(manifest)
        atomic_write_json(tmp / _MANIFEST, manifest)
        if path.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, trash / "store")
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def open_store(path: str | os.PathLike, split: str | None = None, **kwargs) -> "BlendStore":
    """Open a store as a :class:`BlendStore` (see there for the keyword arguments)."""
    return BlendStore(path, split=split, **kwargs)


class BlendStore(torch.utils.data.Dataset):
    """A blend store as a map-style torch Dataset.

    Items are dicts: ``blend``, ``target_a``, ``target_b`` float32 tensors ``(3, S, S)`` in
    [0, 1], ``fill_mask_b`` bool tensor ``(1, S, S)``, ``index`` (int, the row in the store) and,
    with ``components=True``, ``comp_<a|b>_<name>`` float32 tensors.

    Parameters
    ----------
    path : path-like
    split : str, optional
        Keep only rows of this split (``"train"``, ``"test"``); default all rows.
    in_memory : bool, optional
        Load the selected rows into memory at once (fastest). Default: when they take at most
        ``memory_limit`` bytes.
    components : bool
        Also return the component truth.
    memory_limit : int
        Threshold of the automatic ``in_memory`` choice (bytes).
    verify : bool
        Check each chunk against its hash in the manifest the first time one of its rows is read
        (reads the whole chunk once per process): bytes changed on disk raise
        :class:`StoreError` instead of changing the data silently. Whatever this is, opening
        checks that every finished chunk's Zarr files exist.
    cache_chunks : int
        Without ``in_memory``: 0 reads each example on its own (one inner Zarr chunk per array,
        good for random access); ``k > 0`` reads whole chunks and keeps the last ``k`` (good for
        sequential passes and :class:`ChunkShuffleSampler`).

    Notes
    -----
    Zarr handles are opened lazily in each process, so the dataset is safe to use with
    ``DataLoader(num_workers > 0)``.
    """

    def __init__(self, path: str | os.PathLike, split: str | None = None, *,
                 in_memory: bool | None = None, components: bool = False,
                 memory_limit: int = 1 << 30, cache_chunks: int = 0,
                 verify: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"{self.path} is not a blend store (no such directory); "
                             f"{_how_to_build(self.path)}")
        manifest = read_manifest(self.path)
        if manifest is None:
            raise StoreError(f"{self.path} is not a blend store (no {_MANIFEST}); "
                             f"{_how_to_build(self.path)}")
        if not manifest["complete"]:
            raise StoreError(f"{self.path} is an unfinished build ({len(manifest['chunks_done'])} "
                             f"of {manifest['n_chunks']} chunks); re-run build_store with the same "
                             "arguments to finish it")
        self.manifest = manifest
        self.chunk = int(manifest["chunk"])
        try:
            catalogue = pd.read_parquet(self.path / _CATALOGUE)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.path / _CATALOGUE} is unreadable ({exc}); "
                             f"{_how_to_rebuild(self.path, manifest, manifest['chunks_done'])}"
                             ) from None
        self._all_rows = catalogue
        self.verify = bool(verify)
        self._verified: set[int] = set()
        self._root = None
        self._pid = None
        ndims = {k: len(v["shape"]) for k, v in manifest["arrays"].items()}
        for c in manifest["chunks_done"]:
            missing = missing_chunk_files(self.path / _ZARR, c, ndims)
            if missing:  # no file: a chunk of zeros only (zarr writes none) or a lost one
                self.check_chunk(c, missing)
        if split is not None:
            found = sorted(catalogue["split"].unique())
            if split not in found:
                raise StoreError(f"{self.path} has no rows with split={split!r}; splits present: {found}")
            catalogue = catalogue[catalogue["split"] == split].reset_index(drop=True)
        self.split = split
        self.catalogue = catalogue
        self.indices = catalogue["index"].to_numpy(dtype=np.int64)
        names = list(ARRAYS)
        if components:
            names += sorted(k for k in manifest["arrays"] if k.startswith("comp_"))
        self.names = names
        self.cache_chunks = max(0, int(cache_chunks))
        nbytes = sum(int(np.prod(manifest["arrays"][k]["shape"][1:])) *
                     np.dtype(manifest["arrays"][k]["dtype"]).itemsize for k in names) * len(self)
        self.in_memory = nbytes <= memory_limit if in_memory is None else bool(in_memory)
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._memory: dict[str, np.ndarray] | None = None
        if self.in_memory:
            self._memory = self._read_rows(self.indices)

    @property
    def data_hash(self) -> str:
        """Hash of the store's data (manifest), combined with the split when one is selected."""
        if self.split is None:
            return self.manifest["data_hash"]
        return hashlib.sha256(f"{self.manifest['data_hash']}:{self.split}".encode()).hexdigest()

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_root=None, _pid=None, _cache=OrderedDict())
        return state

    def _group(self):
        if self._root is None or self._pid != os.getpid():
            self._root = zarr.open_group(store=str(self.path / _ZARR), mode="r", zarr_format=3)
            self._pid = os.getpid()
            self._cache = OrderedDict()
        return self._root

    def check_chunk(self, c: int, missing: dict[str, Path] | None = None) -> None:
        """Compare chunk ``c`` (all arrays and its catalogue rows) with its manifest hash.

        Each chunk is checked once per process. ``missing`` names the arrays whose file of the
        chunk is absent, for the message. Raises :class:`StoreError` naming the chunk and the fix.
        """
        if c in self._verified:
            return
        lo = c * self.chunk
        hi = min(lo + self.chunk, int(self.manifest["n"]))
        names = sorted(self.manifest["arrays"])
        what = (f"does not match its hash in {_MANIFEST}: bytes of array(s) {', '.join(names)} "
                f"or of its {_CATALOGUE} rows changed on disk")
        if missing:
            what = (f"does not match its hash in {_MANIFEST} and lost its Zarr file(s) "
                    f"{', '.join(str(f) for f in missing.values())} (array(s) "
                    f"{', '.join(missing)}, read as zeros)")
        try:
            root = self._group()
            arrays = {k: root[k][lo:hi] for k in names}
        except Exception as exc:  # noqa: BLE001 - zarr/numcodecs raise many types on bad bytes
            what = f"cannot be decoded ({type(exc).__name__}: {exc})"
            arrays = None
        rows = self._all_rows[self._all_rows["chunk"] == c].reset_index(drop=True)
        if arrays is None or _chunk_hash(arrays, rows) != self.manifest["chunk_hashes"][str(c)]:
            raise StoreError(f"{self.path}: chunk {c} (rows {lo}–{hi - 1}) {what}; "
                             f"{_how_to_rebuild(self.path, self.manifest, [c])}")
        self._verified.add(c)

    def _read_rows(self, rows: np.ndarray, names: Sequence[str] | None = None
                   ) -> dict[str, np.ndarray]:
        """Read the given store rows of the arrays ``names`` (default all) with whole-chunk reads."""
        root = self._group()
        names = self.names if names is None else list(names)
        out = {k: np.empty((len(rows),) + tuple(self.manifest["arrays"][k]["shape"][1:]),
                           dtype=self.manifest["arrays"][k]["dtype"]) for k in names}
        chunks = rows // self.chunk
        for c in np.unique(chunks):
            if self.verify:
                self.check_chunk(int(c))
            sel = np.nonzero(chunks == c)[0]
            lo = int(c) * self.chunk
            for k in names:
                out[k][sel] = root[k][lo:lo + self.chunk][rows[sel] - lo]
        return out

    def _chunk(self, c: int) -> dict[str, np.ndarray]:
        if c in self._cache:
            self._cache.move_to_end(c)
            return self._cache[c]
        if self.verify:
            self.check_chunk(c)
        root = self._group()
        lo = c * self.chunk
        data = {k: root[k][lo:lo + self.chunk] for k in self.names}
        self._cache[c] = data
        while len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return data

    def to_arrays(self, n: int | None = None,
                  names: Sequence[str] = ("blend", "target_a", "target_b")
                  ) -> dict[str, np.ndarray]:
        """The first ``n`` selected rows (default all) as stacked NumPy arrays.

        Parameters
        ----------
        n : int, optional
            Number of rows, capped at ``len(self)``.
        names : sequence of str
            Arrays to return, from :attr:`names` (default the blend and both targets).

        Returns
        -------
        dict of str to numpy.ndarray
            ``(n, C, S, S)`` arrays in store order (the rows of ``catalogue.iloc[:n]``).
        """
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise ValueError(f"{self.path}: no array(s) {unknown} in this dataset; choose from "
                             f"{self.names} (components need BlendStore(..., components=True))")
        if n is not None and int(n) < 0:
            raise ValueError(f"n must be ≥ 0 (or None for every row), got {n}")
        rows = slice(0, len(self) if n is None else min(int(n), len(self)))
        if self._memory is not None:
            return {k: self._memory[k][rows].copy() for k in names}
        return self._read_rows(self.indices[rows], names)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a store of {len(self)} examples")
        i = int(i) % len(self)
        idx = int(self.indices[i])
        if self._memory is not None:
            item = {k: torch.from_numpy(self._memory[k][i].copy()) for k in self.names}
        elif self.cache_chunks:
            c = idx // self.chunk
            data = self._chunk(c)
            item = {k: torch.from_numpy(data[k][idx - c * self.chunk].copy()) for k in self.names}
        else:
            if self.verify:
                self.check_chunk(idx // self.chunk)
            root = self._group()
            item = {k: torch.from_numpy(np.asarray(root[k][idx])) for k in self.names}
        item["index"] = idx
        return item


class ChunkShuffleSampler(torch.utils.data.Sampler):
    """Shuffle a :class:`BlendStore` chunk-wise: chunks in random order, items shuffled inside.

    Every chunk is read once per epoch, so training from a store larger than memory is not slowed
    by random reads (the shuffle-buffer idea of the paper's TFRecord pipeline). Call
    :meth:`set_epoch` to reshuffle (as with ``DistributedSampler``).

    Parameters
    ----------
    store : BlendStore
    seed : int
    chunks_per_group : int
        Chunks whose items are mixed together; open the store with
        ``cache_chunks >= chunks_per_group``.
    """

    def __init__(self, store: BlendStore, seed: int = 0, chunks_per_group: int = 1) -> None:
        self.store = store
        self.seed = int(seed)
        self.epoch = 0
        self.chunks_per_group = max(1, int(chunks_per_group))
        self._by_chunk: dict[int, np.ndarray] = {}
        chunks = store.indices // store.chunk
        for c in np.unique(chunks):
            self._by_chunk[int(c)] = np.nonzero(chunks == c)[0]

    def set_epoch(self, epoch: int) -> None:
        """Use a different shuffle for ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.store)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(sorted(self._by_chunk))
        for g in range(0, len(order), self.chunks_per_group):
            group = np.concatenate([self._by_chunk[int(c)] for c in order[g:g + self.chunks_per_group]])
            yield from (int(i) for i in rng.permutation(group))
