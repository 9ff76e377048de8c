"""One probe run: resize, train with AdamW on the task, evaluate every 1% of the budget, early-stop.

Determinism: the training order is a pure function of ``(train.seed, step)`` (a seeded permutation of the
training indices per epoch) and the data of an index is a pure function of the task config, so every model
sees the same samples in the same order, and a resumed run replays exactly the steps it missed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from probes.errors import UserError
from probes.io import atomic_write_json
from probes.models.registry import load_backbone
from probes.models.resize import add_tokens
from probes.runfiles import CONFIG, ENV, MANIFEST, SUMMARY
from probes.ssm.patch import enable_fast_path, mamba_path_note
from probes.synthetic.base import ProbeTask, TaskConfigError
from probes.synthetic.registry import build_task

from . import checkpoint, rundir
from .checkpoint import CONTINUE, FINISHED
from .config import RunConfig, config_changes
from .engine import Engine, NonFiniteLoss, RunDiverged, recorded, warmup_schedule
from .evaluate import evaluate
from .forward import TargetLogits, probe_loss
from .order import PROBE_STRIDE, DataOrder, check_divisible, shard

StepCallback = Callable[[int, dict[str, Any]], None]
BASE_MODEL_SEED = 0  # presets: the "pretrained" weights are the same for every lr / init seed of a grid


def enable_mamba_fast_path(model: torch.nn.Module) -> str | None:
    """Use mamba-ssm kernels when present on CUDA, otherwise our fast scan; None for models without SSM."""
    return enable_fast_path(model)


def build_task_for(cfg: RunConfig, vocab_size: int) -> ProbeTask:
    params = dict(cfg.task.params)
    params.setdefault("context_offset", vocab_size)
    try:
        task = build_task(cfg.task.name, params)
    except TaskConfigError as exc:
        raise UserError(f"model {cfg.model.name} ({vocab_size} vocabulary rows): {exc}") from None
    if task.min_base_vocab > vocab_size:
        raise UserError(
            f"model {cfg.model.name} has {vocab_size} vocabulary rows but the task needs existing ids up to "
            f"{task.min_base_vocab - 1}: use a shorter --len or a model with a larger vocabulary"
        )
    return task


def _disjoint_record(task: ProbeTask, cfg: RunConfig) -> dict[str, Any]:
    if not cfg.train.verify_disjoint:
        return {"checked": False}
    from probes.synthetic.disjoint import check_disjoint
    n_train = min(cfg.train.n_train, cfg.train.max_steps * cfg.train.batch_size)
    result = check_disjoint(task, n_train, cfg.train.eval_samples)
    if result.get("overlaps", 0):
        raise UserError(f"train and held-out splits overlap ({result['overlaps']} samples): refusing to train")
    return {"checked": True, **result}


def _differences(cfg: RunConfig, saved: dict[str, Any]) -> list[str]:
    return config_changes(saved, cfg)


def _resume_config(run_dir: Path, cfg: RunConfig, state: dict[str, Any]) -> str | None:
    """Check that the run directory was started with ``cfg``; name every differing field otherwise.

    A ``config.json`` that cannot be read is restored from the copy in the checkpoint (``state["config"]``)
    when that copy matches the command; returns a note saying so."""
    saved = rundir.read_json_or_none(run_dir / CONFIG)
    note = None
    if saved is None:
        saved = state.get("config")
        if saved is None:
            raise UserError(f"cannot resume {run_dir}: config.json is unreadable and the checkpoint has no copy")
        note = "config.json was unreadable; restored it from the checkpoint's copy"
    diffs = _differences(cfg, saved)
    if diffs:
        raise UserError(
            f"{run_dir} was started with a different configuration ({'; '.join(diffs)}); resume it with the "
            "same options, or use --overwrite or another --out"
        )
    # the run may go on with other save / checkpointing settings (RESUMABLE_CHANGES): config.json records them
    current = cfg.to_dict()
    current["model"] |= {k: v for k, v in saved.get("model", {}).items() if k in ("family", "n_params")}
    if rundir.flatten(current) != rundir.flatten(saved):
        note = "; ".join(filter(None, [note, "config.json now records this command's save and checkpointing settings"]))
        saved = current
    if note is not None:
        atomic_write_json(run_dir / CONFIG, saved)
    return note


def run(
    cfg: RunConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_step: StepCallback | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train one run into ``run_dir``; return its summary. KeyboardInterrupt leaves a resumable run.

    ``stop_after``: checkpoint and stop (status ``stopped``) once that many steps are done, for time-sliced
    jobs; resuming continues exactly as if the run had not stopped.

    The step, data order, checkpoints and processes are the engine's (:mod:`probes.train.engine`): under
    ``accelerate launch`` / ``torchrun`` every process calls this with the same arguments, each trains on its
    shard of every global batch, and only the main process writes the run directory and calls ``on_step``.
    The run directory's writer lock is held throughout (:mod:`probes.train.lock`): a second writer of the
    same directory fails with one line naming this process. A non-finite training loss stops the run with
    status ``diverged`` and raises :class:`RunDiverged`."""
    engine = Engine(cfg.train.device, cfg.train.gradient_accumulation_steps)
    check_divisible(cfg.train.batch_size, engine.world)
    if (cfg.train.batch_size // engine.world) % engine.accumulation:
        raise UserError(
            f"batch size {cfg.train.batch_size} is not divisible into {engine.world} process(es) x "
            f"{engine.accumulation} gradient accumulation steps"
        )
    backbone = load_backbone(cfg.model.name, seed=BASE_MODEL_SEED)  # bad names fail before any file exists
    task = build_task_for(cfg, backbone.vocab_size)
    if cfg.train.gradient_checkpointing:  # before the run directory is touched: an unsupported model is one line
        engine.gradient_checkpointing(backbone.model, cfg.model.name)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} exists and is not a directory")
    with engine.writing(run_dir):
        return _run_locked(cfg, run_dir, engine, backbone, task, resume, overwrite, on_step, stop_after)


