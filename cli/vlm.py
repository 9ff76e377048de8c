"""`probes vlm …` commands: the sub-app lives here; train commands here, eval/gap in cli/vlm_eval.py."""

import typer

from .app import app

vlm_app = typer.Typer(help="Pythia-VL / Mamba-VL: train, evaluate, grounding-gap report.", no_args_is_help=True)
app.add_typer(vlm_app, name="vlm")
