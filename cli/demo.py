"""`probes demo`: the offline main job — tiny Pythia vs tiny Mamba vs tiny hybrid, suffix and prefix, then
the paper's figures and report from the run directories.

Sizing (README "Offline demo"): tiny models trained from scratch do not learn L=50 within CPU minutes, while
a 2-layer d=64 GPT-NeoX learns L=10 in a few thousand steps; the demo therefore uses L=10, lr 1e-3 (from
scratch, not the paper's pretrained lrs), batch 64, at most 3000 steps, 1000 held-out samples per eval.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from probes.demo import DemoSpec, demo_record, run_demo
from probes.io import atomic_write_json

from .app import app
from .common import (
    PROGRESS_FIXED,
    console,
    progress_bar,
    run_label,
    sigterm_as_interrupt,
    stdout_console,
    step_metrics,
    validate_runs,
)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the figures and the report.")] = Path("out/demo"),
    runs_dir: Annotated[Path, typer.Option("--runs", help="Folder for the run directories.")] = Path("runs/demo"),
    length: Annotated[int, typer.Option("--len", help="Context length L.")] = 10,
    models: Annotated[str, typer.Option("--models", "--model", help="Comma-separated backbones.")] = "pythia-tiny,mamba-tiny,hybrid-tiny",
    orders: Annotated[str, typer.Option("--order", "--orders", help="Comma-separated layouts.")] = "suffix,prefix",
    max_steps: Annotated[int, typer.Option(help="Step budget per run.")] = 3000,
    lr: Annotated[float, typer.Option(help="Learning rate (models start from scratch).")] = 1e-3,
    eval_samples: Annotated[int, typer.Option(help="Held-out samples per evaluation.")] = 1000,
    resume: Annotated[bool, typer.Option("--resume", help="Continue interrupted demo runs.")] = False,
) -> None:
    """Run the offline demo end to end and write curves, heatmaps and the report.

    Example: probes demo --out out/demo --runs runs/demo
    """
    from probes.analysis.curves import plot_curves
    from probes.analysis.figure import save_figure
    from probes.analysis.heatmap import plot_heatmaps
    from probes.analysis.report import build_report, rich_tables, write_report
    from probes.analysis.rundir import load_runs

    spec = DemoSpec(runs_dir, tuple(m for m in models.split(",") if m), tuple(o for o in orders.split(",") if o),
                    length, max_steps, lr, eval_samples)
    planned = spec.plan()
    validate_runs(list(spec.models), [], resume=False, overwrite=True)  # unknown models fail before any output
    sigterm_as_interrupt()
    with progress_bar() as bar:

        def on_run(i: int, p: Any) -> Any:
            job = bar.add_task(run_label(i, len(planned), p.config, width=max(20, console.width - PROGRESS_FIXED)),
                               total=max_steps)

            def on_step(step: int, info: dict[str, Any]) -> None:
                if step % 10 and step != max_steps:
                    return
                bar.update(job, completed=step, metrics=step_metrics(info))

            return on_step

        t0 = time.perf_counter()
        summaries = run_demo(planned, resume=resume, on_run=on_run)
        wall_train = time.perf_counter() - t0
    runs = load_runs([runs_dir])
    written: list[Path] = []
    fig, _ = plot_curves(runs)
    written += save_figure(fig, out / "curves.png")
    fig, _ = plot_heatmaps(runs)  # rows = models, columns = orders (suffix, prefix)
    written += save_figure(fig, out / "heatmaps.png")
    report = build_report(runs)
    written += write_report(report, out)
    stdout = stdout_console()
    for table in rich_tables(report):
        stdout.print(table)
    env = json.loads((planned[0].run_dir / "env.json").read_text())
    record = demo_record(shlex.join(["probes", *sys.argv[1:]]), wall_train, summaries, env)
    atomic_write_json(out / "demo.json", record)
    written.append(out / "demo.json")
    console.print(f"demo trained in {wall_train:.0f} s; run directories in {runs_dir}")
    for path in written:
        console.print(f"wrote {path}")
