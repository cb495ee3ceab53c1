"""galaxai.train."""
