"""galaxai.data: simulated and real galaxy images, blends, stores and Galaxy Zoo style votes.

Submodules: :mod:`.simulate`, :mod:`.sources`, :mod:`.blend`, :mod:`.background`,
:mod:`.store`, :mod:`.pool`, :mod:`.real`, :mod:`.augment`, :mod:`.fits_export`,
:mod:`.gz_schema`, :mod:`.errors` and :mod:`.votes`. The
public API of :mod:`.votes` (Galaxy-Zoo-style vote fractions for simulated galaxies) and of
:mod:`.gz_schema` (the Galaxy Zoo column schema) is re-exported here; it is imported on first
use, so importing one ``galaxai.data`` submodule does not load the others.
"""
from galaxai._lazy import lazy_exports

_LAZY = dict.fromkeys(("GZ_PARENTS", "VoteConfig", "bar_vote_probability",
                       "answer_probabilities", "simulate_votes", "tree_residuals"), "votes")
_LAZY.update(dict.fromkeys(("GZ_QUESTIONS", "GZ_COLUMNS", "gz_column_index"), "gz_schema"))
_LAZY["DataError"] = "errors"

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
