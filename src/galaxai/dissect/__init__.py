"""galaxai.dissect: GAN Dissection (Bau et al. 2019) for any PyTorch generator or CNN.

Concepts from simulation truth (or a flux segmenter), per-unit thresholds and dataset-level
IoU / IQR labels, the one intervention primitive ``r′ = r ⊙ (1 − a) + a ⊙ v`` through forward
hooks, ablation / insertion effects with curves against random unit sets, the ACE α
optimisation, artifact-unit scores, and the pipeline behind ``galaxai dissect``
(:mod:`.workflow`, report in :mod:`.gallery`). The names are imported on first use, so
``import galaxai.dissect`` (and the CLI) stays light. See ``specs/dissection.md`` and
``docs/dissect.md``.
"""
from galaxai._lazy import lazy_exports

_LAZY = {
    **dict.fromkeys(("SCORES", "artifact_overlap", "artifact_removal", "artifact_scores",
                     "artifact_top"), "artifacts"),
    **dict.fromkeys(("COMPONENTS", "REGIONS", "Concepts", "FluxSegmenter", "store_concepts",
                     "truth_concepts"), "concepts"),
    **dict.fromkeys(("SIZES", "EffectSet", "ablation_curve", "ace_alpha", "concept_branches",
                     "intervention_effects", "presence_values"), "effects"),
    **dict.fromkeys(("MODES", "Intervention", "deblender_layers", "intervene", "load_interventions",
                     "record", "resolve_layer", "rewrite", "save_interventions"), "hooks"),
    **dict.fromkeys(("FRACTIONS", "ConceptSet", "UnitDissection", "dissect_units", "iou_iqr",
                     "unit_thresholds"), "units"),
    **dict.fromkeys(("DissectConfig", "DissectionSets", "load_sets", "run_dissection"), "workflow"),
}

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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
