"""Vision-language models: Pythia-VL / Mamba-VL (README "VLM module")."""
