"""Property-based round trips of the blend store: what ``write_store`` writes, ``open_store`` reads."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from galaxai.data.blend import BlendBatch
from galaxai.data.store import StoreError, open_store, write_store

_NAMES = ("blend", "target_a", "target_b", "fill_mask_b")


def _batch(n: int, size: int, seed: int) -> BlendBatch:
    rng = np.random.default_rng(seed)

    def images() -> np.ndarray:
        return rng.random((n, 3, size, size), dtype=np.float32)

    return BlendBatch(blend=images(), target_a=images(), target_b=images(),
                      fill_mask_b=rng.random((n, 1, size, size)) < 0.3,
                      catalogue=pd.DataFrame({"id_a": np.arange(n), "id_b": np.arange(n)[::-1]}))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 9), chunk=st.integers(1, 5), size=st.sampled_from([2, 4, 5]),
       seed=st.integers(0, 2**16), in_memory=st.booleans(), data=st.data())
def test_write_then_open_returns_the_same_arrays(n, chunk, size, seed, in_memory, data):
    batch = _batch(n, size, seed)
    splits = data.draw(st.lists(st.sampled_from(["train", "test"]), min_size=n, max_size=n))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_store(Path(tmp) / "store", batch, split=splits, chunk=chunk)
        store = open_store(path, in_memory=in_memory, verify=True)
        arrays = store.to_arrays(names=_NAMES)
        assert len(store) == n
        for name in _NAMES:
            expected = getattr(batch, name)
            assert arrays[name].dtype == expected.dtype and arrays[name].shape == expected.shape
            assert np.array_equal(arrays[name], expected), name
        i = data.draw(st.integers(0, n - 1))
        item = store[i]
        assert item["index"] == i and np.array_equal(item["blend"].numpy(), batch.blend[i])
        first = data.draw(st.integers(0, n))
        assert np.array_equal(store.to_arrays(first)["target_b"], batch.target_b[:first])
        rows = np.flatnonzero(np.asarray(splits) == "test")
        if rows.size == 0:  # a split without rows is refused, naming the splits present
            with pytest.raises(StoreError, match="no rows with split='test'"):
                open_store(path, split="test")
            return
        test = open_store(path, split="test", in_memory=in_memory)
        assert len(test) == rows.size
        assert np.array_equal(test.to_arrays(names=("target_a",))["target_a"], batch.target_a[rows])
