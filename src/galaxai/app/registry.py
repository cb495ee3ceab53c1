"""What the app may serve: training runs and image sets registered at start-up, known by id.

Only ids cross the wire; a client never names a path. A run is a training run folder (its
``checkpoints/`` and ``stats.jsonl``); an image set is the first test blends of a blend store, a
few blends simulated at start-up when no store is given, or one file a user uploaded (kept in
memory, the oldest dropped first).
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from galaxai.dissect import Concepts

__all__ = ["Checkpoint", "Run", "ImageSet", "Registry", "UnknownIdError", "IMAGE_KINDS",
           "slug", "file_digest"]

#: The images of one blend the app shows: the input, both truths and both deblender outputs.
IMAGE_KINDS = ("blend", "target_a", "target_b", "output_a", "output_b")


class UnknownIdError(LookupError):
    """An id (run, checkpoint, image set, image) that is not registered; the message lists the known."""


def slug(name: str) -> str:
    """A URL-safe id from a folder name: lower case letters, digits, ``-`` and ``_``."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "run"


_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGEST_LOCK = threading.Lock()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered per (path, mtime, size) so each file is read once."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _DIGEST_LOCK:
        if key not in _DIGESTS:
            _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        return _DIGESTS[key]


@dataclass(frozen=True)
class Checkpoint:
    """One saved checkpoint of a run: its iteration and folder (``G``/``D.safetensors``)."""

    iteration: int
    path: Path

    @property
    def digest(self) -> str:
        """Content hash of both networks' weights: the cache key of everything computed from them."""
        parts = [file_digest(self.path / f"{net}.safetensors") for net in ("G", "D")]
        return hashlib.sha256("".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Run:
    """A registered training run folder."""

    id: str
    path: Path

    def checkpoints(self) -> list[Checkpoint]:
        """Every complete checkpoint, by iteration (listed anew on each call: a run may grow)."""
        from galaxai.train.checkpoints import list_checkpoints

        return [Checkpoint(r.iteration, r.path) for r in list_checkpoints(self.path)]

    def checkpoint(self, iteration: int) -> Checkpoint:
        """The checkpoint saved at ``iteration``; :class:`UnknownIdError` lists the saved ones."""
        for ref in self.checkpoints():
            if ref.iteration == iteration:
                return ref
        saved = ", ".join(str(c.iteration) for c in self.checkpoints()) or "none yet"
        raise UnknownIdError(f"run {self.id!r} has no checkpoint at iteration {iteration}; saved: {saved}")

    def image_size(self) -> int:
        """The models' stamp size, from the latest checkpoint's sidecar."""
        from galaxai.train.checkpoints import read_checkpoint_info

        return int(read_checkpoint_info(self.checkpoints()[-1].path)["model_config"]["image_size"])

    def stats(self) -> list[dict[str, Any]]:
        """The records of ``stats.jsonl`` (lines that are not JSON objects are skipped)."""
        path = self.path / "stats.jsonl"
        if not path.is_file():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interrupted write; the others still plot
            if isinstance(record, dict):
                records.append(record)
        return records


@dataclass(frozen=True)
class ImageSet:
    """Display images of blends, channel-first float32 in [0, 1]; truths where they are known.

    ``centre_b`` is B's centre (x, y) in pixels per blend, from the blend catalogue; ``concepts``
    the dissection concepts from component truth (:func:`galaxai.dissect.store_concepts`), for
    stores of simulated blends that keep it.
    """

    id: str
    name: str
    blend: np.ndarray
    target_a: np.ndarray | None = None
    target_b: np.ndarray | None = None
    digests: tuple[str, ...] = field(default=(), compare=False)
    centre_b: np.ndarray | None = field(default=None, compare=False)
    concepts: Concepts | None = field(default=None, compare=False)

    @classmethod
    def make(cls, id: str, name: str, blend: np.ndarray, target_a: np.ndarray | None = None,
             target_b: np.ndarray | None = None, centre_b: np.ndarray | None = None,
             concepts: Concepts | None = None) -> ImageSet:
        """Build a set and hash each image (blend and truths) for the cache keys."""
        arrays = [np.ascontiguousarray(a, dtype=np.float32) if a is not None else None
                  for a in (blend, target_a, target_b)]
        digests = tuple(hashlib.sha256(b"".join(a[i].tobytes() for a in arrays if a is not None))
                        .hexdigest()[:32] for i in range(len(arrays[0])))
        centre = None if centre_b is None else np.asarray(centre_b, np.float64).reshape(-1, 2)
        return cls(id, name, *arrays, digests=digests, centre_b=centre, concepts=concepts)

    def __len__(self) -> int:
        return len(self.blend)

    @property
    def has_truth(self) -> bool:
        return self.target_a is not None and self.target_b is not None

    def check_index(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise UnknownIdError(f"image set {self.id!r} has images 0 to {len(self) - 1}; got {i}")

    def resized(self, size: int) -> ImageSet:
        """The same set at ``size`` × ``size`` (central crop of the whole stamp, area/bilinear)."""
        from galaxai.data.blend import crop_and_resize

        if self.blend.shape[-1] == size:
            return self

        def fit(a):
            return None if a is None else crop_and_resize(a, size, crop=a.shape[-1])

        scale = size / self.blend.shape[-1]
        centre = None if self.centre_b is None else (self.centre_b + 0.5) * scale - 0.5
        concepts = None if self.concepts is None else replace(
            self.concepts, masks=crop_and_resize(self.concepts.masks.astype(np.float32), size,
                                                 crop=self.blend.shape[-1], resize="area") >= 0.5)
        return ImageSet.make(self.id, self.name, fit(self.blend), fit(self.target_a),
                             fit(self.target_b), centre, concepts)


def _store_set(id: str, path: Path, limit: int) -> ImageSet:
    from galaxai.data.store import BlendStore
    from galaxai.dissect import store_concepts

    store = BlendStore(path, split="test", verify=True, components=True)
    store = store if len(store) else BlendStore(path, verify=True, components=True)
    arrays = store.to_arrays(limit)
    n = len(arrays["blend"])
    catalogue = store.catalogue.iloc[:n]
    centre = catalogue[["x_b", "y_b"]].to_numpy() if {"x_b", "y_b"} <= set(catalogue) else None
    concepts = (store_concepts(store, range(n))[1]
                if any(k.startswith("comp_") for k in store.names) else None)
    return ImageSet.make(id, path.name, arrays["blend"], arrays["target_a"], arrays["target_b"],
                         centre, concepts)


def simulated_set(size: int, n: int = 8, seed: int = 2026) -> ImageSet:
    """``n`` blends of simulated galaxies (the ``tiny`` simulator, the paper's blend recipe)."""
    from galaxai.data.blend import BlendConfig, make_blends
    from galaxai.data.simulate import SimConfig, simulate

    galaxies = simulate(2 * n, seed=seed, config=SimConfig.preset("tiny"))
    batch = make_blends(galaxies.display[:n], galaxies.display[n:], seed=seed,
                        config=BlendConfig.preset("paper", out_size=size))
    return ImageSet.make("simulated", f"{n} simulated blends (seed {seed})", batch.blend,
                         batch.target_a, batch.target_b, batch.catalogue[["x_b", "y_b"]].to_numpy())


class Registry:
    """The runs and image sets a server may serve, by id.

    Parameters
    ----------
    runs : sequence of path-like
        Training run folders (each needs at least one checkpoint).
    stores : sequence of path-like
        Blend stores; their first ``limit`` test blends become image sets.
    limit : int
        Images taken from each store.
    uploads : int
        How many uploaded sets are kept (the oldest is dropped first).
    """

    def __init__(self, runs: Sequence[str | Path], stores: Sequence[str | Path] = (), *,
                 limit: int = 32, uploads: int = 16) -> None:
        self.runs: dict[str, Run] = {}
        for path in map(Path, runs):
            path = path.expanduser().resolve()
            run = Run(self._fresh_id(slug(path.name), self.runs), path)
            if not run.checkpoints():
                raise ValueError(f"{path} has no finished checkpoint; pass a training run folder "
                                 "(galaxai train --run DIR writes one)")
            self.runs[run.id] = run
        if not self.runs:
            raise ValueError("give at least one training run folder")
        self.size = next(iter(self.runs.values())).image_size()
        self.sets: dict[str, ImageSet] = {}
        for path in map(Path, stores):
            path = path.expanduser().resolve()
            set_id = self._fresh_id(slug(path.name), self.sets)
            self.sets[set_id] = _store_set(set_id, path, limit).resized(self.size)
        if not self.sets:
            self.sets["simulated"] = simulated_set(self.size)
        self._uploads: OrderedDict[str, ImageSet] = OrderedDict()
        self._max_uploads = uploads
        self._lock = threading.Lock()

    @staticmethod
    def _fresh_id(base: str, taken: dict) -> str:
        candidate, k = base, 2
        while candidate in taken:
            candidate, k = f"{base}-{k}", k + 1
        return candidate

    def run(self, run_id: str) -> Run:
        if run_id not in self.runs:
            raise UnknownIdError(f"unknown run {run_id!r}; registered: {', '.join(self.runs)}")
        return self.runs[run_id]

    def image_set(self, set_id: str) -> ImageSet:
        with self._lock:
            found = self.sets.get(set_id) or self._uploads.get(set_id)
        if found is None:
            raise UnknownIdError(f"unknown image set {set_id!r}; registered: {', '.join(self.sets)}"
                                 " (uploads get an id from POST /api/uploads)")
        return found

    def all_sets(self) -> list[ImageSet]:
        with self._lock:
            return list(self.sets.values()) + list(self._uploads.values())

    def add_upload(self, name: str, blend: np.ndarray) -> ImageSet:
        """Register an uploaded ``(N, 3, H, W)`` display stamp set (resized to the models' size)."""
        digest = hashlib.sha256(blend.tobytes()).hexdigest()[:12]
        upload = ImageSet.make(f"upload-{digest}", name, blend).resized(self.size)
        with self._lock:
            self._uploads[upload.id] = upload
            self._uploads.move_to_end(upload.id)
            while len(self._uploads) > self._max_uploads:
                self._uploads.popitem(last=False)
        return upload
