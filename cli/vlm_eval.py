"""`probes vlm eval|gap|resolution` (registered on the vlm sub-app)."""

from .vlm import vlm_app  # noqa: F401
