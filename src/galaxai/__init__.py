"""galaxai: explainable GANs for galaxy images."""
__version__ = "0.1.0"
