"""galaxai.viz."""
