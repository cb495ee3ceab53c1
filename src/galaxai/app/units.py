"""The Units view's core: GAN Dissection of a checkpoint's generator on a registered image set.

Everything goes through :mod:`galaxai.dissect`. Concepts come from the set's component truth where
it has some (simulated stores), else from the flux segmenter on the two targets, else (uploads)
from the flux segmenter on the blend. The set's first half fixes the unit thresholds and its
second half is dissected: thresholds come from their own images, as the spec asks.

Unit tables are cached on disk as JSON, keyed by the SHA-256 of (generator weights hash, the set's
image hashes, layer, concept source, parameters, galaxai version). Galleries and interventions
need a forward pass on a few images and are computed on request; :attr:`Engine.progress` says how
far a dissection has come.
"""
from __future__ import annotations

import base64
import json
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import galaxai
from galaxai._atomic import atomic_write_bytes
from galaxai.app.engine import Engine, cache_key, file_weights, network, render_image
from galaxai.app.registry import Checkpoint, ImageSet
from galaxai.dissect import (ConceptSet, Concepts, EffectSet, FluxSegmenter, Intervention,
                             deblender_layers, dissect_units, intervention_effects, record)
from galaxai.models.deblender import from_network

__all__ = ["Units", "GALLERY_SIZE", "LAYER_PATTERN"]

#: Images in a unit's gallery (the top ones of the dissected half by the unit's spatial maximum).
GALLERY_SIZE = 8
#: Layer names: dotted identifiers (``root.3``), never ``..``.
LAYER_PATTERN = r"^[A-Za-z0-9_]{1,40}(\.[A-Za-z0-9_]{1,40}){0,4}$"
_QUANTILE = 0.99  # the insertion value offered per unit (GANPaint's "draw" level)


def _finite(x: Any) -> float | None:
    """``x`` as a float, or ``None`` where it is NaN or infinite (JSON has neither)."""
    x = float(x)
    return x if np.isfinite(x) else None


def _display(v: torch.Tensor) -> torch.Tensor:
    """Generator output to display values, as :func:`galaxai.deblend` returns them."""
    return from_network(v).clamp(0, 1)


def _rows(concepts: Concepts, rows) -> Concepts:
    """The concepts of some images of a set."""
    return Concepts(concepts.names, concepts.categories, concepts.masks[rows])


