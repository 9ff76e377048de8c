"""The `probes` command: a thin typer app; every subcommand lives in its own module of this package.

Errors a user can cause (:class:`probes.errors.UserError`, task configuration errors, unreadable files) are
printed as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

try:  # newer typer vendors click (typer._click); older typer uses click itself
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - depends on the typer version
    from click.exceptions import ClickException, UsageError
from typer import Abort

from probes.errors import UserError


def _no_flag_metavar() -> None:
    """Boolean flags (``--help``, ``--version``, ``--grid``) take no value, so help shows no ``<bool>`` type
    for them (typer >= 0.20 prints one); value options keep theirs (``<int>``, ``<path>``)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - older typer prints no type for flags
        return
    shown = TyperOption.display_type_rich
    if getattr(shown, "_probes", False):
        return

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return shown(self, ctx)  # type: ignore[arg-type]

    display_type_rich._probes = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign,assignment]


_no_flag_metavar()

app = typer.Typer(
    name="probes",
    help="Synthetic retrieval diagnostics for Transformer and state-space (Mamba) language models and VLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("probes")
        except PackageNotFoundError:  # running from a source tree without an install
            from probes import __version__ as v
        print(f"probes {v}")
        raise typer.Exit()


def _mamba_path(value: str | None) -> str | None:
    """Force one Mamba-1 scan path for this command and every process it starts (through the environment
    variable that `probes.ssm.selfcheck` reads); a name it does not know is a usage error."""
    if value:
        import os

        from probes.ssm.selfcheck import ENV_VAR, SELECTABLE

        if value not in SELECTABLE:
            raise UserError(f"--mamba-path {value!r} is not a Mamba path; choose from {', '.join(SELECTABLE)}")
        from probes.ssm.selfcheck import unavailable
        from probes.train.engine import resolve_device

        device = resolve_device("auto")
        why = unavailable(value, device)
        if why:  # before any command prints; the self-check itself runs where the model is placed
            raise UserError(f"--mamba-path {value}: unavailable on {device} ({why})")
        os.environ[ENV_VAR] = value
    return value


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit."),
    mamba_path: str | None = typer.Option(
        None, "--mamba-path", callback=_mamba_path, metavar="NAME",
        help="force a Mamba scan path (probes-triton, probes-fast-scan, mamba-ssm, transformers-mambapy, "
             "transformers-sequential); one that fails its self-check is an error. Env: PROBES_MAMBA_PATH"),
) -> None:
    """Synthetic retrieval diagnostics for Transformer and state-space (Mamba) language models and VLMs."""


#: ``probes --help`` lists the commands in the order a researcher uses them: check the machine, try the demo,
#: make data, train, watch, report and draw, then the studies, benchmarks and the VLM module (typer lists
#: sub-apps such as ``bench`` and ``vlm`` after the plain commands, so they stay last).
WORKFLOW = ("doctor", "demo", "data", "synth", "status", "report", "curves", "heatmap", "arch-study", "bench",
            "vlm")


def _in_workflow_order(names: list[str]) -> list[int]:
    rank = {name: i for i, name in enumerate(WORKFLOW)}
    return sorted(range(len(names)), key=lambda i: (rank.get(names[i], len(WORKFLOW)), i))


def _register() -> None:
    """Import every command module; each adds its commands to ``app`` (or a sub-app) on import. Commands
    and sub-apps are then listed in :data:`WORKFLOW` order (unknown ones last, in import order)."""
    _import_commands()
    commands = app.registered_commands
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in commands]
    app.registered_commands = [commands[i] for i in _in_workflow_order(names)]
    groups = app.registered_groups
    gnames = [g.name or "" for g in groups]
    app.registered_groups = [groups[i] for i in _in_workflow_order(gnames)]


def _import_commands() -> None:
    from . import (  # noqa: F401
        analysis,
        arch_study,
        bench,
        data,
        demo,
        doctor,
        status,
        synth,
        vlm,
        vlm_eval,
        vlm_study,
    )


#: The arguments of this invocation (``probes synth --num-processes N`` re-runs them under accelerate).
ARGV: list[str] = []


def _secondary_rank() -> bool:
    """A process other than the main one of ``accelerate launch`` / ``torchrun``: its error lines repeat the
    main process's (decisions are taken there and shared), so only the main process prints them."""
    import os

    return int(os.environ.get("RANK", "0")) > 0


def main(argv: list[str] | None = None) -> None:
    _register()
    ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=argv, standalone_mode=False)
    except UsageError as exc:  # a bad flag or value: one line (plus where help is), not click's framed box
        if type(exc).__name__ == "NoArgsIsHelpError":  # `probes` or `probes vlm` alone: show the help
            print(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            raise SystemExit(0) from None
        command = exc.ctx.command_path if exc.ctx is not None else "probes"
        print(f"error: {exc.format_message()} (see: {command} --help)", file=sys.stderr)
        raise SystemExit(2) from None
    except ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except Abort:
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except UserError as exc:  # TaskConfigError is a UserError
        if not _secondary_rank():
            print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValidationError as exc:  # a pydantic config built straight from options
        from probes.train.config import validation_message

        print(f"error: invalid option {validation_message(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)  # like click's standalone mode: always exit


if __name__ == "__main__":  # python -m probes.cli.app: use the canonical module, not this __main__ copy
    from probes.cli.app import main as canonical_main

    canonical_main()
