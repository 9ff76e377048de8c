"""probes: synthetic retrieval diagnostics for Transformer and state-space language models.

The top-level folders of the repository map under this namespace (SPEC §6):
``probes.synthetic`` (generators), ``probes.analysis`` (metrics, reports, figures), ``probes.cli`` (the CLI).
"""

__version__ = "0.1.0"