class Units:
    """Unit tables, galleries and interventions of registered checkpoints and image sets.

    Parameters
    ----------
    engine : Engine
        Supplies the registry, the cache folder, the network lock and the progress record.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._layers: dict[str, list[tuple[str, int]]] = {}
        self._concepts: OrderedDict[tuple[str, ...], tuple[str, Concepts]] = OrderedDict()

    def generator(self, checkpoint: Checkpoint) -> torch.nn.Module:
        """The checkpoint's generator (cached; hold :attr:`Engine.lock` while hooking it)."""
        return network("G", str(checkpoint.path), file_weights(checkpoint, "G"))

    def layers(self, checkpoint: Checkpoint) -> list[tuple[str, int]]:
        """The generator's dissectable layers (the spec's names) and their unit counts."""
        digest = file_weights(checkpoint, "G")
        if digest not in self._layers:
            model = self.generator(checkpoint)
            names = list(deblender_layers(model))
            size = self.engine.registry.size
            with self.engine.lock, torch.no_grad(), record(model, names) as seen:
                model(torch.zeros(1, model.config.channels, size, size))
            self._layers[digest] = [(n, int(seen[n].shape[1])) for n in names]
        return self._layers[digest]

    def units_of(self, checkpoint: Checkpoint, layer: str) -> int:
        """Number of units of ``layer``; :class:`LookupError` lists the layers."""
        found = dict(self.layers(checkpoint))
        if layer not in found:
            raise LookupError(f"the generator has no layer {layer!r}; choose one of "
                              f"{', '.join(found)}")
        return found[layer]

    def concepts(self, images: ImageSet) -> tuple[str, Concepts]:
        """Where the set's concepts come from (``truth`` / ``flux: targets`` / ``flux: blend``)
        and the :class:`~galaxai.dissect.Concepts`."""
        if images.digests not in self._concepts:
            segmenter = FluxSegmenter()
            if images.concepts is not None:
                found = ("truth", images.concepts)
            elif images.has_truth and images.centre_b is not None:
                found = ("flux: targets", segmenter.regions(images.target_a, images.target_b,
                                                            images.centre_b))
            else:
                hard, _ = segmenter.segment(torch.from_numpy(images.blend))
                masks = torch.cat([hard, ~hard], dim=1).numpy()
                found = ("flux: blend", Concepts(("source", "background"), ("region", "region"),
                                                 masks))
            self._concepts[images.digests] = found
            while len(self._concepts) > 32:  # uploads come and go
                self._concepts.popitem(last=False)
        return self._concepts[images.digests]

    @staticmethod
    def halves(images: ImageSet) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the threshold set (first half) and of the dissection set (second half)."""
        n = len(images)
        if n < 2:
            raise ValueError(f"image set {images.id!r} has {n} image; dissection needs at least "
                             "2 (one half sets the thresholds, the other is dissected)")
        return np.arange(n // 2), np.arange(n // 2, n)

    # ------------------------------------------------------------------ unit tables
    def table_key(self, checkpoint: Checkpoint, images: ImageSet, layer: str) -> str:
        """Cache key of a unit table."""
        return cache_key(generator=file_weights(checkpoint, "G"), images=images.digests,
                         layer=layer, concepts=self.concepts(images)[0],
                         params={"split": "halves", "threshold": "iqr", "value": _QUANTILE},
                         version=galaxai.__version__)

    def table(self, checkpoint: Checkpoint, images: ImageSet, layer: str) -> dict[str, Any]:
        """The unit table of ``layer`` on ``images`` (from the disk cache when there).

        Returns
        -------
        dict
            ``layer``, ``concepts`` (their source), ``threshold_images``, ``dissection_images``
            and ``units``: per unit ``unit, threshold, label, iou, iqr, interpretable`` and
            ``value`` (its 0.99 quantile on the dissected images: a level to insert it at).
        """
        self.units_of(checkpoint, layer)  # an unknown layer raises LookupError
        key = self.table_key(checkpoint, images, layer)
        path = self.engine.cache_dir / "units" / key[:2] / f"{key}.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)  # a damaged cache file is computed again
        table = self._dissect(checkpoint, images, layer)
        atomic_write_bytes(path, json.dumps(table).encode())
        return table

    def _dissect(self, checkpoint: Checkpoint, images: ImageSet, layer: str) -> dict[str, Any]:
        source, concepts = self.concepts(images)
        first, second = self.halves(images)
        blends = torch.from_numpy(images.blend)
        thresholds = ConceptSet(blends[first], _rows(concepts, first))
        dissection = ConceptSet(blends[second], _rows(concepts, second))
        model = self.generator(checkpoint)
        progress = self.engine.progress

        def forward(net, x):
            net(x)
            progress["done"] += len(x)

        with self.engine.lock:
            # passes: quantiles (at most 200 images) and tables on the first half; IoU and the
            # insertion values on the second
            progress.update(task=f"dissecting {layer}", done=0,
                            total=min(200, len(first)) + len(first) + 2 * len(second))
            try:
                result = dissect_units(model, thresholds, dissection, [layer], forward=forward)
                r = self._activations(model, images.blend[second], layer)
                progress["done"] += len(second)
            finally:
                progress.update(task=None, done=0, total=0)
        values = torch.quantile(r.transpose(0, 1).flatten(1), _QUANTILE, dim=1).numpy()
        units = [{"unit": int(row.unit), "threshold": _finite(row.threshold), "label": row.label,
                  "iou": _finite(row.iou), "iqr": _finite(row.iqr),
                  "interpretable": bool(row.interpretable), "value": _finite(values[row.unit])}
                 for row in result.units.itertuples()]
        return {"layer": layer, "concepts": source, "threshold_images": len(first),
                "dissection_images": len(second), "units": units}

    @staticmethod
    def _activations(model: torch.nn.Module, blends: np.ndarray, layer: str) -> torch.Tensor:
        """Featuremaps ``(N, d, H, W)`` of ``layer`` at image resolution (call under the lock)."""
        with torch.no_grad(), record(model, [layer]) as seen:
            model(torch.from_numpy(blends))
        r = seen[layer].float()
        if r.shape[-2:] != blends.shape[-2:]:
            r = F.interpolate(r, size=blends.shape[-2:], mode="bilinear", align_corners=False)
        return r

    # ------------------------------------------------------------------ galleries
    def gallery_etag(self, checkpoint: Checkpoint, images: ImageSet, layer: str, unit: int,
                     kind: str, stretch: str) -> str:
        """Entity tag of a unit's gallery PNG."""
        return cache_key(table=self.table_key(checkpoint, images, layer), unit=unit, kind=kind,
                         stretch=stretch)

    def gallery_png(self, checkpoint: Checkpoint, images: ImageSet, layer: str, unit: int,
                    kind: str, stretch: str) -> bytes:
        """The unit's top images in a row, the region above its threshold outlined.

        The dissected half of the set is ranked by the unit's spatial maximum; each tile is the
        image ``kind`` (blend, a truth or an output) after the display ``stretch``.
        """
        d = self.units_of(checkpoint, layer)
        if not 0 <= unit < d:
            raise LookupError(f"layer {layer!r} has units 0 to {d - 1}; got {unit}")

        def make() -> bytes:
            from galaxai.viz.render import montage, outline, png_bytes, stretch_image

            threshold = self.table(checkpoint, images, layer)["units"][unit]["threshold"]
            _, second = self.halves(images)
            with self.engine.lock:
                r = self._activations(self.generator(checkpoint), images.blend[second], layer)
            r = r[:, unit].numpy()
            top = np.argsort(-r.reshape(len(r), -1).max(axis=1), kind="stable")[:GALLERY_SIZE]
            level = np.inf if threshold is None else threshold
            tiles = [outline(stretch_image(np.moveaxis(
                self.engine.image(checkpoint, images, int(second[i]), kind), 0, -1), stretch),
                r[i] > level) for i in top]
            return png_bytes(montage(tiles, ncols=len(tiles), pad=1))

        return self.engine.png(self.gallery_etag(checkpoint, images, layer, unit, kind, stretch),
                               make)

    # ------------------------------------------------------------------ interventions
    def intervene(self, checkpoint: Checkpoint, images: ImageSet, index: int,
                  interventions: Sequence[Intervention], stretch: str = "asinh") -> dict[str, Any]:
        """Both outputs of one blend before and after ``interventions``, and their effects.

        Returns
        -------
        dict
            ``concepts`` (their source); ``before`` and ``after``: ``output_a`` / ``output_b`` as
            PNG data URLs; ``share_removed``: per region concept (``galaxy_A``, ``galaxy_B``;
            ``source`` for uploads) the share of its flux that the intervention removes from the
            branch that should hold it; ``leak`` (flux of the other galaxy rising in each branch)
            and ``dpsnr_db`` / ``dssim`` per branch where the truths are known, else ``None``.

        Raises
        ------
        ValueError
            An unknown layer, a unit out of range, a bad mask, or outputs that are not finite.
        """
        layers = dict(self.layers(checkpoint))
        for item in interventions:
            if item.layer not in layers:
                raise ValueError(f"the generator has no layer {item.layer!r}; choose one of "
                                 f"{', '.join(layers)}")
            if max(item.units) >= layers[item.layer]:
                raise ValueError(f"layer {item.layer!r} has units 0 to {layers[item.layer] - 1}; "
                                 f"got unit {max(item.units)}")
        source, concepts = self.concepts(images)
        row = slice(index, index + 1)
        targets = [images.target_a[row], images.target_b[row]] if images.has_truth else None
        data = EffectSet(torch.from_numpy(images.blend[row]), _rows(concepts, row), targets,
                         to_display=_display)
        regions = [c for c in ("galaxy_A", "galaxy_B", "source") if c in concepts.names]
        model = self.generator(checkpoint)
        with self.engine.lock:
            before = data.outputs(model)
            after = data.outputs(model, interventions)
            if not all(torch.isfinite(o).all() for o in after):
                raise ValueError("the intervention drives the outputs to non-finite values; "
                                 "insert a smaller value")
            effects = {c: intervention_effects(model, data, interventions, c, baseline=before)
                       for c in regions}
        first = effects[regions[0]]

        def urls(outputs):
            return {f"output_{b}": "data:image/png;base64," + base64.b64encode(
                render_image(o[0].numpy(), stretch)).decode() for b, o in zip("ab", outputs)}

        def per_branch(name):
            return ({b: _finite(first[f"{name}_{j}"]) for j, b in enumerate("ab")}
                    if f"{name}_0" in first else None)

        leak = ({"b_into_a": _finite(first["leak_b_into_a"]),
                 "a_into_b": _finite(first["leak_a_into_b"])} if "leak_b_into_a" in first else None)
        return {"concepts": source, "before": urls(before), "after": urls(after),
                "share_removed": {c: _finite(e["share_removed"]) for c, e in effects.items()},
                "leak": leak, "dpsnr_db": per_branch("dpsnr"), "dssim": per_branch("dssim")}
