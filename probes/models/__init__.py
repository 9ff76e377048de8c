"""Backbone registry: HF causal LMs by id or local directory, and offline tiny presets."""
