"""The `probes` command: a thin typer app; every subcommand lives in its own module of this package.

Errors a user can cause (:class:`probes.errors.UserError`, task configuration errors, unreadable files) are
printed as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from probes.errors import UserError

app = typer.Typer(
    name="probes",
    help="Synthetic retrieval diagnostics for Transformer and state-space (Mamba) language models and VLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Synthetic retrieval diagnostics for Transformer and state-space (Mamba) language models and VLMs."""


def _register() -> None:
    """Import every command module; each adds its commands to ``app`` (or a sub-app) on import."""
    from . import analysis, bench, data, demo, status, synth, vlm, vlm_eval, vlm_study  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:  # TaskConfigError is a UserError
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":  # python -m probes.cli.app: use the canonical module, not this __main__ copy
    from probes.cli.app import main as canonical_main

    canonical_main()
