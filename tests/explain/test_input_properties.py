"""Property-based input validation of every registered attribution method.

A batch with a NaN or infinity anywhere, fewer than two dimensions, or an integer dtype is
refused with a ``ValueError`` that names the argument ``x``, before the model runs.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from galaxai.explain import METHODS
from test_contract import _FAST, _model

_SETTINGS = settings(max_examples=20, deadline=None)
_MODEL = _model("plain", torch.float32).eval()
_METHODS = st.sampled_from(sorted(METHODS))


def _call(name: str, x) -> None:
    METHODS[name](_MODEL, x, **_FAST.get(name, [{}])[0])


@_SETTINGS
@given(name=_METHODS, batch=st.integers(1, 3), bad=st.sampled_from([float("nan"), float("inf"),
                                                                     float("-inf")]),
       data=st.data())
def test_non_finite_values_raise_value_error_naming_x(name, batch, bad, data):
    x = torch.rand(batch, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    index = tuple(data.draw(st.integers(0, n - 1)) for n in x.shape)
    x[index] = bad
    with pytest.raises(ValueError, match=r"^x contains NaN or infinite values"):
        _call(name, x)
    with pytest.raises(ValueError, match=r"^x contains NaN"):
        _call(name, x.numpy())  # array-likes are checked the same way


@_SETTINGS
@given(name=_METHODS, shape=st.lists(st.integers(1, 4), min_size=0, max_size=1))
def test_fewer_than_two_dimensions_raise_value_error_naming_x(name, shape):
    with pytest.raises(ValueError, match=r"^x must be a batch \(B, C, H, W\)"):
        _call(name, torch.zeros(shape))


@_SETTINGS
@given(name=_METHODS, dtype=st.sampled_from([torch.int64, torch.int32, torch.uint8, torch.bool]))
def test_non_float_batches_raise_value_error_naming_x(name, dtype):
    with pytest.raises(ValueError, match=r"^x must be a floating-point image batch"):
        _call(name, torch.zeros(2, 3, 12, 12, dtype=dtype))
