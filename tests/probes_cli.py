"""How tests start the CLI: ``python -m probes`` with the running interpreter.

A console-script path guess (``Path(sys.executable).parent / "probes"``) fails where the package is installed
outside a venv (seen on a GPU machine, where scripts land in another bin folder); ``-m`` always finds it.
"""

import sys

PROBES: list[str] = [sys.executable, "-m", "probes"]


def cli_ok(argv: list[str]) -> None:
    """Run the CLI in-process; it must succeed (typer's standalone mode ends with SystemExit(0))."""
    import pytest
    from probes.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code in (0, None)
