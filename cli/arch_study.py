"""`probes arch-study`: train the architecture study (library: `probes.studies.arch`), then draw its report,
heatmaps and curves through `probes.analysis` from the run directories (README "Architecture study")."""

from __future__ import annotations

import dataclasses
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

from .app import app
from .common import console, sigterm_as_interrupt, stdout_console


def _split(value: str, option: str, kind: type = str) -> tuple[Any, ...]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise UserError(f"{option} must name at least one value")
    try:
        return tuple(kind(v) for v in items)
    except ValueError:
        raise UserError(f"{option}: {value!r} is not a comma-separated list of {kind.__name__}") from None


@app.command("arch-study")
def arch_study(
    out: Annotated[Path, typer.Option(help="Report, heatmaps, curves and study.json go here.")] = Path(
        "figures/arch_study"
    ),
    runs_dir: Annotated[Path, typer.Option("--runs", help="Run directories (seeded model checkpoints beside it, "
                                           "in RUNS-models/).")] = Path("runs/arch_study"),
    models: Annotated[str, typer.Option(help="Comma-separated presets.")] = "pythia-tiny,mamba-tiny",
    lengths: Annotated[str, typer.Option(help="Comma-separated context lengths L.")] = "10,16",
    orders: Annotated[str, typer.Option(help="suffix and/or prefix.")] = "suffix,prefix",
    seeds: Annotated[str, typer.Option(help="Model seeds: each builds the whole model and the new rows.")] = "0,1,2,3,4",
    lrs: Annotated[str, typer.Option(help="Learning rates; each cell is reported at its best one.")] = "3e-4,1e-3,3e-3",
    max_steps: Annotated[int, typer.Option(help="Step budget per run.")] = 3000,
    eval_every: Annotated[int, typer.Option(help="Steps between held-out evaluations.")] = 30,
    eval_samples: Annotated[int, typer.Option(help="Held-out samples per evaluation.")] = 1000,
    n_train: Annotated[int, typer.Option(help="Training set size.")] = 200_000,
    stop_after_bands: Annotated[bool, typer.Option(help="Stop early only once every position band has reached "
                                                   "the threshold (the last band is then not censored).")] = True,
    workers: Annotated[int, typer.Option(help="Runs trained at once (one process each).")] = 2,
    threads: Annotated[int, typer.Option(help="Torch threads per worker.")] = 1,
    report_only: Annotated[bool, typer.Option(help="Train nothing: draw the report and figures from the runs "
                                              "finished so far (a study stopped part-way).")] = False,
) -> None:
    """Train presets over lengths x orders x lrs x model seeds, then report each cell at its best lr and draw.

    The report gives median steps to 0.95 with exact intervals at their real coverage, the learning order
    (censored bands named), the per-lr table and the paper's claims, beside heatmaps and curves. Re-running
    the same command skips finished runs and resumes interrupted ones.

    Example: probes arch-study --out figures/arch_study --runs runs/arch_study
    """
    from probes.studies.arch import StudyConfig, check_study_file, run_study

    cfg = StudyConfig(
        models=_split(models, "--models"), lengths=_split(lengths, "--lengths", int),
        orders=_split(orders, "--orders"), seeds=_split(seeds, "--seeds", int), lrs=_split(lrs, "--lrs", float),
        max_steps=max_steps, eval_every=eval_every, eval_samples=eval_samples, n_train=n_train,
        stop_after_bands=stop_after_bands,
    )  # fmt: skip
    check_study_file(cfg, runs_dir)
    if report_only:
        if not (runs_dir / "study.json").is_file():
            raise UserError(f"{runs_dir} holds no study (no study.json): run the study first")
        for path in write_outputs(cfg, runs_dir, out, None):
            console.print(f"wrote {path}")
        return
    t0 = time.perf_counter()
    n_runs = len(cfg.models) * len(cfg.lengths) * len(cfg.orders) * len(cfg.seeds) * len(cfg.lrs)
    done = 0

    def on_event(result: Any) -> None:
        nonlocal done
        done += 1
        steps = "" if result.steps_to_threshold is None else f" (0.95 at step {result.steps_to_threshold})"
        why = f": {result.error}" if result.error else ""
        console.print(f"[{done}/{n_runs}] {result.run_dir.name} {result.status}{steps}{why}")

    sigterm_as_interrupt()  # SIGTERM stops the workers gracefully (their runs end interrupted, resumable)
    results = run_study(cfg, runs_dir, workers=workers, threads=threads, on_event=on_event)
    failed = [r for r in results if r.status not in ("finished", "skipped")]
    train_wall = time.perf_counter() - t0
    written = write_outputs(cfg, runs_dir, out, train_wall)
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"arch-study: {len(results)} runs, {len(failed)} not finished; {time.perf_counter() - t0:.0f} s")
    if failed:
        raise typer.Exit(1)


