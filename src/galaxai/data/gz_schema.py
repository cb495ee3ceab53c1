"""The Galaxy Zoo (Kaggle "Galaxy Zoo - The Galaxy Challenge") column schema.

The 11 decision-tree questions with their number of answers (Willett et al. 2013) and the 37
vote-fraction columns ``Class1.1`` … ``Class11.6`` in the order of the Kaggle solutions file,
which is also the output order of the morphology classifiers
(:mod:`galaxai.models.morphology` re-exports these names). Plain Python: data code uses the
schema without importing any network.

References
----------
K. W. Willett et al., MNRAS 435, 2835 (2013), "Galaxy Zoo 2".
"""
from __future__ import annotations

__all__ = ["GZ_QUESTIONS", "GZ_COLUMNS", "gz_column_index"]

#: Galaxy Zoo decision-tree questions and their number of answers (Willett et al. 2013).
GZ_QUESTIONS: dict[str, int] = {
    "Class1": 3, "Class2": 2, "Class3": 2, "Class4": 2, "Class5": 4, "Class6": 2,
    "Class7": 3, "Class8": 7, "Class9": 3, "Class10": 3, "Class11": 6,
}
#: The 37 Kaggle Galaxy Zoo columns, ``Class1.1`` … ``Class11.6``, in the output order.
GZ_COLUMNS: tuple[str, ...] = tuple(
    f"{q}.{a}" for q, n in GZ_QUESTIONS.items() for a in range(1, n + 1)
)


def gz_column_index(name: str) -> int:
    """Output index of a Galaxy Zoo column, e.g. ``gz_column_index("Class3.1") == 5``."""
    try:
        return GZ_COLUMNS.index(name)
    except ValueError:
        raise ValueError(f"{name!r} is not a Galaxy Zoo column; valid: {GZ_COLUMNS[0]} … "
                         f"{GZ_COLUMNS[-1]} (see GZ_COLUMNS)") from None
