"""`probes vlm eval|gap|resolution` (registered on the vlm sub-app)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from probes.errors import UserError

from .common import progress_bar, stdout_console
from .vlm import vlm_app

_TASK_HELP = "grounding | captioning | vqa | mc | pope"


def _split(value: str) -> str | None:
    return None if value in ("", "all") else value


def _run_one(vlm: Any, eval_set: Any, out: Path, checkpoint: Path, **kw: Any) -> dict[str, Any]:
    from probes.vlm.eval.runner import evaluate

    with progress_bar() as bar:
        task = bar.add_task(f"{eval_set.benchmark} @ {vlm.encoder.resolution}px", total=len(eval_set.samples))
        return evaluate(vlm, eval_set, out, checkpoint=checkpoint, on_batch=lambda n: bar.advance(task, n), **kw)


@vlm_app.command("eval")
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="VLM checkpoint directory (or a training run with final/)."),
    data: Path = typer.Option(..., "--data", help="Annotation file, or a directory (e.g. from `probes vlm world`)."),
    task: str = typer.Option(..., "--task", help=_TASK_HELP),
    out: Path = typer.Option(..., "--out", help="Output directory: predictions.jsonl and scores.json."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images decoded together."),
    resolution: int | None = typer.Option(None, "--resolution", help="Encoder input size (default: as trained)."),
    split: str = typer.Option("val", "--split", help="Split to evaluate ('all': every row)."),
    image_root: Path | None = typer.Option(None, "--image-root", help="Images are relative to this."),
    benchmark: str | None = typer.Option(None, "--benchmark", help="Name in scores.json (default: file + split)."),
    task_group: str | None = typer.Option(None, "--task-group", help="grounding | reading | captioning | vqa | other"),
    order: str | None = typer.Option(None, "--order", help="agnostic | aware | query-first (default: as trained)."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Default depends on the task."),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate only the first N samples."),
    instructions: Path | None = typer.Option(None, "--instructions", help="JSON {task: instruction} overrides."),
    device: str | None = typer.Option(None, "--device", help="Default: cuda when available, else cpu."),
) -> None:
    """Evaluate a VLM checkpoint on one benchmark with batched greedy decoding.

    Example: probes vlm eval runs/s2/final --data world --task grounding --out evals/pythia-refcoco --batch-size 32
    """
    from probes.vlm.data.tasks import read_overrides
    from probes.vlm.eval.datasets import load_eval_set
    from probes.vlm.eval.runner import load_for_eval, resolve_checkpoint
    from probes.vlm.sequence import ORDERS

    if order is not None and order not in ORDERS:
        raise UserError(f"--order must be one of {', '.join(ORDERS)}")
    overrides = read_overrides(instructions) if instructions is not None else None
    ckpt = resolve_checkpoint(checkpoint)
    eval_set = load_eval_set(
        task, data, split=_split(split), image_root=image_root, benchmark=benchmark, task_group=task_group,
        limit=limit, instructions=overrides,
    )  # fmt: skip
    vlm = load_for_eval(ckpt, resolution=resolution, device=device)
    scores = _run_one(
        vlm, eval_set, out, ckpt, batch_size=batch_size, task_aware=order, max_new_tokens=max_new_tokens
    )
    typer.echo(f"{scores['benchmark']}: {scores['metric']} = {scores['score']:.2f} (n={scores['n']}) → {out}")


def _parse_pairs(pairs: list[str] | None) -> list[tuple[str, str]] | None:
    if not pairs:
        return None
    out = []
    for p in pairs:
        if "=" not in p:
            raise UserError(f"--pair expects PYTHIA=MAMBA backbone names, got {p!r}")
        a, b = p.split("=", 1)
        out.append((a.strip(), b.strip()))
    return out


@vlm_app.command("gap")
def gap_cmd(
    runs: list[Path] = typer.Argument(..., help="Eval directories (or folders searched for scores.json)."),
    out: Path = typer.Option(..., "--out", help="Directory for report.md, report.csv, gains.png/pdf."),
    pair: list[str] | None = typer.Option(None, "--pair", help="PYTHIA=MAMBA backbones to compare (repeatable)."),
) -> None:
    """Grounding-gap report: scores per benchmark, task-group sums, Pythia − Mamba, task-aware gains.

    Example: probes vlm gap evals/ --out reports/gap
    """
    from probes.analysis.vlm_gap import build_gap_report, load_scores, rich_tables, write_gap_report

    report = build_gap_report(load_scores(runs), _parse_pairs(pair))
    out_console = stdout_console()  # the tables are the command's output
    for table in rich_tables(report):
        out_console.print(table)
    written = write_gap_report(report, out)
    typer.echo("wrote " + ", ".join(str(p) for p in written))


def _parse_sizes(sizes: str) -> list[int]:
    try:
        values = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--sizes expects comma-separated integers, got {sizes!r}") from None
    if not values or any(v <= 0 for v in values):
        raise UserError(f"--sizes expects positive integers, got {sizes!r}")
    return sorted(set(values))


@vlm_app.command("resolution")
def resolution_cmd(
    checkpoints: list[Path] = typer.Argument(..., help="One or more checkpoints (one line each)."),
    data: Path = typer.Option(..., "--data", help="Annotation file or directory, as for `vlm eval`."),
    out: Path = typer.Option(..., "--out", help="Directory: one eval per size, resolution.csv, resolution.png/pdf."),
    task: str = typer.Option("grounding", "--task", help=_TASK_HELP),
    sizes: str = typer.Option("336,448,560", "--sizes", help="Input resolutions, comma-separated."),
    batch_size: int = typer.Option(16, "--batch-size"),
    split: str = typer.Option("val", "--split"),
    image_root: Path | None = typer.Option(None, "--image-root"),
    benchmark: str | None = typer.Option(None, "--benchmark"),
    limit: int | None = typer.Option(None, "--limit"),
    device: str | None = typer.Option(None, "--device"),
) -> None:
    """Evaluate checkpoints at several input resolutions (position embeddings interpolated) and plot score vs size.

    Example: probes vlm resolution runs/pythia/final runs/mamba/final --data world --task grounding --sizes 336,448,560 --out reports/res
    """
    from probes.analysis.vlm_gap import load_scores, plot_resolution, resolution_csv

    from probes.io import atomic_write_text
    from probes.vlm.eval.datasets import load_eval_set
    from probes.vlm.eval.runner import load_for_eval, resolve_checkpoint

    size_list = _parse_sizes(sizes)
    ckpts = [resolve_checkpoint(c) for c in checkpoints]
    eval_set = load_eval_set(task, data, split=_split(split), image_root=image_root, benchmark=benchmark, limit=limit)
    eval_dirs = []
    for i, ckpt in enumerate(ckpts):
        for size in size_list:
            target = out / (f"{i}-{ckpt.parent.name if ckpt.name == 'final' else ckpt.name}") / f"res-{size}"
            vlm = load_for_eval(ckpt, resolution=size, device=device)
            _run_one(vlm, eval_set, target, ckpt, batch_size=batch_size)
            eval_dirs.append(target)
    records = load_scores(eval_dirs)
    atomic_write_text(out / "resolution.csv", resolution_csv(records))
    written = plot_resolution(records, out / "resolution")
    typer.echo("wrote " + ", ".join(str(p) for p in [out / "resolution.csv", *written]))


@vlm_app.command("prune-quality")
def prune_quality_cmd(
    checkpoint: Path = typer.Argument(..., help="VLM checkpoint (trained with --prune-k for the saliency method)."),
    data: Path = typer.Option(..., "--data", help="Annotation file or directory, as for `vlm eval`."),
    out: Path = typer.Option(..., "--out", help="Directory: one eval per k and method, quality.csv."),
    task: str = typer.Option("grounding", "--task", help=_TASK_HELP),
    k: str = typer.Option(..., "--k", help="Visual tokens to keep, comma-separated."),
    methods: str = typer.Option("saliency,random", "--methods", help="saliency (the trained scorer) and/or random."),
    batch_size: int = typer.Option(16, "--batch-size"),
    split: str = typer.Option("val", "--split"),
    limit: int | None = typer.Option(None, "--limit"),
    seed: int = typer.Option(0, "--seed", help="Seed of the random-k baseline."),
    device: str | None = typer.Option(None, "--device"),
) -> None:
    """Benchmark score vs the number k of visual tokens kept (saliency top-k vs random k): the quality side of pruning.

    Example: probes vlm prune-quality runs/pruned/final --data world --task grounding --k 36,18,9 --out reports/prune
    """
    import csv
    import io

    from probes.io import atomic_write_text
    from probes.vlm.eval.datasets import load_eval_set
    from probes.vlm.eval.pruning_quality import pruning_quality
    from probes.vlm.eval.runner import load_for_eval, resolve_checkpoint

    ks = _parse_sizes(k)
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    ckpt = resolve_checkpoint(checkpoint)
    eval_set = load_eval_set(task, data, split=_split(split), limit=limit)
    vlm = load_for_eval(ckpt, device=device)
    rows = pruning_quality(vlm, eval_set, ks, out, checkpoint=ckpt, methods=method_list, batch_size=batch_size, seed=seed)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "quality.csv", buf.getvalue())
    from probes.analysis.vlm_gap import plot_prune_quality

    figures = plot_prune_quality(rows, out / "quality")
    for r in rows:
        typer.echo(f"k={r['k']:>4} {r['method']:>8}: {r['metric']} {r['score']:.2f} (n={r['n']})")
    typer.echo("wrote " + ", ".join(str(p) for p in [out / "quality.csv", *figures]))
