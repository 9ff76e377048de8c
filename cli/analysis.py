"""`probes heatmap|curves|report`: figures and tables from run directories (registered on import by cli.app).

Every run is loaded and validated before anything is written, so a corrupt run directory ends the command
with one line on stderr (exit 2) and no output file. Plotting modules (matplotlib, seaborn) are imported
inside the commands so that `probes --help` and unrelated commands do not pay for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from probes.analysis.rundir import Run, describe_unfinished, load_runs, split_unfinished
from probes.analysis.select import FIELDS, parse_selectors, select_runs

from probes.errors import UserError

from .app import app
from .common import console, stdout_console

RunsArg = Annotated[
    list[Path],
    typer.Argument(help="Run directories, or directories holding many (a grid); searched recursively."),
]
SelectOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--select",
        help="Only runs with KEY=VALUE (repeatable; VALUE may be a comma list). Keys: "
        + ", ".join(FIELDS)
        + ".",
        metavar="KEY=VALUE",
    ),
]


UnfinishedOpt = Annotated[
    bool,
    typer.Option("--include-unfinished", help="Also use runs that have not ended (running, dead, interrupted, "
                 "stopped); by default they are left out, with a warning naming them."),
]


def _load(paths: list[Path], select: list[str] | None = None, include_unfinished: bool = False) -> list[Run]:
    """All runs, validated, then filtered by ``--select``; no progress bar (loading takes well under a
    second per hundred runs, and an error must stay the only line on stderr). Runs that have not ended are
    left out unless asked for, with one ``warning:`` line either way: a run at step 15 of 150 would count in
    a median as "not reached by step 15"."""
    selection = parse_selectors(select or [])  # a bad selector fails before any file is read
    runs = select_runs(load_runs(paths), selection)
    done, unfinished = split_unfinished(runs)
    if not unfinished:
        return runs
    if include_unfinished:
        console.print(f"warning: including {describe_unfinished(unfinished)}; their numbers are provisional "
                      "(marked by their state in the report)")
        return runs
    if not done:
        raise UserError(f"no finished run: {describe_unfinished(unfinished)}; pass --include-unfinished to use them")
    console.print(f"warning: left out {describe_unfinished(unfinished)}; --include-unfinished uses them")
    return done


def _threshold(value: float | None, flag: str) -> float | None:
    if value is not None and not 0 < value <= 1:
        raise UserError(f"{flag} must be in (0, 1] (got {value})")
    return value


@app.command("heatmap")
def heatmap(
    runs: RunsArg,
    out: Annotated[Path, typer.Option("--out", help="Output .png; the .pdf is written beside it.")] = Path(
        "out/heatmap.png"
    ),
    select: SelectOpt = None,
    threshold: Annotated[
        float | None, typer.Option(help="Threshold that picks a cell's best lr (default: the runs' own).")
    ] = None,
    include_unfinished: UnfinishedOpt = False,
) -> None:
    """Per-position accuracy heatmaps (paper Fig. 7/12): rows = models, columns = orders, x = 0–100 % of steps.

    A cell shows the per-position median over its init seeds, at its best lr (fewest median steps); the
    command prints, per cell with several lrs, which lr it drew and which runs it left out.

    Grey: a position with no held-out sample. Blank: after the run stopped.

    Example: probes heatmap runs/L200 --select lr=1e-4 --out out/heat.png
    """
    from probes.analysis.figure import output_paths, save_figure
    from probes.analysis.heatmap import plot_heatmaps

    output_paths(out)  # reject a bad --out before any work
    fig, panels = plot_heatmaps(_load(runs, select, include_unfinished), threshold=_threshold(threshold, "--threshold"))
    for panel in panels:
        if panel.note:
            console.print(f"heatmap: {panel.note}")
    for path in save_figure(fig, out):
        console.print(f"wrote {path}")


@app.command("curves")
def curves(
    runs: RunsArg,
    out: Annotated[Path, typer.Option("--out", help="Output .png; the .pdf is written beside it.")] = Path(
        "out/curves.png"
    ),
    threshold: Annotated[
        float | None, typer.Option(help="Threshold line (default: the runs' configured threshold).")
    ] = None,
    select: SelectOpt = None,
    best_lr: Annotated[
        bool, typer.Option("--best-lr", help="Per model and panel, only the lr with the fewest median steps (printed, with what it left out).")
    ] = False,
    include_unfinished: UnfinishedOpt = False,
) -> None:
    """Held-out accuracy vs % of training steps (paper Fig. 6/11): colour = model, style = lr, one panel per length.

    Each model x lr is the median over its init seeds with a min–max band.

    Example: probes curves runs/L200 --select order=suffix --best-lr
    """
    from probes.analysis.curves import plot_curves
    from probes.analysis.figure import output_paths, save_figure

    output_paths(out)
    loaded = _load(runs, select, include_unfinished)
    t = _threshold(threshold, "--threshold")
    fig, _ = plot_curves(loaded, threshold=t, best_lr=best_lr)
    if best_lr:  # say which lr each model x panel kept and what it left out
        from probes.analysis.aggregate import best_lr as pick
        from probes.analysis.figure import selection_note

        groups: dict[tuple[str, str, int, str], list[Run]] = {}
        for r in loaded:
            groups.setdefault((r.task, r.order, r.length, r.model), []).append(r)
        for group in groups.values():
            note = selection_note(group, pick(group, t), t)
            if note:
                console.print(f"curves: {note}")
    for path in save_figure(fig, out):
        console.print(f"wrote {path}")


@app.command("report")
def report(
    runs: RunsArg,
    out: Annotated[
        Path, typer.Option("--out", help="Output directory for report.md and the CSV files.")
    ] = Path("out/report"),
    threshold: Annotated[
        float | None, typer.Option(help="Accuracy threshold (default: each run's configured threshold).")
    ] = None,
    band_threshold: Annotated[
        float | None, typer.Option(help="Threshold for the learning-order bands (default: --threshold).")
    ] = None,
    band_criterion: Annotated[
        str,
        typer.Option(help="mean: band mean accuracy ≥ threshold (default); all: every position in the band."),
    ] = "mean",
    select: SelectOpt = None,
    ci_level: Annotated[
        float, typer.Option(help="Nominal level of the exact interval of median steps (printed at its real coverage).")
    ] = 0.95,
    include_unfinished: UnfinishedOpt = False,
) -> None:
    """Steps/samples to threshold, medians with exact intervals, SSM/Transformer ratio, learning order, claims.

    Writes report.md, report.csv (per run), report_groups.csv and report_ratios.csv into --out.

    Example: probes report runs/ --out out/report
    """
    from probes.analysis.report import build_report, rich_tables, write_report

    if band_criterion not in ("mean", "all"):
        raise UserError(f"--band-criterion must be mean or all (got {band_criterion!r})")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if not 0 < ci_level < 1:
        raise UserError(f"--ci-level must be in (0, 1) (got {ci_level})")
    rep = build_report(
        _load(runs, select, include_unfinished),
        threshold=_threshold(threshold, "--threshold"),
        band_threshold=_threshold(band_threshold, "--band-threshold"),
        criterion=band_criterion,  # type: ignore[arg-type]
        ci_level=ci_level,
    )
    stdout = stdout_console()
    for table in rich_tables(rep):
        stdout.print(table)
    for path in write_report(rep, out):
        console.print(f"wrote {path}")
