"""Galaxy-Zoo-style vote fractions for simulated galaxies, consistent with the GZ decision tree.

The Kaggle Galaxy Zoo targets (Willett et al. 2013; Dieleman et al. 2015) are 37 vote fractions,
``Class1.1`` … ``Class11.6`` (:data:`galaxai.data.gz_schema.GZ_COLUMNS`). A question is only
asked of volunteers who gave the answer leading to it, so the answers of a question sum to the
fraction of that parent answer (spec ``smoothgrad_barlength.md`` §8, :data:`GZ_PARENTS`).

:func:`simulate_votes` turns the truth of :func:`galaxai.data.simulate.simulate` into such
targets in two steps:

1. **Answer probabilities** per question and galaxy (:func:`answer_probabilities`), each a
   smooth function of the simulation parameters, e.g. "features or disk" from the bulge
   fraction, "edge-on" from the inclination and the **soft bar vote**

   ``P(bar) = σ(β0 + β_T · bar/T + β_q · (0.5 − q_b) + β_r · ln(a_proj / FWHM))``

   for barred galaxies (bar light fraction, bar axis ratio, projected semi-major axis over the
   r-band PSF FWHM: brighter, thinner and better resolved bars get more "yes" votes, as GZ2 bar
   votes do — Masters et al. 2011; Erwin 2018), and ``σ(β_unbarred)`` for unbarred ones
   (volunteers' false positives).
2. **Volunteers** (:class:`VoteConfig.n_volunteers`, default 40, about the GZ2 median): each
   walks the tree, so answer counts are drawn as multinomials down the tree, starting from all
   volunteers at Q1 and Q6 and continuing with the count of the parent answer. Fractions are
   counts divided by the number of volunteers, so every tree sum holds (to float rounding).
   ``n_volunteers=None`` gives the expected fractions (products of probabilities) without noise.

Every galaxy's votes come from its own stream ``SeedSequence(seed, spawn_key=(index,))`` keyed on
the catalogue ``index``, so a galaxy's votes do not depend on which other galaxies are voted on.

References
----------
K. W. Willett et al., MNRAS 435, 2835 (2013) (GZ2 decision tree, vote fractions).
S. Dieleman, K. W. Willett, J. Dambre, MNRAS 450, 1441 (2015) (the 37 Kaggle targets).
K. L. Masters et al., MNRAS 411, 2026 (2011) (GZ2 bar votes).
P. Erwin, MNRAS 474, 5372 (2018) (bars below ~2 PSF FWHM are not reliably seen).
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from galaxai.data.gz_schema import GZ_COLUMNS, GZ_QUESTIONS

__all__ = [
    "GZ_PARENTS",
    "VoteConfig",
    "bar_vote_probability",
    "answer_probabilities",
    "simulate_votes",
    "tree_residuals",
]

#: The answer leading to each question (``None``: asked of every volunteer), spec §8.
GZ_PARENTS: dict[str, str | None] = {
    "Class1": None, "Class2": "Class1.2", "Class3": "Class2.2", "Class4": "Class2.2",
    "Class5": "Class2.2", "Class6": None, "Class7": "Class1.1", "Class8": "Class6.1",
    "Class9": "Class2.1", "Class10": "Class4.1", "Class11": "Class4.1",
}
# Questions in an order where every parent question comes first.
_ORDER = ("Class1", "Class6", "Class2", "Class7", "Class8", "Class3", "Class4", "Class5",
          "Class9", "Class10", "Class11")

_CATALOGUE_COLUMNS = ("index", "bt", "has_bar", "has_arms", "has_knots", "disk_cos_i",
                      "disk_incl_deg", "bulge_q", "frac_bar", "frac_arms", "bar_q",
                      "bar_length_proj_px", "psf_fwhm_r_px", "arms_count", "arms_pitch_deg")


@dataclass(frozen=True)
class VoteConfig:
    """How simulated volunteers vote.

    Parameters
    ----------
    n_volunteers : int or None
        Volunteers per galaxy (GZ2: ~40–50); ``None`` returns noise-free expected fractions.
    bar_intercept, bar_light, bar_axis, bar_resolution : float
        ``β0, β_T, β_q, β_r`` of the soft bar vote (module docstring). The defaults give
        P(bar) ≈ 0.98 for bar/T = 0.25, q_b = 0.2, a_proj = 4 FWHM; ≈ 0.47 for 0.15, 0.3, 2 FWHM;
        ≈ 0.03 for 0.05, 0.45, 1 FWHM.
    bar_unbarred : float
        Logit of a "bar: yes" vote for an unbarred disk (false positives, P ≈ 0.05).
    star_artifact : float
        Probability of the answer "star or artifact" (Q1).
    odd : float
        Probability of "anything odd: yes" without knots (Q6); knots add ``odd``.
    """

    n_volunteers: int | None = 40
    bar_intercept: float = -4.6
    bar_light: float = 15.0
    bar_axis: float = 6.0
    bar_resolution: float = 1.5
    bar_unbarred: float = -3.0
    star_artifact: float = 0.01
    odd: float = 0.1

    def __post_init__(self) -> None:
        if self.n_volunteers is not None and (
                isinstance(self.n_volunteers, bool)
                or not isinstance(self.n_volunteers, (int, np.integer)) or self.n_volunteers < 1):
            raise ValueError(f"VoteConfig.n_volunteers must be a positive integer or None, "
                             f"got {self.n_volunteers!r}")
        for name in ("star_artifact", "odd"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ValueError(f"VoteConfig.{name} must be a probability in [0, 0.5), "
                                 f"got {getattr(self, name)!r}")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax_around(value: np.ndarray, centres, width: float) -> np.ndarray:
    """Probabilities ∝ exp(−((value − centre)/width)²) over ordered categories."""
    z = -((value[:, None] - np.asarray(centres, dtype=float)[None, :]) / width) ** 2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _column(cat: pd.DataFrame, name: str, fill: float = 0.0) -> np.ndarray:
    return cat[name].to_numpy(dtype=float, na_value=fill)


def _check_catalogue(catalogue: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(catalogue, pd.DataFrame):
        raise TypeError(f"catalogue must be a pandas DataFrame (GalaxySample.catalogue), got "
                        f"{type(catalogue).__name__}")
    missing = [c for c in _CATALOGUE_COLUMNS if c not in catalogue.columns]
    if missing:
        raise ValueError(f"catalogue lacks column(s) {missing}; pass the catalogue of a "
                         "parametric galaxai.data.simulate.simulate(...) sample")
    return catalogue


def bar_vote_probability(catalogue: pd.DataFrame, config: VoteConfig = VoteConfig()) -> np.ndarray:
    """Probability that a volunteer who reaches Q3 answers "bar: yes" (the soft bar vote).

    Parameters
    ----------
    catalogue : pandas.DataFrame
        Parametric simulation catalogue.
    config : VoteConfig

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    cat = _check_catalogue(catalogue)
    barred = cat["has_bar"].to_numpy(dtype=bool)
    a_proj = np.where(barred, _column(cat, "bar_length_proj_px", 1.0) / 2.0, 1.0)
    fwhm = _column(cat, "psf_fwhm_r_px", 1.0)
    z = (config.bar_intercept + config.bar_light * _column(cat, "frac_bar")
         + config.bar_axis * (0.5 - _column(cat, "bar_q", 0.5))
         + config.bar_resolution * np.log(np.maximum(a_proj, 1e-3) / fwhm))
    return _sigmoid(np.where(barred, z, config.bar_unbarred))