def _run_locked(
    cfg: RunConfig,
    run_dir: Path,
    engine: Engine,
    backbone: Any,
    task: ProbeTask,
    resume: bool,
    overwrite: bool,
    on_step: StepCallback | None,
    stop_after: int | None,
) -> dict[str, Any]:
    t = cfg.train
    main = engine.is_main
    model = backbone.model
    action = engine.on_main(lambda: rundir.prepare(run_dir, resume, overwrite, partial(_differences, cfg)))
    if action == FINISHED:  # nothing to train; the run may keep no checkpoint (--no-save-final)
        return engine.on_main(lambda: _finished_summary(run_dir, cfg))
    resuming = action == CONTINUE
    first = add_tokens(model, len(task.new_tokens), cfg.model.init_strategy, cfg.model.init_seed)
    assert first == task.first_new_id, (first, task.first_new_id)
    model.to(engine.device).train()
    mamba_path = enable_mamba_fast_path(model)  # after the move: the path depends on the model's device
    optimizer = engine.optimizer(model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    step_fn = engine.step(TargetLogits(model), optimizer, scheduler=warmup_schedule(optimizer, t.warmup_steps))
    writer = rundir.RunWriter(run_dir)
    state: dict[str, Any] = {"step": 0, "reached_step": None, "wall_time": 0.0, "best_acc": 0.0, "final_acc": None}
    if resuming:
        state, note = engine.load(run_dir, step_fn)

        def check_resumed() -> None:
            notes = [note, _resume_config(run_dir, cfg, state), writer.truncate_to(state["step"])]
            if any(notes):
                rundir.say(f"{run_dir}: " + "; ".join(n for n in notes if n))

        engine.on_main(check_resumed)
    else:
        _seed_everything(t.seed)  # dropout and any other sampling start from the data seed

        def start() -> None:
            config_json = cfg.to_dict()
            config_json["model"] |= {"family": backbone.family, "n_params": backbone.n_params()}
            writer.write_json(CONFIG, config_json)
            writer.write_json(MANIFEST, {**task.manifest(), "disjoint_check": _disjoint_record(task, cfg)})

        engine.on_main(start)
    state["config"] = cfg.to_dict()
    if main:
        writer.write_json(ENV, engine.environment(mamba_path, mamba_path_note(model)))

    order = DataOrder(t.n_train, t.batch_size, t.seed, PROBE_STRIDE)
    interval = t.eval_interval
    # FSDP gathers parameters inside the wrapped forward: evaluate through it; otherwise through the plain
    # module (a DDP forward would broadcast buffers, a collective the held-out loop need not pay for).
    eval_module = step_fn.module if engine.sharded else engine.unwrap(step_fn.module)

    def summary(status: str, error: str | None = None) -> dict[str, Any]:
        reached = state["reached_step"]
        out = {
            "status": status,
            "reached": reached is not None,
            "threshold": t.threshold,
            "steps_to_threshold": reached,
            "samples_to_threshold": None if reached is None else reached * t.batch_size,
            "final_acc": state["final_acc"],
            "best_acc": state["best_acc"],
            "steps_done": state["step"],
            "max_steps": t.max_steps,
            "wall_time": round(state["wall_time"], 3),
            "mamba_path": mamba_path,
            "error": error,
        }
        if main:
            writer.write_json(SUMMARY, rundir.stamp(out))
            writer.last_heartbeat = time.time()
        return out

    summary("running")
    start_wall = time.perf_counter() - state["wall_time"]
    step = state["step"]
    last_acc = state["final_acc"]
    saved_at = step
    with recorded(summary):
        while step < t.max_steps and not (t.early_stop and state["reached_step"] is not None):
            indices = shard(order.indices(step), engine.rank, engine.world)
            try:
                result = step_fn(micro_losses(step_fn.module, task, indices, engine))
            except NonFiniteLoss as exc:
                raise RunDiverged(
                    f"{run_dir.name} diverged: the training loss became {exc.value} at step {step + 1} "
                    f"(lr {t.lr:g}); try a lower --lr"
                ) from None
            step += 1
            state["step"] = step
            state["wall_time"] = time.perf_counter() - start_wall
            if main and step % t.train_log_every == 0:
                writer.append(
                    {"kind": "train", "step": step, "samples_seen": step * t.batch_size,
                     "wall_time": round(state["wall_time"], 3), "loss": result.loss, "lr": result.lr}
                )
            evaluated = step % interval == 0 or step == t.max_steps
            if evaluated:
                ev = evaluate(eval_module, task, t.eval_samples, t.eval_batch_size, engine.device,
                              engine.autocast_dtype, engine=engine)
                last_acc = ev.accuracy
                state["final_acc"] = ev.accuracy
                state["best_acc"] = max(state["best_acc"], ev.accuracy)
                if ev.accuracy >= t.threshold and state["reached_step"] is None:
                    state["reached_step"] = step
                state["wall_time"] = time.perf_counter() - start_wall
                if main:
                    writer.add_eval(
                        {"kind": "eval", "step": step, "samples_seen": step * t.batch_size,
                         "frac_steps": step / t.max_steps, "wall_time": round(state["wall_time"], 3),
                         "heldout_loss": ev.loss, "heldout_acc": ev.accuracy,
                         "per_position_acc": ev.per_position_acc, "per_position_count": ev.per_position_count},
                        ev.per_position_count,
                    )
            done = step >= t.max_steps or (t.early_stop and state["reached_step"] is not None)
            # --save-every (default: at every evaluation); the final checkpoint only with --save-final
            if step % t.save_interval == 0 and (t.save_final or not done):
                engine.save(run_dir, state, step_fn, t.save_total_limit)
                saved_at = step
            if evaluated or (main and writer.heartbeat_due()):
                summary("running")  # the heartbeat
            if on_step is not None and main:
                on_step(step, {"loss": result.loss, "acc": last_acc, "max_steps": t.max_steps,
                               "wall_time": state["wall_time"], "evaluated": evaluated})
            if stop_after is not None and step >= stop_after and not done:
                if saved_at != step:
                    engine.save(run_dir, state, step_fn, t.save_total_limit)
                return summary("stopped")
        if t.save_final and saved_at != step:
            engine.save(run_dir, state, step_fn, t.save_total_limit)
    out = summary("finished")
    if not t.save_final:  # after the summary says finished: a kill in between leaves a finished run
        engine.on_main(lambda: checkpoint.remove_all(run_dir))
    return out


def micro_losses(module: torch.nn.Module, task: ProbeTask, indices: torch.Tensor, engine: Engine) -> Any:
    """The step's loss function(s) for this process's shard ``indices``: one, or one per equal micro-batch
    under gradient accumulation, each generating its samples only when it runs (the memory accumulation
    saves includes the batch's activations)."""

    def loss(part: torch.Tensor) -> torch.Tensor:
        return probe_loss(module, task.generate("train", part.to(engine.device)))

    if engine.accumulation == 1:
        return partial(loss, indices)
    return [partial(loss, part) for part in indices.chunk(engine.accumulation)]


def _finished_summary(run_dir: Path, cfg: RunConfig) -> dict[str, Any]:
    """``--resume`` of a finished run: the same config is checked, nothing is trained or rewritten."""
    saved = rundir.read_json_or_none(run_dir / CONFIG)
    diffs = _differences(cfg, saved) if saved is not None else []
    if diffs:
        raise UserError(
            f"{run_dir} was started with a different configuration ({'; '.join(diffs)}); resume it with the "
            "same options, or use --overwrite or another --out"
        )
    rundir.say(f"{run_dir}: already finished; nothing to resume")
    return rundir.read_json_or_none(run_dir / SUMMARY) or {}


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
