"""`probes vlm study` (registered on the vlm sub-app): the small end-to-end study on the synthetic world."""

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


@vlm_app.command("study")
def study_cmd(
    out: Path = typer.Option(..., "--out", help="Study directory: report, plots, study.json, README.md, evals/."),
    runs: Path | None = typer.Option(None, "--runs", help="World and training runs (checkpoints; default OUT/runs)."),
    backbones: str = typer.Option("pythia-tiny,mamba-tiny", "--backbones", help="Comma-separated backbones."),
    variants: str = typer.Option("agnostic,aware", "--variants", help="Task-agnostic and/or task-aware order."),
    tasks: str = typer.Option("grounding,captioning,vqa", "--tasks", help="Benchmarks of the world to evaluate."),
    n_images: int = typer.Option(400, "--n-images", help="Synthetic images (80/10/10 train/val/test)."),
    seed: int = typer.Option(0, "--seed", help="World, init and data order are pure functions of the seed."),
    connector: str = typer.Option("mlp", "--connector", help="mlp | vss-mlp-bsm | vss-mlp-csm | vss-l2-bsm | vss-l2-csm"),
    stage1_steps: int = typer.Option(100, "--stage1-steps", help="Stage 1 steps (connector + the trainable tiny encoder; LM frozen)."),
    stage2_steps: int = typer.Option(1500, "--stage2-steps", help="Stage 2 (connector + LM) steps."),
    batch_size: int = typer.Option(16, "--batch-size", help="Training batch, both stages."),
    stage1_lr: float = typer.Option(1e-3, "--stage1-lr"),
    stage2_lr: float = typer.Option(1e-3, "--stage2-lr", help="1e-3: the tiny LMs start from random weights."),
    max_length: int = typer.Option(1024, "--max-length"),
    split: str = typer.Option("test", "--split", help="World split to evaluate: test | val."),
    eval_batch_size: int = typer.Option(32, "--eval-batch-size", help="Images decoded together."),
    resume: bool = typer.Option(False, "--resume", help="Continue a study in OUT (same options)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the study in OUT (and RUNS)."),
    stop_after: float | None = typer.Option(
        None, "--stop-after", help="Stop at the first stage boundary after this many seconds (then --resume)."
    ),
) -> None:
    """Run the small study end to end: world → per backbone × variant stage 1, stage 2, eval on every benchmark → gap report.

    Example: probes vlm study --out figures/vlm_study --runs runs/vlm_study
    """
    from probes.analysis.vlm_gap import build_gap_report, load_scores, rich_tables

    from probes.vlm.study import StudyConfig, open_study, run_study

    if stop_after is not None and stop_after < 0:
        raise UserError("--stop-after must be at least 0")
    cfg = StudyConfig(
        backbones=_names(backbones, "--backbones"), variants=_names(variants, "--variants"),
        tasks=_names(tasks, "--tasks"), n_images=n_images, seed=seed, connector=connector,
        stage1_steps=stage1_steps, stage2_steps=stage2_steps, batch_size=batch_size, stage1_lr=stage1_lr,
        stage2_lr=stage2_lr, max_length=max_length, split=split, eval_batch_size=eval_batch_size,
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
            bar.update(inner, visible=True, description="  decoding", completed=done, total=total)

        record = run_study(study, stop_after_s=stop_after, invocation=invocation, on_stage=on_stage,
                           on_progress=on_progress)
        n_done = sum(s["status"] == "done" for s in record["stages"])
        bar.update(whole, total=len(record["stages"]), completed=n_done, description="study")
        bar.update(inner, visible=False)
    if record["status"] == "partial":
        left = len(record["stages"]) - n_done
        console.print(f"stopped after --stop-after {stop_after:g} s with {left} stages left; rerun with --resume")
        return
    report = build_gap_report(load_scores([out / "evals"]), [tuple(p) for p in record["pairs"]] if record["pairs"] else None)
    stdout = stdout_console()
    for table in rich_tables(report):
        stdout.print(table)
    console.print(f"study finished: {record['total_wall_s']:.0f} s of stages; wrote {out}/README.md, report.md, study.json")
