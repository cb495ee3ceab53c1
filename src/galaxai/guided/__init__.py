"""galaxai.guided: explanation-guided GAN training (xAI-GAN) and its controlled experiment.

:mod:`galaxai.guided.core` holds the primitive ``g′ = g ⊙ (1 + α·M)`` (a tensor hook on the
generator's output), the explainers, gating, normalisation and controls; the deblender trainer
(:mod:`galaxai.train.gan`) uses it through ``GANTrainConfig.guide``.
:mod:`galaxai.guided.experiment` runs the arms × seeds protocol of
``specs/xai_guided_training.md`` (imported on first use: it imports the trainer).
"""
from galaxai._lazy import lazy_exports
from galaxai.guided.core import (
    Guide,
    GuideConfig,
    apply_control,
    explanation_map,
    guidance_mask,
    scale_gradient,
)

__all__ = ["GuideConfig", "Guide", "scale_gradient", "explanation_map", "guidance_mask",
           "apply_control", "guided_experiment"]

__getattr__, __dir__ = lazy_exports(__name__, {"guided_experiment": "experiment"}, globals())
