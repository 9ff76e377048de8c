"""`probes demo`: the offline main job — tiny Pythia vs tiny Mamba vs tiny hybrid, suffix and prefix, then
the paper's figures and report from the run directories.

Sizing (README "Offline demo"): tiny models trained from scratch do not learn L=50 within CPU minutes, while
a 2-layer d=64 GPT-NeoX learns L=10 in a few thousand steps; the demo therefore uses L=10, lr 1e-3 (from
scratch, not the paper's pretrained lrs), batch 64, at most 3000 steps, 1000 held-out samples per eval.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from probes.errors import UserError
from probes.io import atomic_write_json
from probes.train.config import TaskSpec, TrainConfig

from .app import app
from .common import console, progress_bar, stdout_console
from .synth import _sigterm_as_interrupt, validate_runs


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Where figures and the report go.")] = Path("figures/demo"),
    runs_dir: Annotated[Path, typer.Option("--runs", help="Where the run directories go.")] = Path("runs/demo"),
    length: Annotated[int, typer.Option("--len", help="Context length L.")] = 10,
    models: Annotated[str, typer.Option(help="Comma-separated backbones.")] = "pythia-tiny,mamba-tiny,hybrid-tiny",
    orders: Annotated[str, typer.Option(help="Comma-separated layouts.")] = "suffix,prefix",
    max_steps: Annotated[int, typer.Option(help="Step budget per run.")] = 3000,
    lr: Annotated[float, typer.Option(help="Learning rate (models start from scratch).")] = 1e-3,
    eval_samples: Annotated[int, typer.Option(help="Held-out samples per evaluation.")] = 1000,
    resume: Annotated[bool, typer.Option("--resume", help="Continue interrupted demo runs.")] = False,
) -> None:
    """Run the offline demo end to end and write curves, heatmaps and the report.

    Example: probes demo --out figures/demo --runs runs/demo
    """
    from probes.analysis.curves import plot_curves
    from probes.analysis.figure import save_figure
    from probes.analysis.heatmap import plot_heatmaps
    from probes.analysis.report import build_report, rich_tables, write_report
    from probes.analysis.rundir import load_runs

    from probes.train.grid import plan
    from probes.train.loop import run

    names = [m for m in models.split(",") if m]
    order_list = [o for o in orders.split(",") if o]
    if not names or not order_list:
        raise UserError("--models and --orders must each name at least one value")
    validate_runs(names, [], resume=False, overwrite=True)  # unknown models fail before any progress output
    train = TrainConfig(lr=lr, max_steps=max_steps, eval_samples=eval_samples, n_train=1_000_000)
    planned = []
    for order in order_list:
        task = TaskSpec("grounding", {"length": length, "order": order, "seed": 0})
        planned += plan(names, task, train, [lr], [0], "mean", runs_dir)
    _sigterm_as_interrupt()
    t0 = time.perf_counter()
    summaries: dict[str, dict[str, Any]] = {}
    with progress_bar("rate", "acc") as bar:
        for i, p in enumerate(planned, 1):
            job = bar.add_task(f"[{i}/{len(planned)}] {p.config.run_name}", total=max_steps, rate="", acc="")
            clock: dict[str, Any] = {"t": time.perf_counter(), "s": 0}

            def on_step(step: int, info: dict[str, Any], job: int = job, clock: dict = clock) -> None:
                if step % 10:
                    return
                now = time.perf_counter()
                rate = (step - clock["s"]) * train.batch_size / max(now - clock["t"], 1e-9)
                clock.update(t=now, s=step)
                acc = "" if info["acc"] is None else f"held-out acc {info['acc']:.3f}"
                bar.update(job, completed=step, rate=f"{rate:,.0f} samples/s", acc=acc)

            s = run(p.config, p.run_dir, resume=resume, overwrite=not resume, on_step=on_step)
            bar.update(job, completed=s["steps_done"], total=s["steps_done"])
            summaries[p.config.run_name] = s
    runs = load_runs([runs_dir])
    written: list[Path] = []
    fig, _ = plot_curves(runs)
    written += save_figure(fig, out / "curves.png")
    fig, _ = plot_heatmaps(runs, ncols=len(names))
    written += save_figure(fig, out / "heatmaps.png")
    report = build_report(runs)
    written += write_report(report, out)
    stdout = stdout_console()
    for table in rich_tables(report):
        stdout.print(table)
    wall = time.perf_counter() - t0
    written.append(_write_record(out / "demo.json", wall, summaries, planned[0].run_dir))
    console.print(f"demo finished in {wall:.0f} s; run directories in {runs_dir}")
    for path in written:
        console.print(f"wrote {path}")


def _write_record(path: Path, wall: float, summaries: dict[str, dict[str, Any]], a_run: Path) -> Path:
    """What produced the figures beside it: the exact command, the machine and every run's outcome, so a
    committed reference set says how to reproduce it and how long it took."""
    env = json.loads((a_run / "env.json").read_text())
    record = {
        "command": shlex.join(["probes", *sys.argv[1:]]),
        "wall_time_s": round(wall, 1),
        "cpu_count": os.cpu_count(),
        "env": env,
        "runs": {
            name: {k: s.get(k) for k in ("reached", "steps_to_threshold", "final_acc", "steps_done", "wall_time",
                                         "mamba_path")}
            for name, s in summaries.items()
        },
    }
    atomic_write_json(path, record)
    return path
