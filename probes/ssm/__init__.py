"""Fast state-space (Mamba) paths: a CPU selective scan and the dispatch between kernel paths."""
