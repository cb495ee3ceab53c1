"""galaxai: explainable GANs for galaxy images.

The top-level face is deliberately small: :func:`deblend` (the shipped deblender),
:func:`discriminate` (its discriminator's p(real)) and the
subpackages ``data``, ``models``, ``train``, ``explain``, ``diagnose``, ``morphology``, ``viz``.
Torch is imported only when :func:`deblend` is first used, so ``import galaxai`` stays light.
"""
__version__ = "0.1.0"
__all__ = ["deblend", "discriminate", "__version__"]


def __getattr__(name: str):
    if name in ("deblend", "discriminate"):
        from galaxai import api

        return getattr(api, name)
    raise AttributeError(f"module 'galaxai' has no attribute {name!r}")
