"""`probes bench` commands (registered on import by cli.app)."""

from .app import app  # noqa: F401
