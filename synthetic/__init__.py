"""Synthetic probe tasks (generators only, no training code)."""
