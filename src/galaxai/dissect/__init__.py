"""galaxai.dissect: GAN Dissection (Bau et al. 2019) for any PyTorch generator or CNN.

Concepts from simulation truth (or a flux segmenter), per-unit thresholds and dataset-level
IoU / IQR labels, the one intervention primitive ``r′ = r ⊙ (1 − a) + a ⊙ v`` through forward
hooks, ablation / insertion effects with curves against random unit sets, the ACE α
optimisation, artifact-unit scores, and the pipeline behind ``galaxai dissect``
(:mod:`.workflow`, report in :mod:`.gallery`). See ``specs/dissection.md`` and ``docs/dissect.md``.
"""
from galaxai.dissect.artifacts import SCORES, artifact_overlap, artifact_removal, artifact_scores, artifact_top
from galaxai.dissect.concepts import COMPONENTS, REGIONS, Concepts, FluxSegmenter, store_concepts, truth_concepts
from galaxai.dissect.effects import SIZES, EffectSet, ablation_curve, ace_alpha, concept_branches, intervention_effects, presence_values
from galaxai.dissect.hooks import (
    MODES,
    Intervention,
    deblender_layers,
    intervene,
    load_interventions,
    record,
    resolve_layer,
    rewrite,
    save_interventions,
)
from galaxai.dissect.units import FRACTIONS, ConceptSet, UnitDissection, dissect_units, iou_iqr, unit_thresholds

__all__ = [
    "SCORES",
    "artifact_overlap",
    "artifact_removal",
    "artifact_scores",
    "artifact_top",
    "DissectConfig",
    "DissectionSets",
    "load_sets",
    "run_dissection",
    "COMPONENTS",
    "REGIONS",
    "Concepts",
    "FluxSegmenter",
    "store_concepts",
    "truth_concepts",
    "SIZES",
    "EffectSet",
    "ablation_curve",
    "ace_alpha",
    "concept_branches",
    "intervention_effects",
    "presence_values",
    "MODES",
    "Intervention",
    "deblender_layers",
    "intervene",
    "load_interventions",
    "record",
    "resolve_layer",
    "rewrite",
    "save_interventions",
    "FRACTIONS",
    "ConceptSet",
    "UnitDissection",
    "dissect_units",
    "iou_iqr",
    "unit_thresholds",
]
