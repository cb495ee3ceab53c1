"""galaxai.data."""
