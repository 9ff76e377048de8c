"""The study's plan: an ordered list of named, resumable stages (each timed and recorded in ``study.json``).

1. ``world``: :func:`probes.vlm.data.world.write_world` into ``RUNS/world`` with the study's world spec;
2. ``blind-prior``: :mod:`.prior`, per benchmark, into ``OUT/prior/<task>/``;
3. ``encoder``: the one vision encoder of the study, trained once on the world's captions (the tiny encoder
   and the first backbone's LM learn; seed ``world_seed``) and then frozen in every arm, as the paper keeps
   its single pretrained encoder frozen (§3.2). Every arm sees the same visual features, so differences
   between arms are differences of the LM and the order, not of features each arm learned for itself;
4. per backbone × seed: ``stage1`` (the connector, LM and encoder frozen; always task-agnostic, as the paper
   moves the instruction only in instruction tuning, so every order shares it);
5. per backbone × order × seed: ``stage2`` (+ the language model) from that stage 1, then one
   ``eval-<task>`` per benchmark through :func:`probes.vlm.eval.runner.evaluate` (the code of
   ``probes vlm eval``) into ``OUT/evals/<backbone>-<order>-s<seed>/<task>/``.

``deps`` make the plan a graph: the driver may run independent stages (different backbones or seeds) in
parallel worker processes. Training goes through :func:`probes.vlm.train.train`, the code of ``probes vlm train``. Everything is a pure
function of the config (seeded world, seeded training order and init, greedy decoding); the same torch
build and thread count reproduce the numbers exactly.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import StudyConfig
from .layout import Layout, non_empty

Progress = Callable[[int, int], None]


@dataclass
class Stage:
    """One step of the plan. ``spec`` is a picklable description (a worker process rebuilds the work from
    it); ``deps`` names the stages that must be done first."""

    name: str
    kind: str  # world | baseline | train | eval
    spec: tuple[Any, ...]
    deps: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


def _train_info(run: Path) -> dict[str, Any]:
    summary = json.loads((run / "summary.json").read_text())
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    env = json.loads((run / "env.json").read_text())
    return {"run": str(run), "steps": summary["steps_done"], "first_loss": lines[0]["loss"] if lines else None,
            "first_step": lines[0]["step"] if lines else None, "final_loss": summary["final_loss"],
            "mamba_path": env.get("mamba_path"), "device": env.get("device"), "threads": env.get("threads")}


def _train(cfg: StudyConfig, layout: Layout, backbone: str, variant: str, seed: int, stage: int, on_progress: Progress) -> dict[str, Any]:
    from ..train import train
    from ..train_config import VLMTrainConfig

    out = layout.stage1_dir(backbone, seed) if stage == 1 else layout.stage2_dir(backbone, variant, seed)
    if stage == 0:
        out = layout.encoder
    summary = out / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished" and (out / "final").is_dir():
        return _train_info(out)  # finished before the study recorded it
    if non_empty(out) and not (out / "checkpoint" / "state.json").is_file():
        shutil.rmtree(out)  # a stage this study started and that died before its first checkpoint
    if stage == 0:  # the shared encoder: captions, encoder + LM trainable (see the module docstring)
        tcfg = VLMTrainConfig.build(
            stage=2, data=str(layout.world / "llava_pretrain.json"), out=str(out), backbone=backbone,
            encoder=cfg.encoder, connector=cfg.connector, max_steps=cfg.encoder_steps, batch_size=cfg.batch_size,
            lr=cfg.stage2_lr, loss_norm=cfg.loss_norm, max_length=cfg.max_length, seed=cfg.world_seed,
            log_every=max(1, cfg.encoder_steps // 20), train_encoder=True,
        )  # fmt: skip
        train(tcfg, on_step=lambda done, total, loss: on_progress(done, total))
        return _train_info(out)
    steps = cfg.stage1_steps if stage == 1 else cfg.stage2_steps
    tcfg = VLMTrainConfig.build(
        stage=stage, data=str(layout.world), out=str(out), backbone=backbone, encoder=cfg.encoder,
        connector=cfg.connector, task_aware=variant if stage == 2 else "agnostic",
        init_from=str(layout.stage1_dir(backbone, seed)) if stage == 2 else None,
        encoder_from=str(layout.encoder) if stage == 1 else None,
        max_steps=steps, batch_size=cfg.batch_size, lr=cfg.stage1_lr if stage == 1 else cfg.stage2_lr,
        loss_norm=cfg.loss_norm, max_length=cfg.max_length, seed=seed, log_every=max(1, steps // 20),
        task_repeats={"grounding": cfg.grounding_repeats} if stage == 2 and cfg.grounding_repeats > 1 else {},
    )  # fmt: skip
    train(tcfg, on_step=lambda done, total, loss: on_progress(done, total))
    return _train_info(out)


def _eval(cfg: StudyConfig, layout: Layout, backbone: str, variant: str, seed: int, task: str, on_progress: Progress) -> dict[str, Any]:
    from ..eval.datasets import load_eval_set
    from ..eval.runner import evaluate, load_for_eval, resolve_checkpoint

    ckpt = resolve_checkpoint(layout.stage2_dir(backbone, variant, seed))
    eval_set = load_eval_set(task, layout.world, split=cfg.split)
    vlm = load_for_eval(ckpt)
    total, done = len(eval_set.samples), [0]

    def on_batch(n: int) -> None:
        done[0] += n
        on_progress(done[0], total)

    out = layout.eval_dir(backbone, variant, seed, task)
    scores = evaluate(vlm, eval_set, out, checkpoint=ckpt, batch_size=cfg.eval_batch_size, on_batch=on_batch,
                      tags={"seed": seed, "variant": variant, "arm": layout.arm(backbone, variant, seed)})
    return {"eval": str(out), "benchmark": scores["benchmark"], "metric": scores["metric"],
            "score": scores["score"], "n": scores["n"], "details": scores["details"]}


def execute(cfg: StudyConfig, layout: Layout, spec: tuple[Any, ...], on_progress: Progress) -> dict[str, Any]:
    """Do the work a stage ``spec`` names (in this process or a worker); returns the stage's info."""
    from ..data.world import WorldSpec, write_world
    from .prior import blind_prior

    kind = spec[0]
    if kind == "world":
        world = WorldSpec(cfg.objects, cfg.size, cfg.box_decimals, cfg.layout)
        m = write_world(layout.world, cfg.n_images, cfg.world_seed, width=cfg.width, height=cfg.height, spec=world)
        return {"world": str(layout.world), "n_images": m["n_images"], "spec": m["spec"]}
    if kind == "baseline":
        return {"blind_prior": [blind_prior(layout.world, t, cfg.split, layout.prior_dir(t), box_decimals=cfg.box_decimals)
                                for t in cfg.tasks]}  # fmt: skip
    if kind == "train":
        return _train(cfg, layout, *spec[1:], on_progress)
    if kind == "eval":
        return _eval(cfg, layout, *spec[1:], on_progress)
    raise ValueError(f"unknown stage kind {kind!r}")


def plan(cfg: StudyConfig) -> list[Stage]:
    stages = [Stage("world", "world", ("world",)), Stage("blind-prior", "baseline", ("baseline",), ("world",)),
              Stage("encoder", "train", ("train", cfg.backbones[0], "agnostic", cfg.world_seed, 0), ("world",))]
    for b in cfg.backbones:
        for s in cfg.seeds:
            s1 = f"{b}/seed{s}/stage1"
            stages.append(Stage(s1, "train", ("train", b, "agnostic", s, 1), ("encoder",)))
            for v in cfg.variants:
                s2 = f"{b}/{v}/seed{s}/stage2"
                stages.append(Stage(s2, "train", ("train", b, v, s, 2), (s1,)))
                for t in cfg.tasks:
                    stages.append(Stage(f"{b}/{v}/seed{s}/eval-{t}", "eval", ("eval", b, v, s, t), (s2,)))
    return stages
