"""Vision-language models: Pythia-VL / Mamba-VL (SPEC §4)."""