def write_outputs(cfg: Any, runs_dir: Path, out: Path, train_wall: float | None) -> list[Path]:
    """Report, heatmaps per length, curves and ``study.json`` (command, machine, per-run outcome) in ``out``.
    ``train_wall``: the command's own training time; ``None`` for ``--report-only`` (the runs' summed wall
    times are recorded either way)."""
    from probes.analysis.curves import plot_curves
    from probes.analysis.figure import save_figure
    from probes.analysis.heatmap import plot_heatmaps
    from probes.analysis.report import build_report, rich_tables, write_report
    from probes.analysis.rundir import describe_unfinished, load_run, split_unfinished

    from probes.studies.arch import plan_study, read_labels

    labels = read_labels(runs_dir)
    planned = plan_study(cfg, runs_dir)
    begun = {r.planned.config.run_name: (r.planned.run_dir / "config.json").is_file() for r in planned}
    started = [_as_preset(load_run(r.planned.run_dir), labels) for r in planned if begun[r.planned.config.run_name]]
    runs, unfinished = split_unfinished(started)  # as `probes report`: a run still training has no final numbers
    not_started = [name for name, has_config in begun.items() if not has_config]
    if unfinished or not_started:
        console.print(f"arch-study: reporting {len(runs)} finished of {len(planned)} planned runs; "
                      f"{describe_unfinished(unfinished) if unfinished else ''}"
                      f"{'; ' if unfinished and not_started else ''}"
                      f"{f'{len(not_started)} not started' if not_started else ''}")
    written: list[Path] = []
    regime = (f"tiny from scratch ({', '.join(cfg.models)}); L = {'/'.join(map(str, cfg.lengths))}; "
              f"best of lrs {'/'.join(f'{x:g}' for x in cfg.lrs)}; {len(cfg.seeds)} model seeds; "
              f"budget {cfg.max_steps} steps")
    report = build_report(runs, best_lr=True, regime=regime)
    written += write_report(report, out)
    kept = {m.run.name for m in report.runs}
    runs = [r for r in runs if r.name in kept]  # figures show each cell at its best lr, as the report does
    for length in cfg.lengths:
        subset = [r for r in runs if r.length == length]
        if not subset:
            continue
        fig, _ = plot_heatmaps(subset)
        written += save_figure(fig, out / f"heatmaps_L{length}.png")
    if runs:
        fig, _ = plot_curves(runs)
        written += save_figure(fig, out / "curves.png")
    stdout = stdout_console()
    for table in rich_tables(report):
        stdout.print(table)
    env = runs[0].env if runs else {}
    best = {f"{g.key.model} L={g.key.length} {g.key.order}": g.runs[0].run.lr for g in report.groups if g.runs}
    command = shlex.join(["probes", *sys.argv[1:]])
    wall, redrawn = (None if train_wall is None else round(train_wall, 1)), {}
    if train_wall is None:  # --report-only: the command that trained the study and its wall time stay recorded
        previous = _read_json(out / "study.json")
        if previous.get("config") == cfg.to_dict() and previous.get("wall_time_s") is not None:
            command, wall, redrawn = previous["command"], previous["wall_time_s"], {"report_command": command}
    record = {
        "command": command,
        "config": cfg.to_dict(),
        "wall_time_s": wall,
        **redrawn,
        "runs_wall_time_s": round(sum(float((r.summary or {}).get("wall_time") or 0.0) for r in started), 1),
        "best_lr": best,
        "not_finished": sorted([r.name for r in unfinished] + not_started),
        "cpu_count": os.cpu_count(),
        "env": env,
        "runs": {
            r.name: {
                "preset": r.model, "model_seed": labels[r.name]["model_seed"], "length": r.length, "order": r.order,
                "lr": r.lr,
                **{k: (r.summary or {}).get(k) for k in ("status", "reached", "steps_to_threshold", "final_acc",
                                                         "best_acc", "steps_done", "wall_time", "mamba_path")},
            }
            for r in started
        },
    }  # fmt: skip
    atomic_write_json(out / "study.json", record)
    written.append(out / "study.json")
    return written


def _read_json(path: Path) -> dict[str, Any]:
    """``path`` as a JSON object, or ``{}`` when it is missing or not one (then nothing is carried over)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _as_preset(run: Any, labels: dict[str, dict[str, Any]]) -> Any:
    """The run with its model named by the preset (its config names the seeded checkpoint directory), so
    the three seeds of a preset form one group in the report and one cell in the heatmaps."""
    label = labels.get(run.name)
    if label is None:
        raise UserError(f"{run.path} is not a run of this study (not in study.json)")
    config = json.loads(json.dumps(run.config))
    config["model"]["checkpoint"] = config["model"]["name"]
    config["model"]["name"] = label["preset"]
    return dataclasses.replace(run, config=config)
