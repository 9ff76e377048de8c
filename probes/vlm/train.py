"""Two-stage VLM training on the shared engine (:mod:`probes.train.engine`: one code path for a single
device, DDP and FSDP; the engine's step, data order, checkpoints and end states).

Run directory::

    config.json      {"schema_version": 1, "train": VLMTrainConfig, "vlm": VLMConfig, "data": pack stats}
    env.json         versions, device, processes, mixed precision, mamba_path
    metrics.jsonl    {"kind": "train", "step", "samples_seen", "wall_time", "loss", "lr"} per log_every steps
    checkpoint/      accelerate ``save_state`` (model, optimizer, RNG) + state.json (step, cursor, scheduler,
                     RNG, file sizes); checkpoint.old/ the one before (probes.train.checkpoint)
    final/           the VLM checkpoint directory (:func:`probes.vlm.model.load_vlm`)
    summary.json     {"status", "steps_done", "max_steps", "final_loss", "wall_time", "error"}

Data order is a pure function of (seed, step): the packed sequences are shuffled per epoch by a seeded
permutation and step ``s`` takes global positions ``[s·B, (s+1)·B)``; process ``r`` of ``W`` takes every
W-th of them. The data cursor in ``state.json`` is therefore just the step, and resuming from a checkpoint
replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from accelerate.utils import set_seed
from transformers import get_cosine_schedule_with_warmup

from probes.errors import UserError
from probes.io import atomic_write_json, ensure_writable_dir
from probes.models.registry import load_config
from probes.runfiles import CONFIG, ENV, SUMMARY
from probes.ssm.patch import mamba_path_note
from probes.train import checkpoint
from probes.train.engine import Engine, NonFiniteLoss, RunDiverged, recorded
from probes.train.order import VLM_STRIDE, DataOrder, check_divisible, shard
from probes.train.rundir import RunWriter

from .data.llava import Conversation, load_llava
from .image import load_image, pixel_tensor
from .model import VLM, build_vlm, enable_fast_path, load_vlm
from .packing import PackedItem, TokenisedConversation, pack
from .sequence import Turn, image_block_len_bound
from .tokenizer import encode, load_tokenizer, train_tokenizer
from .train_config import VLMTrainConfig

SCHEMA_VERSION = 1
TINY_TOKENIZER_VOCAB = 512


def _texts(convs: list[Conversation]) -> list[str]:
    out = []
    for c in convs:
        out.append(c.instruction)
        for p, r in c.turns:
            out += [p, r]
    return [t for t in out if t]


def _checkpoint_dir(path: str) -> Path:
    src = Path(path)
    return src / "final" if (src / "final" / "vlm_config.json").is_file() else src


def _make_vlm(cfg: VLMTrainConfig, convs: list[Conversation]) -> VLM:
    vlm = _new_or_loaded_vlm(cfg, convs)
    if cfg.encoder_from:
        _copy_encoder(vlm, _checkpoint_dir(cfg.encoder_from))
    return vlm


def _copy_encoder(vlm: VLM, src: Path) -> None:
    """Load the vision-encoder weights of the VLM checkpoint ``src`` into ``vlm`` (shapes must match)."""
    if not (src / "vlm_config.json").is_file():
        raise UserError(f"--encoder-from {src}: not a VLM checkpoint (no vlm_config.json)")
    donor = load_vlm(src)
    if donor.config.encoder != vlm.config.encoder or donor.encoder.n_patches != vlm.encoder.n_patches:
        raise UserError(f"--encoder-from {src}: its encoder ({donor.config.encoder}, {donor.encoder.n_patches} patches) "
                        f"differs from this run's ({vlm.config.encoder}, {vlm.encoder.n_patches} patches)")
    try:
        vlm.encoder.load_state_dict(donor.encoder.state_dict())
    except RuntimeError as exc:
        raise UserError(f"--encoder-from {src}: encoder weights do not fit: {str(exc).splitlines()[0]}") from None


def _new_or_loaded_vlm(cfg: VLMTrainConfig, convs: list[Conversation]) -> VLM:
    if cfg.init_from:
        vlm = load_vlm(_checkpoint_dir(cfg.init_from))
        vlm.config.task_aware = cfg.task_aware
        return vlm
    if cfg.tokenizer:
        tok = load_tokenizer(cfg.tokenizer)
    elif Path(cfg.backbone).is_dir():
        tok = load_tokenizer(cfg.backbone)
    else:  # offline preset: train a byte-level BPE on the training texts, capped at the vocabulary
        vocab = int(load_config(cfg.backbone).vocab_size)
        tok = train_tokenizer(_texts(convs), min(vocab, TINY_TOKENIZER_VOCAB))
    return build_vlm(
        backbone=cfg.backbone,
        encoder=cfg.encoder,
        connector=cfg.connector,
        tokenizer=tok,
        resolution=cfg.resolution,
        encoder_weights=cfg.encoder_weights,
        encoder_overrides=cfg.encoder_overrides,
        prune_k=cfg.prune_k,
        task_aware=cfg.task_aware,
        seed=cfg.seed,
    )


def _packed_items(cfg: VLMTrainConfig, vlm: VLM, convs: list[Conversation]) -> tuple[list[PackedItem], dict[str, int]]:
    tok = vlm.tokenizer
    tconvs = [
        TokenisedConversation(
            image=c.image,
            task=c.task,
            instruction_ids=encode(tok, c.instruction),
            turns=tuple(Turn(encode(tok, p), encode(tok, r)) for p, r in c.turns),
            dataset=c.dataset,  # selects the per-dataset turn cap (App. A.3, probes.vlm.packing.DATASET_CAPS)
        )
        for c in convs
    ]
    n_visual = cfg.prune_k or vlm.encoder.n_patches
    items, stats = pack(tconvs, image_tokens=image_block_len_bound(vlm.encoder.grid[0], n_visual), max_length=cfg.max_length)
    if not items:
        raise UserError(f"no training sequence fits max_length {cfg.max_length} (dropped {stats.dropped_too_long})")
    if cfg.task_repeats:  # repeated in place, so the epoch permutation (and resume) stay pure functions of the list
        items = [it for it in items for _ in range(int(cfg.task_repeats.get(it.task, 1)))]
    return items, {"sequences": stats.sequences, "examples": stats.examples, "dropped_too_long": stats.dropped_too_long,
                   "sequences_per_epoch": len(items)}  # fmt: skip


def set_trainable(vlm: VLM, stage: int, *, encoder: bool | None = None) -> list[torch.nn.Parameter]:
    """Stage 1: connector (+ pruner, + a trainable encoder); stage 2: also the whole language model.

    ``encoder``: whether a trainable encoder learns (default: in stage 1 only,
    :attr:`VLMTrainConfig.encoder_learns`)."""
    vlm.requires_grad_(False)
    vlm.connector.requires_grad_(True)
    if vlm.pruner is not None:
        vlm.pruner.requires_grad_(True)
    learns = (stage == 1) if encoder is None else encoder
    if vlm.encoder.trainable and learns:
        vlm.encoder.requires_grad_(True)
    if stage == 2:
        vlm.backbone.requires_grad_(True)
    return [p for p in vlm.parameters() if p.requires_grad]


def train(
    cfg: VLMTrainConfig,
    *,
    stop_after: int | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Run (or resume) one stage; returns the run directory. Resumes when ``out/checkpoint`` exists.

    ``stop_after``: checkpoint and stop (status ``stopped``) once that many steps are done — for time-sliced
    cluster jobs; rerunning the same command continues exactly. ``on_step(done, total, loss)``: progress
    callback (the CLI passes its progress bar; the library never draws one itself).

    The engine's main process holds the run directory's writer lock (:mod:`probes.train.lock`): a second
    writer of ``cfg.out`` fails with one line naming the holder. A directory the lock created is removed again
    when the run fails before writing anything (bad inputs leave no run directory behind)."""
    from probes.train.layout import has_content

    out = Path(cfg.out)
    engine = Engine("auto")
    check_divisible(cfg.batch_size, engine.world)
    created = not out.exists()
    try:
        with engine.writing(out):
            return _train(cfg, engine, stop_after=stop_after, on_step=on_step)
    except BaseException:
        if engine.is_main and created and out.is_dir() and not has_content(out):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _train(
    cfg: VLMTrainConfig,
    engine: Engine,
    *,
    stop_after: int | None,
    on_step: Callable[[int, int, float], None] | None,
) -> Path:
    out = Path(cfg.out)
    main = engine.is_main
    resume = engine.on_main(lambda: _check_resume(out, cfg))
    set_seed(cfg.seed)
    convs = load_llava(cfg.data_file(), cfg.image_root, default_task="caption" if cfg.stage == 1 else "chat")
    if not convs:
        raise UserError(f"{cfg.data_file()} holds no conversations")
    vlm = _make_vlm(cfg, convs)
    vlm.to(engine.device)  # the scan path is picked by device (probes-triton on CUDA): move first
    mamba_path = enable_fast_path(vlm.backbone, vlm.config.family)
    items, pack_stats = _packed_items(cfg, vlm, convs)
    if main:  # only now: bad inputs above leave no run directory behind
        ensure_writable_dir(out)
    params = set_trainable(vlm, cfg.stage, encoder=cfg.encoder_learns)
    total_steps = cfg.total_steps(len(items))
    pack_stats["total_steps"] = total_steps
    opt = engine.optimizer(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
    step_fn = engine.step(vlm, opt, scheduler=sched, clip=cfg.grad_clip)
    writer = RunWriter(out)
    if main and not resume:
        atomic_write_json(out / CONFIG, {"schema_version": SCHEMA_VERSION, "train": json.loads(cfg.model_dump_json()),
                                                "vlm": vlm.config.__dict__, "data": pack_stats})
        atomic_write_json(out / ENV, engine.environment(mamba_path, mamba_path_note(vlm.backbone)))
    start = 0
    if resume:
        state, note = engine.load(out, step_fn)
        start = int(state["step"])
        if main:  # a line torn by a kill is dropped, later ones are recomputed
            notes = [note, writer.truncate_to(start)]
            if any(notes):
                print(f"{out}: " + "; ".join(n for n in notes if n), file=sys.stderr, flush=True)

    enc = vlm.encoder
    order = DataOrder(len(items), cfg.batch_size, cfg.seed, VLM_STRIDE)
    t0 = time.time()
    loss_value = float("nan")

    def summary(status: str, error: str | None = None) -> None:
        if main:
            atomic_write_json(out / SUMMARY, {"status": status, "steps_done": _steps_done(out), "max_steps": total_steps,
                                              "final_loss": loss_value, "wall_time": time.time() - t0, "error": error})

    with recorded(summary):
        step_fn.module.train()
        for step in range(start, total_steps):
            idx = shard(order.indices(step), engine.rank, engine.world).tolist()
            px = torch.stack([pixel_tensor(load_image(items[i].image), enc.resolution, enc.mean, enc.std) for i in idx])
            forward = partial(step_fn.module, px.to(engine.device), [items[i].parts for i in idx],
                              task_aware=cfg.stage_order, loss_norm=cfg.loss_norm)
            try:
                result = step_fn(forward)
            except NonFiniteLoss as exc:
                raise RunDiverged(f"{out.name} diverged: the loss became {exc.value} at step {step + 1}; lower --lr") from None
            loss_value = result.loss
            done = step + 1
            if main and (done % cfg.log_every == 0 or done == total_steps):
                writer.append({"kind": "train", "step": done, "samples_seen": done * cfg.batch_size,
                               "wall_time": time.time() - t0, "loss": result.loss, "lr": result.lr})
            if on_step is not None and main:
                on_step(done, total_steps, result.loss)
            stop = stop_after is not None and done >= stop_after and done < total_steps
            if (cfg.save_every and done % cfg.save_every == 0) or done == total_steps or stop:
                engine.save(out, {"step": done, "cursor": done * cfg.batch_size}, step_fn)
            if stop:
                summary("stopped")
                return out
        engine.barrier()
        full = engine.full_state_dict(step_fn.module)  # FSDP: gathered from every process's shards
        if main:
            engine.unwrap(step_fn.module).save(out / "final", state_dict=full)
    summary("finished")
    return out


def _steps_done(out: Path) -> int:
    for path in checkpoint.candidates(out):
        state, _ = checkpoint.verify(path)
        if state is not None:
            return int(state["step"])
    return 0


_PATH_FIELDS = ("data", "image_root", "init_from", "tokenizer", "encoder_weights", "encoder_from", "backbone")


def _check_resume(out: Path, cfg: VLMTrainConfig) -> bool:
    """True when ``out`` holds a checkpoint to resume with the same config (the schedule depends on every
    field). Differences are named field by field; ``out`` itself is not compared and other paths compare
    equal when they name the same file, so a run started with a relative ``--out`` resumes given it
    absolute. The writer lock is held, so stale temporary files and a half-written checkpoint are removed.
    A run without any checkpoint starts again from step 0 (the resume rule every trainer shares,
    :func:`probes.train.checkpoint.resume_point`)."""
    from probes.io import remove_stale_temps
    from probes.train.layout import read_json_or_none
    from probes.train.rundir import restart

    remove_stale_temps(out)
    checkpoint.abandon(out)
    point = checkpoint.resume_point(out)
    if point.action == checkpoint.FRESH:
        return False
    saved_file = read_json_or_none(out / CONFIG)
    if point.action == checkpoint.RESTART:
        if saved_file is None:  # not (recognisably) a run of this trainer: nothing is deleted
            raise UserError(f"{out} exists and is not empty (and has no checkpoint to resume)")
        restart(out, lambda saved: _differences(saved, cfg))
        return False
    if saved_file is None or not isinstance(saved_file.get("train"), dict):
        raise UserError(f"cannot resume {out}: its config.json is unreadable; choose another --out")
    diffs = _differences(saved_file, cfg)
    if diffs:
        raise UserError(f"{out} holds a run with a different config ({'; '.join(diffs)}); resume with the same "
                        "options or choose another --out")
    return True


def _differences(saved_file: dict, cfg: VLMTrainConfig) -> list[str]:
    """The training fields in which a run's ``config.json`` differs from ``cfg`` (paths naming the same file
    are equal; ``out`` is not compared)."""
    from probes.train.layout import config_differences

    saved, now = dict(saved_file.get("train") or {}), json.loads(cfg.model_dump_json())
    for key in _PATH_FIELDS:
        if isinstance(saved.get(key), str) and isinstance(now.get(key), str) and Path(saved[key]).resolve() == Path(now[key]).resolve():
            saved[key] = now[key]
    return config_differences(saved, now, ignore=("out",))
