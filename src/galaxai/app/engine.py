"""The app's functional core: images, deblender outputs, D's verdicts and relevance maps as PNG.

Everything is computed from registered ids (:mod:`galaxai.app.registry`) with the library's own
functions: :func:`galaxai.deblend` for outputs, the checkpoint's discriminator for verdicts, the
methods of :data:`galaxai.workflows.COMPARED_METHODS` (dispatched through
:data:`galaxai.explain.METHODS`) for maps, and :mod:`galaxai.viz.render` for colours.

Relevance maps are cached on disk, keyed by the SHA-256 of (checkpoint weights hash, image hash,
image kind, method and its parameters, computed polarity, galaxai version): a revisit, a new
colour map or another display polarity never recomputes a map. Each cached map is an ``.npz``
read with ``allow_pickle=False``.
"""
from __future__ import annotations

import hashlib
import io
import json
import threading
import warnings
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

import galaxai
from galaxai._atomic import atomic_write_bytes
from galaxai.app.registry import IMAGE_KINDS, Checkpoint, ImageSet, Registry
from galaxai.choices import DIVERGING_CMAPS, SEQUENTIAL_CMAPS

__all__ = ["Engine", "render_map", "render_image", "map_polarity", "network", "file_weights",
           "cache_key"]


@lru_cache(maxsize=8)
def network(kind: str, path: str, digest: str):
    """The checkpoint's discriminator (``kind="D"``) or generator (``"G"``), loaded once.

    ``digest`` (the weights' hash) is part of the cache key, so rewritten weights are reloaded.
    Callers that hook the network hold :attr:`Engine.lock`.
    """
    del digest
    from galaxai.train.checkpoints import load_discriminator, load_generator

    return (load_discriminator if kind == "D" else load_generator)(path)[0]


def map_polarity(polarity: str, p_real: float) -> int:
    """The sign of relevance a display polarity shows: +1 ("why real") or -1 ("why generated").

    ``auto`` shows the evidence for D's own verdict (+1 when ``p_real >= 0.5``), Polarized-LRP's
    rule; ``positive`` and ``negative`` force one sign.
    """
    if polarity == "positive":
        return 1
    if polarity == "negative":
        return -1
    return 1 if p_real >= 0.5 else -1


def render_map(relevance: np.ndarray, p_real: float, polarity: str, cmap: str) -> np.ndarray:
    """Colour one signed ``(H, W)`` map as RGB in [0, 1].

    ``signed``: both signs on a symmetric diverging scale centred on 0 (``cmap`` if diverging,
    else ``RdBu_r``). Otherwise the part of the chosen sign (:func:`map_polarity`), as a magnitude
    normalised to its own maximum, with ``cmap`` if sequential, else ``viridis``.
    """
    from galaxai.viz.render import heatmap, signed_heatmap

    if polarity == "signed":
        return signed_heatmap(relevance, cmap if cmap in DIVERGING_CMAPS else "RdBu_r")
    part = np.clip(map_polarity(polarity, p_real) * relevance, 0.0, None)
    return heatmap(part, cmap if cmap in SEQUENTIAL_CMAPS else "viridis")


def render_image(image: np.ndarray, stretch: str) -> bytes:
    """One channel-first ``(3, H, W)`` display image as PNG bytes after the display ``stretch``."""
    from galaxai.viz.render import png_bytes, stretch_image

    return png_bytes(stretch_image(np.moveaxis(image, 0, -1), stretch))


