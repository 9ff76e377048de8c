"""`probes vlm study` (registered on the vlm sub-app): the small end-to-end study on the synthetic world.

The library (``probes.vlm.study``) runs the stages and writes eval outputs; this command then draws the
report through ``probes.analysis.vlm_study`` (seed-level t-intervals, paired per-seed differences, the gains figure, README.md).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from probes.errors import UserError

from .common import console, progress_bar, stdout_console
from .vlm import vlm_app


def _names(value: str, option: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise UserError(f"{option} must name at least one value")
    return names


def _ints(value: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _names(value, option))
    except ValueError:
        raise UserError(f"{option} expects comma-separated integers, got {value!r}") from None


def _pair(value: str, option: str, sep: str, kind: type) -> tuple:
    lo, _, hi = value.partition(sep)
    try:
        return kind(lo), kind(hi or lo)
    except ValueError:
        raise UserError(f"{option} expects MIN{sep}MAX, got {value!r}") from None


@vlm_app.command("study")
def study_cmd(
    out: Path = typer.Option(..., "--out", help="Study directory: report, plots, study.json, README.md, evals/."),
    runs: Path | None = typer.Option(None, "--runs", help="World and training runs (checkpoints; default OUT/runs)."),
    backbones: str = typer.Option("pythia-tiny,mamba-tiny", "--models", "--backbones", help="Comma-separated backbones."),
    variants: str = typer.Option(
        "agnostic,aware,matched", "--variants", help="Orders: agnostic, aware, matched (distance-matched agnostic), query-first."),
    tasks: str = typer.Option("grounding,captioning,vqa", "--tasks", help="Benchmarks of the world to evaluate."),
    seeds: str = typer.Option("0,1,2,3", "--seeds", help="Training seeds per arm (init and data order)."),
    n_images: int = typer.Option(1400, "--n-images", help="Synthetic images (80/10/10 train/val/test)."),
    world_seed: int = typer.Option(0, "--world-seed", help="Seed of the synthetic world."),
    canvas: str = typer.Option("96x96", "--canvas", help="Image size WIDTHxHEIGHT in pixels."),
    objects: str = typer.Option("2-2", "--objects", help="Objects per image, MIN-MAX."),
    size: str = typer.Option("0.4-0.5", "--size", help="Object side as a fraction of the short side, MIN-MAX."),
    box_decimals: int = typer.Option(1, "--box-decimals", help="Digits of the box coordinates in the targets."),
    layout: str = typer.Option("free", "--layout", help="free | quadrants (see probes.vlm.data.world.WorldSpec)."),
    grounding_repeats: int = typer.Option(4, "--grounding-repeats", help="Grounding sequences per epoch in stage 2."),
    connector: str = typer.Option("mlp", "--connector", help="mlp | vss-mlp-bsm | vss-mlp-csm | vss-l2-bsm | vss-l2-csm"),
    encoder_steps: int = typer.Option(1000, "--encoder-steps", help="Steps of the shared encoder stage (captions; then frozen in every arm)."),
    stage1_steps: int = typer.Option(20, "--stage1-steps", help="Stage 1 steps (connector only; LM and encoder frozen)."),
    stage2_steps: int = typer.Option(400, "--stage2-steps", help="Stage 2 (connector + LM) steps."),
    batch_size: int = typer.Option(4, "--batch-size", help="Training batch, both stages."),
    stage1_lr: float = typer.Option(1e-3, "--stage1-lr"),
    stage2_lr: float = typer.Option(3e-3, "--stage2-lr", help="3e-3: the tiny LMs start from random weights."),
    loss_norm: str = typer.Option("sequence", "--loss-norm", help="sequence (paper) | turn | token."),
    max_length: int = typer.Option(1024, "--max-length"),
    split: str = typer.Option("test", "--split", help="World split to evaluate: test | val."),
    eval_batch_size: int = typer.Option(50, "--eval-batch-size", help="Images decoded together."),
    threads: int = typer.Option(1, "--threads", help="Torch threads per process (the numbers depend on it)."),
    workers: int = typer.Option(2, "--workers", help="Stages run in this many parallel processes."),
    resume: bool = typer.Option(False, "--resume", help="Continue a study in OUT (same options)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the study in OUT (and RUNS)."),
    stop_after: float | None = typer.Option(
        None, "--stop-after", help="Stop at the first stage boundary after this many seconds (then --resume)."
    ),
) -> None:
    """Run the small study end to end: world, blind prior, the shared frozen encoder, per backbone × seed stage 1, stage 2 and evals, then the report with seed-level t-intervals.

    Example: probes vlm study --out figures/vlm_study --runs runs/vlm_study
    """
    from probes.analysis.vlm_study import score_rows, write_study_report

    from probes.vlm.study import StudyConfig, open_study, run_study

    if stop_after is not None and stop_after < 0:
        raise UserError("--stop-after must be at least 0")
    width, height = _pair(canvas, "--canvas", "x", int)
    cfg = StudyConfig(
        backbones=_names(backbones, "--models"), variants=_names(variants, "--variants"),
        tasks=_names(tasks, "--tasks"), seeds=_ints(seeds, "--seeds"), n_images=n_images, world_seed=world_seed,
        width=width, height=height, objects=_pair(objects, "--objects", "-", int),
        size=_pair(size, "--size", "-", float), box_decimals=box_decimals, layout=layout,
        grounding_repeats=grounding_repeats, connector=connector, encoder_steps=encoder_steps,
        stage1_steps=stage1_steps, stage2_steps=stage2_steps, batch_size=batch_size, stage1_lr=stage1_lr,
        stage2_lr=stage2_lr, loss_norm=loss_norm, max_length=max_length, split=split,
        eval_batch_size=eval_batch_size, threads=threads, workers=workers,
    )  # fmt: skip
    study = open_study(cfg, out, runs, resume=resume, overwrite=overwrite)  # all user errors: before any output
    invocation = shlex.join(["probes", *sys.argv[1:]])
    with progress_bar() as bar:
        whole = bar.add_task("study", total=None)
        inner = bar.add_task("", total=None, visible=False)

        def on_stage(i: int, n: int, name: str) -> None:
            bar.update(whole, total=n, completed=i, description=f"[{i + 1}/{n}] {name}")
            bar.update(inner, visible=False, completed=0, total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(inner, visible=True, description="  progress", completed=done, total=total)

        record = run_study(study, stop_after_s=stop_after, invocation=invocation, on_stage=on_stage,
                           on_progress=on_progress)
        n_done = sum(s["status"] == "done" for s in record["stages"])
        bar.update(whole, total=len(record["stages"]), completed=n_done, description="study")
        bar.update(inner, visible=False)
    report, written = write_study_report(out)
    if record["status"] == "partial":
        left = len(record["stages"]) - n_done
        console.print(f"stopped after --stop-after {stop_after:g} s with {left} stages left; rerun with --resume")
        return
    if report is not None:
        from rich.table import Table

        header, rows = score_rows(report)
        table = Table(title="VLM study: mean over seeds [95 % t-interval over seeds]")
        for col in header:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        stdout_console().print(table)
    console.print(f"study finished: {record['total_wall_s']:.0f} s of stages; wrote "
                  + ", ".join(p.name for p in written) + f" in {out}")  # fmt: skip
