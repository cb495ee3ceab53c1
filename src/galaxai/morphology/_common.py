"""Pieces shared by the real-data steps: the input error, reading images, progress bars.

Private to :mod:`galaxai.morphology`. :class:`InputError` is public and re-exported by the
package (``galaxai.morphology.InputError``); :mod:`.catalogues`, :mod:`.classifier_runs`,
:mod:`.saliency_maps` and :mod:`.bars` raise it for unusable user input. The image helpers read
``<id>.jpg`` files of the Kaggle Galaxy Zoo layout and resize them for the classifier: nearest
for training (spec ``smoothgrad_barlength.md`` §1), bilinear for saliency (§2).

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from galaxai.data.sources import SourceError, read_jpeg

__all__ = ["InputError"]

#: Kaggle image folders searched for ``<id>.jpg``, and the image suffixes read.
_IMAGE_DIRS = ("images_training_rev1", "images_test_rev1")
_IMAGE_SUFFIXES = (".jpg", ".jpeg")


class InputError(ValueError):
    """Unusable user input; the message names the file and the fix.

    Attributes
    ----------
    param : str or None
        The argument at fault (``"data"``, ``"model"``, ``"ids"``, ``"maps"``, …), so a command
        line can name its option.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _resize(frame: np.ndarray, size: int, mode: str) -> np.ndarray:
    """One ``(H, W, 3)`` frame in [0, 1] → ``(3, size, size)`` float32.

    ``"nearest"`` samples pixel ``floor((i + ½)·H/size)`` like PIL/Keras ``load_img``
    (training, spec §1); ``"bilinear"`` is ``align_corners=False`` without anti-aliasing
    (saliency, spec §2).
    """
    t = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).permute(2, 0, 1)[None]
    if t.shape[-2:] != (size, size):
        if mode == "nearest":
            t = F.interpolate(t, size=(size, size), mode="nearest-exact")
        else:
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=False)
    return t[0].clamp(0.0, 1.0).numpy()


def _read_images(items: Sequence[tuple[int, Path]], size: int, mode: str,
                 skipped: list[dict[str, str]]) -> tuple[list[int], np.ndarray]:
    """Read and resize JPEGs; unreadable ones go to ``skipped`` (id, file, reason)."""
    ids, frames = [], []
    for gid, path in items:
        try:
            frame = read_jpeg(path, size=None)
        except SourceError as exc:
            skipped.append({"id": str(gid), "file": str(path), "reason": str(exc)})
            continue
        frames.append(_resize(frame, size, mode))
        ids.append(int(gid))
    stack = np.stack(frames) if frames else np.empty((0, 3, size, size), np.float32)
    return ids, stack


def _progress(iterable: Iterable, enabled: bool, **kwargs: Any):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