def cache_key(**parts: Any) -> str:
    """A short hash of JSON-able ``parts``: the cache keys and entity tags."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


class Engine:
    """Computes and caches what the server sends; one computation runs at a time.

    Parameters
    ----------
    registry : Registry
        The registered runs and image sets.
    cache_dir : path-like
        Folder of the on-disk map cache (created when needed).
    """

    def __init__(self, registry: Registry, cache_dir: str | Path) -> None:
        self.registry = registry
        self.cache_dir = Path(cache_dir)
        # Explainers and interventions attach hooks to the networks: one computation at a time.
        self.lock = threading.Lock()
        #: What the engine is computing now (``task``, ``done``, ``total``), for the page's progress bar.
        self.progress: dict[str, Any] = {"task": None, "done": 0, "total": 0}
        self._outputs: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._pngs: OrderedDict[str, bytes] = OrderedDict()
        self.computed = 0  # maps computed (not read from the cache) since start-up

    # ------------------------------------------------------------------ lookup
    def locate(self, run_id: str, iteration: int, set_id: str, index: int
               ) -> tuple[Checkpoint, ImageSet]:
        """The checkpoint and image set of a request; :class:`UnknownIdError` names what is unknown."""
        checkpoint = self.registry.run(run_id).checkpoint(iteration)
        images = self.registry.image_set(set_id)
        images.check_index(index)
        return checkpoint, images

    # ------------------------------------------------------------------ images
    def _deblended(self, checkpoint: Checkpoint, images: ImageSet, index: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        key = (checkpoint.digest, images.digests[index])
        if key not in self._outputs:
            # channel-first and contiguous, as the Units view's interventions feed the generator
            with self.lock:
                a, b = galaxai.deblend(images.blend[index:index + 1], checkpoint=checkpoint.path,
                                       device="cpu", channel_axis=1)
            self._outputs[key] = (a[0], b[0])
            while len(self._outputs) > 256:
                self._outputs.popitem(last=False)
        return self._outputs[key]

    def image(self, checkpoint: Checkpoint, images: ImageSet, index: int, kind: str) -> np.ndarray:
        """One ``(3, H, W)`` display image: the blend, a truth or a deblender output."""
        if kind == "blend":
            return images.blend[index]
        if kind in ("target_a", "target_b"):
            truth = getattr(images, kind)
            if truth is None:
                raise LookupError(f"image set {images.id!r} has no truth ({kind}); it was uploaded")
            return truth[index]
        if kind not in IMAGE_KINDS:
            raise LookupError(f"unknown image kind {kind!r}; choose one of {IMAGE_KINDS}")
        return self._deblended(checkpoint, images, index)[kind == "output_b"]

    def kinds(self, images: ImageSet) -> list[str]:
        """The image kinds this set has (uploads have no truths)."""
        return [k for k in IMAGE_KINDS if images.has_truth or not k.startswith("target")]

    def summary(self, checkpoint: Checkpoint, images: ImageSet, index: int) -> dict[str, Any]:
        """D's p(real) of each image, and the outputs' PSNR (dB) against the truths where known."""
        from galaxai.metrics import psnr

        import torch

        from galaxai.models.deblender import to_network

        kinds = self.kinds(images)
        stack = torch.from_numpy(to_network(np.stack([self.image(checkpoint, images, index, k)
                                                      for k in kinds])))
        # D was trained on the networks' range [-1, 1] (train/gan.py maps targets with to_network)
        with self.lock, torch.no_grad():
            model = network("D", str(checkpoint.path), file_weights(checkpoint))
            p = torch.sigmoid(model(stack).reshape(-1)).numpy()
        out: dict[str, Any] = {"p_real": {k: float(v) for k, v in zip(kinds, p)}, "psnr_db": None}
        if images.has_truth:
            out["psnr_db"] = {
                branch: float(psnr(self.image(checkpoint, images, index, f"output_{branch}")[None],
                                   self.image(checkpoint, images, index, f"target_{branch}")[None])[0])
                for branch in ("a", "b")}
        return out

    def image_etag(self, checkpoint: Checkpoint, images: ImageSet, index: int, kind: str,
                   stretch: str) -> str:
        """Entity tag of an image PNG: a hash of everything its bytes depend on."""
        weights = checkpoint.digest if kind.startswith("output") else None
        return cache_key(kind=kind, image=images.digests[index], weights=weights, stretch=stretch,
                         version=galaxai.__version__)

    def image_png(self, checkpoint: Checkpoint, images: ImageSet, index: int, kind: str,
                  stretch: str) -> bytes:
        """The image as PNG after the display ``stretch``."""
        etag = self.image_etag(checkpoint, images, index, kind, stretch)
        return self.png(etag, lambda: render_image(self.image(checkpoint, images, index, kind),
                                                    stretch))

    # ------------------------------------------------------------------ maps
    @staticmethod
    def _method(method: str, polarity: str) -> tuple[str, dict[str, Any]]:
        """Registry name and keyword arguments; Polarized-LRP computes the forced polarities."""
        from galaxai.workflows import COMPARED_METHODS

        _, name, kwargs = COMPARED_METHODS[method]
        if name == "polarized_lrp" and polarity in ("positive", "negative"):
            kwargs = {**kwargs, "polarity": polarity}
        return name, kwargs

    def map_key(self, checkpoint: Checkpoint, images: ImageSet, index: int, kind: str,
                method: str, polarity: str) -> str:
        """Cache key of a relevance map (the display polarity only counts where it changes the map)."""
        name, kwargs = self._method(method, polarity)
        weights = checkpoint.digest if kind.startswith("output") else file_weights(checkpoint)
        return cache_key(weights=weights, image=images.digests[index], kind=kind, method=name,
                         params=kwargs, version=galaxai.__version__)

    def relevance(self, checkpoint: Checkpoint, images: ImageSet, index: int, kind: str,
                  method: str, polarity: str) -> tuple[np.ndarray, float]:
        """D's signed ``(H, W)`` relevance map (channels summed) of one image, and its p(real)."""
        key = self.map_key(checkpoint, images, index, kind, method, polarity)
        path = self.cache_dir / key[:2] / f"{key}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as cached:
                    return cached["map"], float(cached["p_real"])
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)  # a damaged cache file is computed again
        import torch

        from galaxai.explain import METHODS
        from galaxai.models.deblender import to_network

        name, kwargs = self._method(method, polarity)
        x = torch.from_numpy(to_network(self.image(checkpoint, images, index, kind))[None].copy())
        with self.lock:
            model = network("D", str(checkpoint.path), file_weights(checkpoint))
            result = METHODS[name](model, x, **kwargs)
            self.computed += 1
        signed = result.signed()
        relevance = (signed.sum(1) if signed.ndim == 4 else signed)[0].numpy().astype(np.float32)
        p_real = float(result.scores[0])
        buf = io.BytesIO()
        np.savez(buf, map=relevance, p_real=np.float64(p_real))
        atomic_write_bytes(path, buf.getvalue())
        return relevance, p_real

    def map_etag(self, checkpoint: Checkpoint, images: ImageSet, index: int, kind: str, method: str,
                 polarity: str, cmap: str) -> str:
        """Entity tag of a map PNG: its cache key plus the display choices."""
        return cache_key(map=self.map_key(checkpoint, images, index, kind, method, polarity),
                         polarity=polarity, cmap=cmap)

    def map_png(self, checkpoint: Checkpoint, images: ImageSet, index: int, kind: str, method: str,
                polarity: str, cmap: str) -> bytes:
        """The relevance map as a coloured PNG (see :func:`render_map`)."""
        from galaxai.viz.render import png_bytes

        etag = self.map_etag(checkpoint, images, index, kind, method, polarity, cmap)

        def make() -> bytes:
            relevance, p_real = self.relevance(checkpoint, images, index, kind, method, polarity)
            return png_bytes(render_map(relevance, p_real, polarity, cmap))

        return self.png(etag, make)

    def png(self, etag: str, make) -> bytes:
        """The PNG of ``etag`` from the in-memory cache, made by ``make()`` on a miss."""
        if etag not in self._pngs:
            self._pngs[etag] = make()
            while len(self._pngs) > 1024:
                self._pngs.popitem(last=False)
        return self._pngs[etag]


def file_weights(checkpoint: Checkpoint, kind: str = "D") -> str:
    """Hash of one network's weights (``"D"``: maps of fixed images depend on D only)."""
    from galaxai.app.registry import file_digest

    return file_digest(checkpoint.path / f"{kind}.safetensors")[:32]
