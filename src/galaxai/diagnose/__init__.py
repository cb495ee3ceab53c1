"""galaxai.diagnose."""
