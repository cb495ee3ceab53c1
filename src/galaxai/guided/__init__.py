"""galaxai.guided: explanation-guided GAN training (xAI-GAN).

:mod:`galaxai.guided.core` holds the primitive ``g′ = g ⊙ (1 + α·M)`` (a tensor hook on the
generator's output), the explainers, gating, normalisation and controls; the deblender trainer
(:mod:`galaxai.train.gan`) uses it through ``GANTrainConfig.guide``.
:mod:`galaxai.guided.cyclegan` holds xAI-CycleGAN's saliency masks and gradient map (used by
:mod:`galaxai.train.cyclegan`). :mod:`galaxai.guided.experiment` runs the arms × seeds protocol
of ``specs/xai_guided_training.md`` for either trainer and :mod:`galaxai.guided.convergence`
compares the arms. The names are imported on first use, so ``import galaxai.guided`` (and the
CLI) stays light.
"""
from galaxai._lazy import lazy_exports

_LAZY = {name: "core" for name in ("Guide", "GuideConfig", "apply_control", "explanation_map",
                                   "guidance_mask", "scale_gradient")}
_LAZY.update({"run_experiment": "experiment", "TRAINERS": "experiment", "verdict": "convergence"})

__all__ = ["GuideConfig", "Guide", "scale_gradient", "explanation_map", "guidance_mask",
           "apply_control", "run_experiment", "TRAINERS", "verdict"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
