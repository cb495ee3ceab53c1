"""galaxai.explain: relevance maps for any PyTorch discriminator or CNN.

Polarized-LRP (Li et al. 2020) and the "original LRP" baselines on zennit, gradient methods
(input gradient, SmoothGrad, integrated gradients, Grad-CAM), faithfulness and localisation
measures, explanations of one input across training checkpoints, and LRP of image-to-image
generators (:mod:`.generator_lrp`). Imports no other galaxai
subpackage; every function takes a ``torch.nn.Module`` and array-like images.
"""
from galaxai.explain.faithfulness import (
    aopc,
    pixel_flipping,
    random_order_curves,
    relevance_mass_accuracy,
    relevance_mass_ratio,
    relevance_rank_accuracy,
    sky_like,
    sky_statistics,
)
from galaxai.explain.generator_lrp import GeneratorLRP, generator_lrp, wrong_galaxy_share
from galaxai.explain.lrp import (
    LRP,
    LRP_RULES,
    PolarizedLRP,
    UnsupportedLayerError,
    lrp,
    polarized_lrp,
    register_lrp_rule,
)
from galaxai.explain.quality import (
    bootstrap_mean,
    decision_maps,
    faithfulness_scores,
    gini,
    map_similarity,
    noise_sensitivity,
    randomised_models,
)
from galaxai.explain.saliency import (
    METHODS,
    Attribution,
    grad_cam,
    input_gradient,
    integrated_gradients,
    register_method,
    smoothgrad,
)
from galaxai.explain.timeline import Timeline, explain_timeline

__all__ = [
    "Attribution",
    "METHODS",
    "register_method",
    "polarized_lrp",
    "PolarizedLRP",
    "lrp",
    "LRP",
    "generator_lrp",
    "GeneratorLRP",
    "wrong_galaxy_share",
    "LRP_RULES",
    "register_lrp_rule",
    "UnsupportedLayerError",
    "input_gradient",
    "smoothgrad",
    "integrated_gradients",
    "grad_cam",
    "pixel_flipping",
    "aopc",
    "random_order_curves",
    "relevance_mass_ratio",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "sky_like",
    "sky_statistics",
    "decision_maps",
    "faithfulness_scores",
    "gini",
    "randomised_models",
    "map_similarity",
    "noise_sensitivity",
    "bootstrap_mean",
    "explain_timeline",
    "Timeline",
]
