"""galaxai.guided: explanation-guided GAN training (xAI-GAN).

:mod:`galaxai.guided.core` holds the primitive ``g′ = g ⊙ (1 + α·M)`` (a tensor hook on the
generator's output), the explainers, gating, normalisation and controls; the deblender trainer
(:mod:`galaxai.train.gan`) uses it through ``GANTrainConfig.guide``. :mod:`galaxai.guided.cyclegan`
holds xAI-CycleGAN's saliency masks and gradient map (used by :mod:`galaxai.train.cyclegan`).
"""
from galaxai.guided.core import (
    Guide,
    GuideConfig,
    apply_control,
    explanation_map,
    guidance_mask,
    scale_gradient,
)

__all__ = ["GuideConfig", "Guide", "scale_gradient", "explanation_map", "guidance_mask",
           "apply_control"]
