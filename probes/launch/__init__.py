"""Launchers for grids of runs: local GPU queue and SLURM through submitit."""
