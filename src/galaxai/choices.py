"""The named choices of galaxai's options, in one import-free module.

The modules that implement each choice import their tuple from here, and the CLI builds its
``click.Choice`` lists from the same names, so ``galaxai --help`` stays fast (no torch import)
and a new choice is added in one place.
"""
__all__ = ["DEFAULT_MODEL", "PRESETS", "AUGMENT_PRESETS", "PIXEL_LOSSES", "PADDINGS", "MERGES", "SIM_MODES", "SPLITS", "COMPARED_METHODS",
           "ARCHITECTURES", "ACTIVATIONS", "LAYOUTS", "BAR_ALGORITHMS", "ARTEFACTS",
           "GUIDE_EXPLAINERS", "GUIDE_NORMALISE", "GUIDE_APPLY_TO", "GUIDE_CONTROLS", "GUIDE_ARMS",
           "GUIDE_TRAINERS",
           "CYCLEGAN_MASK_SPACES", "CYCLEGAN_ARMS", "CYCLEGAN_POOLS", "CYCLEGAN_DIRECTIONS",
           "MAP_POLARITIES", "STRETCHES", "SEQUENTIAL_CMAPS", "DIVERGING_CMAPS"]

#: The shipped model galaxai.deblend and the CLI use when no checkpoint is named
#: (galaxai/weights/deblender_<name>; README, "Real skies").
DEFAULT_MODEL: str = "realsky3"
#: Config presets of every configurable part.
PRESETS: tuple[str, ...] = ("paper", "small", "tiny")
#: Strengths of the random survey look (galaxai.data.augment.DisplayAugment.preset).
AUGMENT_PRESETS: tuple[str, ...] = ("full", "mild")
#: Pixel terms of the deblender's generator loss (galaxai.train.gan.pixel_loss).
PIXEL_LOSSES: tuple[str, ...] = ("mse", "log-mse")
#: Fill of pixels warped in from outside B's frame (galaxai.data.blend).
PADDINGS: tuple[str, ...] = ("zero", "noise", "reflect")
#: How A and B are merged into a blend.
MERGES: tuple[str, ...] = ("max", "sum")
#: Simulator modes (galaxai.data.simulate).
SIM_MODES: tuple[str, ...] = ("parametric", "cosmos")
#: Splits of the real-galaxy sources (galaxai.data.real).
SPLITS: tuple[str, ...] = ("train", "test", "all")
#: Attribution methods compared in figures and tables (keys of galaxai.workflows.COMPARED_METHODS).
COMPARED_METHODS: tuple[str, ...] = ("polarized_lrp", "lrp_zplus", "lrp_epsilon", "input_gradient",
                                     "smoothgrad", "integrated_gradients", "grad_cam")
#: Morphology classifiers (galaxai.models.morphology).
ARCHITECTURES: tuple[str, ...] = ("vgg16", "resnet50v2", "xception")
#: Their activation: the authors' swish, or the published networks' relu.
ACTIVATIONS: tuple[str, ...] = ("swish", "relu")
#: Their layer layout: the Keras applications or timm's.
LAYOUTS: tuple[str, ...] = ("keras", "timm")
#: Bar-length algorithms (galaxai.morphology.barlength).
BAR_ALGORITHMS: tuple[str, ...] = ("paper", "fast", "elongation")
#: Artefacts planted at exact locations for localisation checks (galaxai.diagnose.artefacts).
ARTEFACTS: tuple[str, ...] = ("zero_band", "ringing_patch", "colour_blotch", "phantom_boundary")
#: Explainers of explanation-guided training (galaxai.guided).
GUIDE_EXPLAINERS: tuple[str, ...] = ("saliency", "smoothgrad", "polarized_lrp")
#: Normalisation of guidance maps: per sample (galaxai), as the xAI-GAN code, or raw.
GUIDE_NORMALISE: tuple[str, ...] = ("sample", "repo", "none")
#: Which gradient the guidance scales: the adversarial term only, or the generator output's total.
GUIDE_APPLY_TO: tuple[str, ...] = ("adversarial", "total")
#: Controls replacing the map M: none, its mean everywhere, or shuffled across the batch.
GUIDE_CONTROLS: tuple[str, ...] = ("none", "constant", "shuffled")
#: Arms of `galaxai experiment guided`: no guidance, each explainer, and the two controls (the
#: saliency map replaced by its mean, or shuffled across the batch).
GUIDE_ARMS: tuple[str, ...] = ("baseline", *GUIDE_EXPLAINERS, "constant", "shuffled")
#: Trainers `galaxai experiment guided` can run (galaxai.guided.experiment.TRAINERS).
GUIDE_TRAINERS: tuple[str, ...] = ("deblender", "cyclegan")
#: Where Mask CycleGAN's soft mask multiplies the image: [-1, 1] values (as coded) or linear flux.
CYCLEGAN_MASK_SPACES: tuple[str, ...] = ("pixel", "flux")
#: Arms of the xAI-CycleGAN experiment: plain Mask CycleGAN, xAI-CycleGAN, and its two controls.
CYCLEGAN_ARMS: tuple[str, ...] = ("baseline", "saliency", "constant", "shuffled")
#: Reduction of a patch discriminator's logits to the scalar that saliency explains.
CYCLEGAN_POOLS: tuple[str, ...] = ("max", "mean")
#: Translation directions: A = simulated stamps, B = real stamps.
CYCLEGAN_DIRECTIONS: tuple[str, ...] = ("sim2real", "real2sim")
#: How the app shows a relevance map: evidence for D's own verdict (auto), for "real" (positive),
#: for "generated" (negative), or both signs on a symmetric diverging scale (signed).
MAP_POLARITIES: tuple[str, ...] = ("auto", "positive", "negative", "signed")
#: Display stretches of images in the app (galaxai.viz.render.stretch_image).
STRETCHES: tuple[str, ...] = ("asinh", "linear", "zscale")
#: Colour maps of unsigned maps, and of signed maps (centred on 0).
SEQUENTIAL_CMAPS: tuple[str, ...] = ("viridis", "magma", "inferno", "cividis", "gray")
DIVERGING_CMAPS: tuple[str, ...] = ("RdBu_r", "bwr", "coolwarm", "PuOr_r")
