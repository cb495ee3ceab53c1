"""The per-batch work of survey-scale jobs: read the stamps a catalogue names, run one model, write.

A catalogue is a table with one row per stamp, named either by ``row`` (an index into a blend
store, :class:`galaxai.data.store.BlendStore`) or by ``path`` (a FITS cube, a g/r/i band set,
PNG/JPEG or ``.npy`` file read by :func:`galaxai.userdata.read_stamps`, relative to the stamps
folder). Its other columns are carried through to the results. A stamp's id is its ``row``, or
its position in the catalogue for ``path`` catalogues (an ``id`` column, when given, wins).

:class:`BatchJob` is the callable that both engines (:mod:`galaxai.batch.engines`) call on each
batch: it loads its model once (per process or Ray actor), reads the batch's stamps, runs the
task and writes one *part* of the output folder, Zarr arrays then a Parquet table (the table is
written last and atomically, so a part without it is unfinished and is redone). A stamp that
cannot be read or processed is recorded with ``status="error"`` and its message; the batch goes
on.

Tasks: ``deblend`` (arrays ``a``, ``b``: the two galaxies; columns ``flux_a``, ``flux_b``),
``discriminate`` (column ``p_real``) and ``explain`` (array ``relevance``: Polarized-LRP maps of
the discriminator summed over colours; columns ``p_real``, ``polarity``, ``relevance_sum``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TASKS", "BatchJob", "stamp_ids", "PARTS"]

#: The tasks of ``galaxai batch``.
TASKS = ("deblend", "explain", "discriminate")
#: Folder of the output parts inside the output folder.
PARTS = "parts"


def stamp_ids(catalogue: pd.DataFrame) -> pd.Series:
    """The stamp id of every catalogue row (``id``, else ``row``, else the position)."""
    for name in ("id", "row"):
        if name in catalogue:
            return catalogue[name].astype("int64")
    return pd.Series(np.arange(len(catalogue), dtype="int64"), index=catalogue.index)


class BatchJob:
    """Run one task on catalogue batches and write each batch's outputs; the model loads once.

    Parameters
    ----------
    task : {"deblend", "explain", "discriminate"}
    stamps : path-like
        A blend store (``row`` catalogues) or the folder the ``path`` column is relative to.
    out : path-like
        Output folder; each call writes ``out/parts/<first id>-<last id>.zarr`` and ``.parquet``.
    checkpoint : str, optional
        Checkpoint directory or shipped model name (default: the shipped ``small`` model).
    device : str, optional
        ``cuda`` when available, else ``cpu``.
    """

    def __init__(self, task: str, stamps: str | Path, out: str | Path,
                 checkpoint: str | None = None, device: str | None = None) -> None:
        import torch

        from galaxai import api

        if task not in TASKS:
            raise ValueError(f"task {task!r} is not one of {TASKS}")
        self.task, self.stamps, self.out = task, Path(stamps), Path(out)
        self.checkpoint = checkpoint
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._store = None
        # load the network now, once per process/actor (api caches it for the later calls)
        if task == "deblend":
            api.deblend(np.zeros((1, 80, 80, 3), np.float32), checkpoint, device=self.device)
        else:
            self.D = api.discriminator(checkpoint, self.device)

    # ------------------------------------------------------------------------- reading
    def _read(self, record: dict[str, Any]) -> np.ndarray:
        """One stamp ``(H, W, 3)`` in [0, 1]."""
        if "row" in record:
            if self._store is None:
                from galaxai.data.store import BlendStore

                self._store = BlendStore(self.stamps)
            return self._store[int(record["row"])]["blend"].numpy().transpose(1, 2, 0)
        from galaxai.userdata import read_stamps

        stack = read_stamps(self.stamps / str(record["path"]))
        if len(stack) != 1:
            raise ValueError(f"{record['path']} holds {len(stack)} stamps; name one stamp per "
                             "catalogue row")
        return stack[0]

    # ---------------------------------------------------------------------- the task
    def _run(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Arrays and table columns of stamps ``x`` ``(N, H, W, 3)``."""
        import torch

        from galaxai import api

        if self.task == "deblend":
            a, b = api.deblend(x, self.checkpoint, device=self.device)
            return {"a": a, "b": b}, {"flux_a": a.sum((1, 2, 3)), "flux_b": b.sum((1, 2, 3))}
        if self.task == "discriminate":
            return {}, {"p_real": api.discriminate(x, self.checkpoint, device=self.device)}
        from galaxai.explain import polarized_lrp

        from galaxai.models.deblender import to_network

        # D reads the networks' range [-1, 1]; the maps are of those pixels
        t = to_network(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.device))
        result = polarized_lrp(self.D, t)
        maps = result.maps.detach().sum(1).cpu().numpy().astype(np.float32)
        return {"relevance": maps}, {
            "p_real": result.scores.detach().cpu().numpy().astype(np.float32),
            "polarity": result.polarity.detach().cpu().numpy().astype(np.int8),
            "relevance_sum": maps.sum((1, 2)),
        }

    def process(self, batch: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """Results of one catalogue batch: the table (carried columns, ``id``, ``status``,
        ``error`` and the task's columns) and the arrays of the stamps that succeeded."""
        table = batch.reset_index(drop=True).copy()
        table["id"] = stamp_ids(table).to_numpy()
        table["status"], table["error"] = "ok", ""
        stamps, good = [], []
        for i, record in enumerate(table.to_dict("records")):
            try:
                stamps.append(self._read(record))
                good.append(i)
            except (OSError, ValueError, IndexError, KeyError) as exc:
                table.loc[i, ["status", "error"]] = "error", " ".join(str(exc).split())
        arrays: dict[str, np.ndarray] = {}
        if good:
            try:
                arrays, columns = self._run(np.stack(stamps))
            except (ValueError, RuntimeError) as exc:  # e.g. stamps of mixed sizes
                table.loc[good, ["status", "error"]] = "error", " ".join(str(exc).split())
                good, arrays = [], {}
            else:
                for name, values in columns.items():
                    table.loc[good, name] = values
        arrays["id"] = table["id"].to_numpy()[good]
        return table, arrays

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Process one batch and write it as a part of the output folder; return its table."""
        import zarr

        from galaxai._atomic import atomic_write

        table, arrays = self.process(batch)
        ids = table["id"]
        name = f"{int(ids.iloc[0]):012d}-{int(ids.iloc[-1]):012d}" if len(ids) else "empty"
        parts = self.out / PARTS
        parts.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(str(parts / f"{name}.zarr"), mode="w")
        for key, values in arrays.items():
            group.create_array(key, data=np.ascontiguousarray(values))
        atomic_write(parts / f"{name}.parquet", lambda tmp: table.to_parquet(tmp, index=False))
        return table
