"""Tests of the geometric self-ensemble."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from galaxai.models.self_ensemble import DIHEDRAL, self_ensemble


def _shift_right(x):
    """A network with no symmetry at all: every pixel takes its left neighbour's value, squared."""
    return torch.roll(x, 1, dims=-1) ** 2


def _symmetries(x):
    """The eight images of ``x`` (N, C, S, S) under the square's symmetries, written with NumPy."""
    out = []
    for turns in range(4):
        r = np.rot90(x, turns, axes=(2, 3))
        out += [r, r[..., ::-1]]
    return out


def test_the_eight_symmetries_are_distinct_and_a_group():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    images = {tuple(y.ravel()) for y in _symmetries(x)}
    assert len(DIHEDRAL) == 8 and len(set(DIHEDRAL)) == 8 and len(images) == 8


def test_mean_of_mapped_back_outputs_against_numpy():
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    expected = np.zeros(x.shape, np.float32)
    for turns in range(4):
        for mirror in (False, True):
            y = np.rot90(x.numpy(), turns, axes=(2, 3))
            y = y[..., ::-1] if mirror else y
            o = _shift_right(torch.from_numpy(y.copy())).numpy()
            o = o[..., ::-1] if mirror else o
            expected += np.rot90(o, -turns, axes=(2, 3)) / 8
    np.testing.assert_allclose(self_ensemble(_shift_right, x).numpy(), expected, atol=1e-6)


def test_output_is_exactly_equivariant_and_equivariant_networks_are_unchanged():
    x = torch.rand(1, 2, 5, 5, generator=torch.Generator().manual_seed(1))
    ensembled = self_ensemble(_shift_right, x).numpy()
    assert np.abs(ensembled - _shift_right(x).numpy()).max() > 1e-2
    for y, ref in zip(_symmetries(x.numpy()), _symmetries(ensembled)):
        np.testing.assert_allclose(self_ensemble(_shift_right, torch.from_numpy(y.copy())).numpy(),
                                   ref, atol=1e-6)
    pointwise = torch.tanh  # commutes with every symmetry
    np.testing.assert_allclose(self_ensemble(pointwise, x).numpy(), torch.tanh(x).numpy(), atol=1e-6)


def test_tuple_outputs_subsets_and_errors():
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    a, b = self_ensemble(lambda t: (t, _shift_right(t)), x)
    np.testing.assert_allclose(a.numpy(), x.numpy(), atol=1e-6)
    np.testing.assert_allclose(b.numpy(), self_ensemble(_shift_right, x).numpy(), atol=1e-6)
    np.testing.assert_allclose(self_ensemble(_shift_right, x, [(0, False)]).numpy(),
                               _shift_right(x).numpy())
    with pytest.raises(ValueError, match="square"):
        self_ensemble(_shift_right, torch.rand(1, 1, 4, 5))
    with pytest.raises(ValueError, match="empty"):
        self_ensemble(_shift_right, x, [])
    with pytest.raises(ValueError, match="spatial size"):
        self_ensemble(lambda t: t[..., :2, :2], x)