def answer_probabilities(catalogue: pd.DataFrame,
                         config: VoteConfig = VoteConfig()) -> dict[str, np.ndarray]:
    """Per-question answer probabilities of a volunteer who is asked that question.

    Parameters
    ----------
    catalogue : pandas.DataFrame
        Parametric simulation catalogue (:func:`galaxai.data.simulate.simulate`).
    config : VoteConfig

    Returns
    -------
    dict of str to numpy.ndarray
        ``"Class1"`` … ``"Class11"`` → ``(n, n_answers)`` rows summing to 1.
    """
    cat = _check_catalogue(catalogue)
    n = len(cat)
    bt = _column(cat, "bt")
    barred = cat["has_bar"].to_numpy(dtype=bool)
    arms = cat["has_arms"].to_numpy(dtype=bool)
    knots = cat["has_knots"].to_numpy(dtype=bool)
    incl = _column(cat, "disk_incl_deg")
    frac_arms = _column(cat, "frac_arms")

    # Q1: disk features grow as the bulge fraction falls; arms and bars are features too.
    p_feat = _sigmoid(6.0 * (0.45 - bt) + 2.0 * arms + 1.5 * barred)
    star = config.star_artifact
    q1 = np.stack([(1 - star) * (1 - p_feat), (1 - star) * p_feat, np.full(n, star)], axis=1)
    # Q2: edge-on from the inclination (thin disks look edge-on beyond ~75°).
    p_edge = _sigmoid((incl - 75.0) / 4.0)
    q2 = np.stack([p_edge, 1 - p_edge], axis=1)
    p_bar = bar_vote_probability(cat, config)
    q3 = np.stack([p_bar, 1 - p_bar], axis=1)
    p_spiral = _sigmoid(-2.5 + arms * (2.0 + 12.0 * frac_arms))
    q4 = np.stack([p_spiral, 1 - p_spiral], axis=1)
    q5 = _softmax_around(bt, (0.0, 0.12, 0.3, 0.6), 0.12)
    p_odd = np.clip(config.odd * (1.0 + knots), 0.0, 1.0)
    q6 = np.stack([p_odd, 1 - p_odd], axis=1)
    # Q7: apparent axis ratio of a smooth galaxy, bulge and disk weighted by light.
    q_app = bt * _column(cat, "bulge_q", 1.0) + (1 - bt) * np.maximum(_column(cat, "disk_cos_i"), 0.2)
    q7 = _softmax_around(q_app, (0.9, 0.6, 0.3), 0.2)
    # Q8: ring, lens, disturbed, irregular, other, merger, dust lane; knots look irregular.
    q8 = np.tile([0.08, 0.05, 0.12, 0.1, 0.45, 0.1, 0.1], (n, 1))
    q8[:, 3] += 0.4 * knots
    q8[:, 0] += 0.1 * barred  # inner rings are common in barred galaxies
    q8 /= q8.sum(axis=1, keepdims=True)
    q9 = _softmax_around(bt, (0.5, 0.3, 0.0), 0.15)  # rounded, boxy, no bulge
    pitch = _column(cat, "arms_pitch_deg", 20.0)
    q10 = np.where(arms[:, None], _softmax_around(pitch, (12.0, 20.0, 28.0), 6.0), 1.0 / 3.0)
    count = _column(cat, "arms_count")
    q11 = np.full((n, 6), 0.05)
    has_count = arms & (count >= 1)
    q11[has_count, np.clip(count[has_count].astype(int) - 1, 0, 4)] += 0.55
    q11[:, 5] += 0.15  # can't tell
    q11 /= q11.sum(axis=1, keepdims=True)
    return {"Class1": q1, "Class2": q2, "Class3": q3, "Class4": q4, "Class5": q5,
            "Class6": q6, "Class7": q7, "Class8": q8, "Class9": q9, "Class10": q10,
            "Class11": q11}


