"""`probes vlm …` commands: the sub-app lives here; train commands here, eval/gap in cli/vlm_eval.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from probes.errors import UserError

from .app import app
from .common import given, progress_bar

vlm_app = typer.Typer(help="Pythia-VL / Mamba-VL: train, evaluate, grounding-gap report.", no_args_is_help=True)
app.add_typer(vlm_app, name="vlm")


def _range(text: str, option: str, kind: type[int] | type[float]) -> tuple[Any, Any]:
    """``MIN-MAX`` (or one value, both ends) as two ``kind`` values; one error line otherwise."""
    lo, _, hi = text.partition("-")
    try:
        return kind(lo), kind(hi or lo)
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise UserError(f"{option} must be MIN-MAX {what}, got {text!r}") from None


@vlm_app.command("world")
def world(
    out: Path = typer.Option(..., "--out", help="Directory to write images and annotation files into."),
    n_images: int = typer.Option(200, "--n-images", help="Number of images (80/10/10 train/val/test)."),
    seed: int = typer.Option(0, "--seed", help="Everything is a pure function of the seed."),
    width: int = typer.Option(128, "--width"),
    height: int = typer.Option(96, "--height"),
    objects: str = typer.Option("2-3", "--objects", help="Objects per image, MIN-MAX (1..4)."),
    size: str = typer.Option("0.25-0.333", "--size", help="Object side as a fraction of the short side, MIN-MAX."),
    box_decimals: int = typer.Option(2, "--box-decimals", help="Digits of the box coordinates in the targets (1 or 2)."),
    layout: str = typer.Option("free", "--layout", help="free | quadrants: where objects may sit."),
    instructions: Path | None = typer.Option(None, "--instructions", help="JSON {task: instruction} overriding Table 6's."),
) -> None:
    """Write the offline synthetic image world (shapes and digits) in LLaVA, RefCOCO-JSONL, Karpathy and VQAv2 formats.

    Example: probes vlm world --out world --n-images 200 --seed 0
    """
    from probes.vlm.data.tasks import load_instructions
    from probes.vlm.data.world import WorldSpec, write_world

    spec = WorldSpec(_range(objects, "--objects", int), _range(size, "--size", float), box_decimals, layout)
    manifest = write_world(out, n_images, seed, width=width, height=height, spec=spec,
                           instructions=load_instructions(instructions))
    typer.echo(f"wrote {manifest['n_images']} images and {len(manifest['files'])} annotation files to {out}")


# typer parameter name -> VLMTrainConfig field (the config file takes the field names, or these flag names)
_TRAIN_FIELDS = {
    "stage": "stage", "data": "data", "out": "out", "backbone": "backbone", "encoder": "encoder",
    "encoder_weights": "encoder_weights", "encoder_from": "encoder_from", "train_encoder": "train_encoder",
    "connector": "connector", "resolution": "resolution",
    "prune_k": "prune_k", "image_root": "image_root", "init_from": "init_from", "tokenizer": "tokenizer",
    "order": "task_aware", "loss_norm": "loss_norm", "max_steps": "max_steps", "epochs": "epochs",
    "batch_size": "batch_size", "lr": "lr", "max_length": "max_length", "seed": "seed",
    "save_every": "save_every", "log_every": "log_every",
}


@vlm_app.command("train")
def train_cmd(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="YAML file setting any training field (keys = field names or flag names: "
        "batch_size or batch-size, order, model; also weight_decay, betas, warmup_ratio, grad_clip, "
        "task_repeats, encoder_overrides, report_to). Flags typed on the command line override it."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config (JSON); write nothing."),
    stage: int | None = typer.Option(
        None, "--stage", help="1: connector only; 2: connector + language model (required, or in --config)."),
    data: Path | None = typer.Option(
        None, "--data", help="LLaVA JSON file, or a world directory (required, or in --config)."),
    out: Path | None = typer.Option(
        None, "--out", help="Run directory, resumed if it holds a checkpoint (required, or in --config)."),
    backbone: str = typer.Option("pythia-tiny", "--model", "--backbone", help="Backbone: preset or local save_pretrained directory."),
    encoder: str = typer.Option("tiny", "--encoder", help="tiny | eva02-l14-336 | clip-l14-336"),
    encoder_weights: str | None = typer.Option(None, "--encoder-weights", help="EVA-02 weights file or CLIP directory."),
    encoder_from: str | None = typer.Option(
        None, "--encoder-from", help="VLM checkpoint or run whose encoder weights to start from (then frozen)."),
    train_encoder: bool | None = typer.Option(
        None, "--train-encoder/--freeze-encoder", help="Default: a trainable encoder learns in stage 1 only."),
    connector: str = typer.Option("mlp", "--connector", help="mlp | vss-mlp-bsm | vss-mlp-csm | vss-l2-bsm | vss-l2-csm"),
    resolution: int | None = typer.Option(None, "--resolution", help="Encoder input size (default: the encoder's)."),
    prune_k: int | None = typer.Option(None, "--prune-k", help="Keep the k most salient patches."),
    image_root: str | None = typer.Option(None, "--image-root", help="Images are relative to this (default: the JSON's folder)."),
    init_from: str | None = typer.Option(None, "--init-from", help="Stage-1 run (or checkpoint) to start stage 2 from."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="Tokenizer directory (default: backbone's, or trained)."),
    order: str = typer.Option(
        "agnostic", "--order", help="agnostic | aware (instruction before the image) | query-first (+ first prompt) | matched (filler before the image)."
    ),
    loss_norm: str = typer.Option("sequence", "--loss-norm", help="sequence (paper) | turn | token."),
    max_steps: int = typer.Option(1000, "--max-steps"),
    epochs: float | None = typer.Option(None, "--epochs", help="Stage length in epochs (overrides --max-steps)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Global batch (default 256 / 128 by stage)."),
    lr: float | None = typer.Option(None, "--lr", help="Default 1e-3 (stage 1) / 2e-5 (stage 2)."),
    max_length: int = typer.Option(1024, "--max-length"),
    seed: int = typer.Option(0, "--seed"),
    save_every: int = typer.Option(0, "--save-every", help="Checkpoint every N steps (0: only at the end)."),
    log_every: int = typer.Option(10, "--log-every"),
    report_to: str = typer.Option("none", "--report-to", help="Trackers mirroring metrics.jsonl: tensorboard, wandb, csv (as in synth)."),
    num_processes: int = typer.Option(
        1, "--num-processes", help="Train on N processes (DDP; as in synth): = accelerate launch -m probes vlm train."),
    fsdp: bool = typer.Option(False, "--fsdp", help="With --num-processes on GPUs: FSDP instead of DDP."),
) -> None:
    """Train one VLM stage on the shared engine (--num-processes N, or `accelerate launch -m probes vlm train …`, for several processes).

    Example: probes vlm train --stage 1 --backbone pythia-tiny --encoder tiny --connector mlp --data world --out runs/s1 --max-steps 50 --batch-size 8

    With --config run.yaml every field of the run can come from the file (flags typed here override it):
    probes vlm train --config run.yaml --lr 3e-3 --dry-run
    """
    options = dict(locals())  # the parameters, before any import adds names
    import json
    import os

    from probes.train.sweep import load_sweep_file
    from probes.train.trackers import RunMirror, parse_report_to
    from probes.vlm.train_config import config_from_sources

    file_values = load_sweep_file(config) if config is not None else {}
    file_report_to = file_values.pop("report_to", None)
    flags = {field: str(options[name]) if isinstance(options[name], Path) else options[name]
             for name, field in _TRAIN_FIELDS.items() if given(ctx, name)}
    cfg = config_from_sources(file_values, flags)
    if not given(ctx, "report_to") and file_report_to is not None:
        listed = isinstance(file_report_to, list)
        report_to = ",".join(map(str, file_report_to)) if listed else str(file_report_to)
    chosen = parse_report_to(report_to)
    if dry_run:
        typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))
        return
    if fsdp and num_processes < 2:
        raise UserError("--fsdp needs --num-processes N (N >= 2)")
    if num_processes != 1:
        from probes.launch.processes import run_processes

        from .app import ARGV

        code = run_processes(ARGV, num_processes, cfg.batch_size, fsdp=fsdp)
        if code:
            raise typer.Exit(code)
        return
    from probes.vlm.train import train

    trackers = chosen if int(os.environ.get("RANK", "0")) == 0 else []  # one process logs
    mirror = RunMirror(Path(cfg.out), trackers)
    with progress_bar() as bar:
        task = bar.add_task(f"stage {cfg.stage}", total=None)

        def on_step(done: int, total: int, loss: float) -> None:
            bar.update(task, total=total, completed=done, metrics=f"loss {loss:.3f}")
            if done % cfg.log_every == 0:
                mirror.sync()

        try:
            run = train(cfg, on_step=on_step)
        finally:
            mirror.finish()
    typer.echo(f"finished: {run / 'final'}")
