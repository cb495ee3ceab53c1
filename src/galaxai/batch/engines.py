"""Run a :class:`~galaxai.batch.jobs.BatchJob` over a catalogue: in-process, or on Ray Data.

Both engines cut the same to-do list (catalogue rows whose id has no finished ``ok`` result in
the output folder) into the same batches and call the same job on each, so their outputs are the
same; a rerun skips what is done (idempotent by stamp id), and retries stamps that failed.
Finally ``results.parquet`` (one row per stamp, the last result of each id) is written atomically.

``engine="ray"`` uses :meth:`ray.data.Dataset.map_batches` with the job as a callable class: Ray
starts ``actors`` actors, each loading the model once, each on one GPU when ``gpus_per_actor``
is > 0. It joins a running Ray cluster when one is initialised (``ray.init(address=...)``) and
otherwise starts a local one.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from galaxai.batch.jobs import PARTS, TASKS, BatchJob, stamp_ids

__all__ = ["ENGINES", "run_batch_job", "read_results", "read_arrays"]

#: Execution engines of ``galaxai batch``.
ENGINES = ("local", "ray")


def read_results(out: str | Path) -> pd.DataFrame:
    """Every finished part's table in an output folder, one row per stamp id (the latest)."""
    parts = sorted((Path(out) / PARTS).glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    if not parts:
        return pd.DataFrame(columns=["id", "status", "error"])
    table = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return table.drop_duplicates("id", keep="last").sort_values("id").reset_index(drop=True)


def read_arrays(out: str | Path, name: str) -> tuple["np.ndarray", "np.ndarray"]:
    """The stamp ids and the array ``name`` (``a``, ``b`` or ``relevance``) of every finished
    part, sorted by id (the latest result of an id wins)."""
    import numpy as np
    import zarr

    ids, values = [], []
    parts = sorted((Path(out) / PARTS).glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    for table in parts:
        group = zarr.open_group(str(table.with_suffix(".zarr")), mode="r")
        if name in group:
            ids.append(group["id"][:])
            values.append(group[name][:])
    if not ids:
        raise ValueError(f"{out} holds no array {name!r}; run a batch job that writes it "
                         "(deblend: a, b; explain: relevance)")
    ids_all, values_all = np.concatenate(ids), np.concatenate(values)
    last = len(ids_all) - 1 - np.unique(ids_all[::-1], return_index=True)[1]
    return ids_all[last], values_all[last]


def _check_catalogue(catalogue: pd.DataFrame, source: str) -> None:
    if "row" not in catalogue and "path" not in catalogue:
        raise ValueError(f"catalogue {source} has neither a 'row' column (blend-store rows) nor a "
                         "'path' column (stamp files); add one")
    ids = stamp_ids(catalogue)
    if ids.duplicated().any():
        raise ValueError(f"catalogue {source} names stamp id(s) "
                         f"{sorted(ids[ids.duplicated()].unique())[:5]} more than once; "
                         "give each row its own 'row' (or 'id')")


def run_batch_job(task: str, catalogue: str | Path | pd.DataFrame, stamps: str | Path,
                  out: str | Path, *, engine: str = "local", batch_size: int = 64,
                  actors: int = 1, gpus_per_actor: float = 0.0, checkpoint: str | None = None,
                  device: str | None = None, progress: bool = False) -> pd.DataFrame:
    """Run ``task`` on every stamp of ``catalogue`` not done yet; return all results.

    Parameters
    ----------
    task : {"deblend", "explain", "discriminate"}
    catalogue : path-like or DataFrame
        Parquet catalogue with a ``row`` or ``path`` column (see :mod:`galaxai.batch.jobs`).
    stamps : path-like
        The blend store or stamp folder.
    out : path-like
        Output folder (``parts/`` and ``results.parquet``).
    engine : {"local", "ray"}
    batch_size : int
        Stamps per batch (one forward pass; one output part).
    actors : int
        Ray actors (model copies) working in parallel.
    gpus_per_actor : float
        GPUs per Ray actor (0: CPU actors).
    checkpoint, device
        As for :class:`~galaxai.batch.jobs.BatchJob`.
    progress : bool
        Progress bar (local engine; Ray shows its own).

    Returns
    -------
    pandas.DataFrame
        ``results.parquet``: one row per stamp id with ``status`` and ``error``.
    """
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {TASKS}")
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not one of {ENGINES}")
    if batch_size < 1 or actors < 1:
        raise ValueError("batch_size and actors must be >= 1")
    source = "(DataFrame)" if isinstance(catalogue, pd.DataFrame) else str(catalogue)
    table = catalogue if isinstance(catalogue, pd.DataFrame) else pd.read_parquet(catalogue)
    _check_catalogue(table, source)
    out = Path(out)
    done = read_results(out)
    finished = set(done.loc[done["status"] == "ok", "id"].astype("int64"))
    todo = table[~stamp_ids(table).isin(finished).to_numpy()].reset_index(drop=True)
    job = dict(task=task, stamps=str(stamps), out=str(out), checkpoint=checkpoint, device=device)
    if len(todo):
        (_run_ray if engine == "ray" else _run_local)(todo, job, batch_size, actors,
                                                      gpus_per_actor, progress)
    from galaxai._atomic import atomic_write

    results = read_results(out)
    atomic_write(out / "results.parquet", lambda tmp: results.to_parquet(tmp, index=False))
    return results


def _batches(todo: pd.DataFrame, batch_size: int) -> list[pd.DataFrame]:
    return [todo.iloc[i:i + batch_size] for i in range(0, len(todo), batch_size)]


def _run_local(todo, job, batch_size, actors, gpus_per_actor, progress) -> None:
    from tqdm.auto import tqdm

    run = BatchJob(**job)
    with tqdm(total=len(todo), disable=not progress, desc=job["task"], unit="stamp") as bar:
        for batch in _batches(todo, batch_size):
            run(batch)
            bar.update(len(batch))


def _run_ray(todo, job, batch_size, actors, gpus_per_actor, progress) -> None:
    try:
        import ray
    except ImportError:
        raise ImportError("engine='ray' needs Ray: pip install 'galaxai[ray]'") from None
    if not ray.is_initialized():
        ray.init()
    # one block per batch: Ray's batches are then exactly the local engine's
    blocks = [ray.put(b) for b in _batches(todo, batch_size)]
    ds = ray.data.from_pandas_refs(blocks)
    ds.map_batches(BatchJob, fn_constructor_kwargs=job, batch_size=batch_size,
                   batch_format="pandas", concurrency=actors, num_gpus=gpus_per_actor or None,
                   num_cpus=1).materialize()
