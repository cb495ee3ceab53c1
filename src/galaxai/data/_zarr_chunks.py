"""Sharded Zarr v3 arrays written one chunk (shard file) at a time, shared by stores and pools.

Each array has one shard per ``chunk`` examples and one inner chunk per example: whole-shard
writes make builds resumable chunk by chunk (a torn shard of an interrupted run is removed before
it is rewritten), single-example inner chunks keep random access cheap.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

__all__ = ["create_arrays", "write_chunk"]


def _codec() -> list:
    return [zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")]


def create_arrays(zpath: Path, n: int, chunk: int, arrays: dict[str, np.ndarray]) -> dict:
    """Create the Zarr arrays: one shard (file) per ``chunk`` examples, one inner chunk per example."""
    root = zarr.open_group(store=str(zpath), mode="w", zarr_format=3)
    spec = {}
    for name, arr in arrays.items():
        shape = (n,) + tuple(arr.shape[1:])
        root.create_array(name, shape=shape, shards=(chunk,) + tuple(arr.shape[1:]),
                          chunks=(1,) + tuple(arr.shape[1:]), dtype=arr.dtype, compressors=_codec(),
                          fill_value=False if arr.dtype == bool else 0,
                          chunk_key_encoding={"name": "default", "separator": "/"})
        spec[name] = {"shape": list(shape), "dtype": str(arr.dtype)}
    return spec


def write_chunk(zpath: Path, c: int, lo: int, arrays: dict[str, np.ndarray]) -> None:
    """Write one chunk (shard file) of every array, removing any torn file of an interrupted run."""
    root = zarr.open_group(store=str(zpath), mode="r+", zarr_format=3)
    for name, arr in arrays.items():
        key = zpath / name / "c" / str(c)
        key = key.joinpath(*["0"] * (arr.ndim - 1))
        key.unlink(missing_ok=True)
        root[name][lo:lo + arr.shape[0]] = arr