def _galaxy_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(index),)))


def simulate_votes(catalogue: pd.DataFrame, config: VoteConfig = VoteConfig(), *,
                   seed: int = 0) -> pd.DataFrame:
    """The 37 Galaxy Zoo vote fractions of simulated galaxies.

    Parameters
    ----------
    catalogue : pandas.DataFrame
        Parametric catalogue of :func:`galaxai.data.simulate.simulate`.
    config : VoteConfig
        Vote model; ``n_volunteers=None`` gives noise-free expected fractions.
    seed : int
        Seed of the volunteers (per galaxy, keyed on the catalogue ``index``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`~galaxai.data.gz_schema.GZ_COLUMNS` (float64), index = the catalogue
        ``index``; every answer set sums to its parent answer (:func:`tree_residuals`).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    probs = answer_probabilities(catalogue, config)
    n = len(catalogue)
    out = {}
    if config.n_volunteers is None:
        for q in _ORDER:
            parent = GZ_PARENTS[q]
            reach = np.ones(n) if parent is None else out[parent]
            for a in range(GZ_QUESTIONS[q]):
                out[f"{q}.{a + 1}"] = reach * probs[q][:, a]
    else:
        counts = np.zeros((n, len(GZ_COLUMNS)), dtype=np.int64)
        col = {c: i for i, c in enumerate(GZ_COLUMNS)}
        indices = catalogue["index"].to_numpy()
        for g in range(n):
            rng = _galaxy_rng(seed, indices[g])
            for q in _ORDER:
                parent = GZ_PARENTS[q]
                reach = config.n_volunteers if parent is None else counts[g, col[parent]]
                drawn = rng.multinomial(reach, probs[q][g])
                counts[g, col[f"{q}.1"]:col[f"{q}.1"] + GZ_QUESTIONS[q]] = drawn
        fractions = counts / float(config.n_volunteers)
        out = {c: fractions[:, i] for c, i in col.items()}
    return pd.DataFrame({c: out[c] for c in GZ_COLUMNS},
                        index=pd.Index(catalogue["index"].to_numpy(), name="index"))


def tree_residuals(votes: pd.DataFrame | Mapping[str, np.ndarray]) -> pd.Series:
    """Largest ``|Σ answers − parent answer|`` of each question over all galaxies.

    Parameters
    ----------
    votes : pandas.DataFrame or mapping
        The 37 columns (e.g. :func:`simulate_votes` or the Kaggle training table).

    Returns
    -------
    pandas.Series
        One value per question ``Class1`` … ``Class11`` (0 for a perfectly consistent table).
    """
    missing = [c for c in GZ_COLUMNS if c not in votes]
    if missing:
        raise ValueError(f"votes lack column(s) {missing[:5]}{' …' if len(missing) > 5 else ''}")
    res = {}
    for q, k in GZ_QUESTIONS.items():
        total = sum(np.asarray(votes[f"{q}.{a}"], dtype=float) for a in range(1, k + 1))
        parent = GZ_PARENTS[q]
        reach = 1.0 if parent is None else np.asarray(votes[parent], dtype=float)
        diff = np.abs(total - reach)
        res[q] = float(np.max(diff)) if np.size(diff) else 0.0
    return pd.Series(res, name="max_abs_residual")

