"""galaxai.models."""
