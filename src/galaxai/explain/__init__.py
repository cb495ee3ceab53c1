"""galaxai.explain."""
