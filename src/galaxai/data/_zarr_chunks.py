"""Sharded Zarr v3 arrays written one chunk (shard file) at a time, shared by stores and pools.

Each array has one shard per ``chunk`` examples and one inner chunk per example: whole-shard
writes make builds resumable chunk by chunk (a torn shard of an interrupted run is removed before
it is rewritten), single-example inner chunks keep random access cheap.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

__all__ = ["create_arrays", "write_chunk", "chunk_file", "missing_chunk_files"]


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
        chunk_file(zpath, name, c, arr.ndim).unlink(missing_ok=True)
        root[name][lo:lo + arr.shape[0]] = arr


def chunk_file(zpath: Path, name: str, c: int, ndim: int) -> Path:
    """The shard file holding chunk ``c`` of the ``ndim``-dimensional array ``name``."""
    return (zpath / name / "c" / str(c)).joinpath(*["0"] * (ndim - 1))


def missing_chunk_files(zpath: Path, c: int, ndims: dict[str, int]) -> dict[str, Path]:
    """The arrays (name → expected file) whose shard file of chunk ``c`` does not exist.

    Zarr writes no file for a chunk that holds only the fill value, and reads a missing file as
    that value (zeros), so a missing file is either such a chunk or a lost one: callers tell the
    two apart with a content hash (as :class:`galaxai.data.store.BlendStore` does) or by knowing
    that the array is never all zeros.

    Parameters
    ----------
    zpath : pathlib.Path
        The Zarr group.
    c : int
        Chunk number.
    ndims : dict of str to int
        Array name → number of dimensions.
    """
    files = {name: chunk_file(zpath, name, c, ndim) for name, ndim in ndims.items()}
    return {name: f for name, f in files.items() if not f.is_file()}
