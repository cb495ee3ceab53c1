"""galaxai.morphology."""
