"""Benchmarks behind `probes bench`: ratios measured side by side in one run."""
