"""The training engine every trainer shares (README "One engine, one or many processes"): device and processes, the optimisation step,
checkpoints, the run's end states and its environment record, all on accelerate.

The probe trainer (:mod:`probes.train.loop`), the VLM trainer (:mod:`probes.vlm.train`) and ``probes bench
step`` (:mod:`probes.bench.probe`) build an :class:`Engine` and take their steps through one
:class:`TrainStep`, so what the benchmark times is the step the trainers take: forward under the engine's
autocast (bf16 on CUDA), the loss averaged over processes and checked for finiteness *before* the update (a
diverged run's checkpoint keeps finite weights), backward, optional gradient clipping, fused AdamW on CUDA,
the LR schedule, ``zero_grad``.

Processes: one process by default; under ``accelerate launch`` / ``torchrun`` (``probes synth
--num-processes N``) accelerate wraps the model in DDP (gloo on CPUs, NCCL on GPUs) or FSDP (``accelerate
launch --use_fsdp``), and each process takes its shard of every global batch (:mod:`probes.train.order`).
Only the main process writes into the run directory; decisions that could fail there (is the directory
resumable? is the config the same?) are taken once on the main process and shared (:meth:`Engine.on_main`),
so a refusal is one error line on every process instead of a hang.

Checkpoints are accelerate's ``save_state`` (sharded under FSDP) inside the verified, rotated layout of
:mod:`probes.train.checkpoint`; the LR scheduler's state goes into ``state.json`` as JSON (accelerate would
pickle a registered scheduler).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from probes.errors import UserError

from . import checkpoint

T = TypeVar("T")


class RunDiverged(UserError):
    """The training loss became NaN or infinite: the run stops with status ``diverged``."""


class NonFiniteLoss(Exception):
    """Raised by :class:`TrainStep` before the update; the trainer turns it into :class:`RunDiverged` with
    what the user needs to know (run, step, lr)."""

    def __init__(self, value: float) -> None:
        super().__init__(f"non-finite loss {value}")
        self.value = value


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``; one error line for anything else."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda requested but CUDA is not available")
    return device


def launched_processes() -> int:
    """How many processes ``accelerate launch`` / ``torchrun`` started (1 outside them)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class Engine:
    """One accelerate ``Accelerator`` for one run: device, precision, processes, checkpoints.

    A process may train several runs one after another (a sweep, the tests); each engine states its own device
    and precision, so accelerate's shared state is reset first (the process group, if any, is kept)."""

    def __init__(self, device: str = "auto", gradient_accumulation_steps: int = 1) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        # accelerate warns at every save that tied weights (Mamba's embedding and head) were stored once; they
        # are tied again on load, and resuming is tested exact for tied heads: the line is noise in progress
        logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)
        requested = resolve_device(device)
        if requested.type == "cuda" and requested.index is not None and launched_processes() == 1:
            torch.cuda.set_device(requested)  # accelerate's single-process device is the current one
        AcceleratorState._reset_state()
        if gradient_accumulation_steps < 1:
            raise UserError(f"gradient accumulation steps must be >= 1 (got {gradient_accumulation_steps})")
        self.acc = Accelerator(
            cpu=requested.type == "cpu", mixed_precision="bf16" if requested.type == "cuda" else "no",
            gradient_accumulation_steps=gradient_accumulation_steps,
        )

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimisation step (accelerate's ``gradient_accumulation_steps``)."""
        return int(self.acc.gradient_accumulation_steps)

    # --- processes --------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.acc.device

    @property
    def rank(self) -> int:
        return int(self.acc.process_index)

    @property
    def world(self) -> int:
        return int(self.acc.num_processes)

    @property
    def is_main(self) -> bool:
        return bool(self.acc.is_main_process)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of every forward (bf16 on CUDA, none on CPUs)."""
        return torch.bfloat16 if self.acc.mixed_precision == "bf16" else None

    @property
    def precision(self) -> str:
        return str(self.autocast_dtype or "float32")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return self.acc.autocast()

    def barrier(self) -> None:
        self.acc.wait_for_everyone()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over processes (itself with one process)."""
        return self.acc.reduce(tensor, reduction="sum") if self.world > 1 else tensor

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the main process only; the other processes get its result, or its error line.

        For the steps that touch the run directory (prepare, compare configs, read checkpoints' metadata):
        they happen once, and a refusal reaches every process, so none waits for a peer that has quit."""
        result: Any = None
        error: str | None = None
        crashed: BaseException | None = None
        if self.is_main:
            try:
                result = fn()
            except UserError as exc:
                error = str(exc)
            except BaseException as exc:  # shared as an error line, re-raised as itself on the main process
                error, crashed = f"the main process failed ({type(exc).__name__})", exc
        if self.world > 1:
            from accelerate.utils import broadcast_object_list

            box = [(result, error)]
            broadcast_object_list(box, from_process=0)
            result, error = box[0]
        if crashed is not None:
            raise crashed
        if error is not None:
            raise UserError(error)
        return result

    @contextlib.contextmanager
    def writing(self, run_dir: Path) -> Iterator[None]:
        """The run directory's writer lock, held by the main process (the only writer) for the whole run."""
        if not self.is_main:
            yield
            return
        from .lock import writer_lock

        with writer_lock(run_dir):
            yield

    # --- model and step ---------------------------------------------------------------------------------
    def optimizer(
        self, params: Any, *, lr: float, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0
    ) -> torch.optim.Optimizer:
        """AdamW, fused on CUDA (one kernel per step instead of one per tensor), the same for every trainer."""
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay,
                                 fused=self.device.type == "cuda")

    def step(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        scheduler: Any = None,
        clip: float | None = None,
    ) -> TrainStep:
        """Prepare ``module`` and ``optimizer`` for this engine (DDP / FSDP wrapping when launched on several
        processes) and return the step that trains them. The scheduler is not prepared: accelerate would
        step it once per process; here every step is a global step already."""
        module, optimizer = self.acc.prepare(module, optimizer)
        return TrainStep(self, module, optimizer, scheduler, clip)

    @staticmethod
    def gradient_checkpointing(model: torch.nn.Module, name: str) -> None:
        """Recompute activations in the backward pass instead of storing them, through the model's own
        support (transformers' ``supports_gradient_checkpointing``; ``activation_checkpointing_enable``, the
        name transformers 5.x gives ``gradient_checkpointing_enable``; non-reentrant checkpoints). A model
        that does not support it is one error line."""
        enable = getattr(model, "activation_checkpointing_enable", None)
        kwargs = {"activation_checkpointing_kwargs": {"use_reentrant": False}}
        if enable is None:  # transformers 4.x
            enable = getattr(model, "gradient_checkpointing_enable", None)
            kwargs = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
        if not getattr(model, "supports_gradient_checkpointing", False) or enable is None:
            raise UserError(
                f"model {name} ({type(model).__name__}) does not support gradient checkpointing; "
                "drop --gradient-checkpointing"
            )
        enable(**kwargs)

    def unwrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return self.acc.unwrap_model(module)

    @property
    def sharded(self) -> bool:
        """FSDP: parameters live in shards; forwards must go through the prepared module."""
        return "FSDP" in str(self.acc.distributed_type)

    def full_state_dict(self, module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        """Under FSDP the whole model's weights gathered for the main process (every process must call
        this); None otherwise, where the unwrapped module's own weights are complete."""
        return self.acc.get_state_dict(module) if self.sharded else None

    # --- checkpoints ------------------------------------------------------------------------------------
    def save(self, run_dir: Path, state: dict[str, Any], step: TrainStep, keep: int = 2) -> None:
        """A verified, rotated checkpoint of the model, optimizer and RNGs, with ``state`` (and the scheduler's
        state) in its ``state.json``; every process takes part (FSDP shards), the main one rotates and keeps
        the newest ``keep`` checkpoints."""
        checkpoint.save_accelerate_checkpoint(self.acc, run_dir, {**state, "scheduler": step.scheduler_state()}, keep)

    def load(self, run_dir: Path, step: TrainStep) -> tuple[dict[str, Any], str | None]:
        """Restore the newest checkpoint that verifies (else the one before); ``(state, note or None)``."""
        state, note = checkpoint.load_accelerate_checkpoint(self.acc, run_dir)
        step.restore_scheduler(state.get("scheduler"), int(state["step"]))
        return state, note

    # --- environment record -----------------------------------------------------------------------------
    def environment(self, mamba_path: str | None, mamba_path_note: str | None = None) -> dict[str, Any]:
        """What a run ran on: versions, device, precision, processes, threads, the Mamba scan path (and why,
        when it is a fallback: `probes.ssm.patch.mamba_path_note`)."""
        return environment(
            self.device, mamba_path, self.precision,
            num_processes=self.world, distributed_type=str(self.acc.distributed_type).split(".")[-1],
            mamba_path_note=mamba_path_note,
        )


def environment(
    device: torch.device,
    mamba_path: str | None = None,
    dtype: str = "float32",
    *,
    num_processes: int = 1,
    distributed_type: str = "NO",
    mamba_path_note: str | None = None,
) -> dict[str, Any]:
    """The environment record of a run directory (``env.json``) and of a benchmark."""
    import accelerate
    import numpy as np
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": name,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "num_processes": num_processes,
        "distributed_type": distributed_type,
        "mamba_path": mamba_path,
        "mamba_path_note": mamba_path_note,
    }


@dataclass
class StepResult:
    loss: float  # the global batch's mean loss (averaged over processes)
    lr: float  # the learning rate this step used


class TrainStep:
    """One optimisation step of a prepared model: ``step(loss_fn)`` with ``loss_fn()`` computing the process's
    mean loss on its shard of the global batch (called under the engine's autocast)."""

    def __init__(
        self, engine: Engine, module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
        clip: float | None,
    ) -> None:
        self.engine, self.module, self.optimizer, self.scheduler, self.clip = engine, module, optimizer, scheduler, clip
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def forward_backward(self, loss_fn: Callable[[], torch.Tensor]) -> float:
        """Forward and backward; returns the mean loss over processes. :class:`NonFiniteLoss` is raised
        before ``backward`` so the weights (and the last checkpoint) stay finite."""
        acc = self.engine.acc
        with acc.autocast():
            loss = loss_fn()
        value = float(acc.reduce(loss.detach().float(), reduction="mean")) if acc.num_processes > 1 else loss.item()
        if not math.isfinite(value):
            raise NonFiniteLoss(value)
        acc.backward(loss)
        return value

    def update(self) -> None:
        """Clip (when asked), AdamW, the scheduler, ``zero_grad``."""
        acc = self.engine.acc
        if self.clip is not None and acc.sync_gradients:
            acc.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def __call__(self, loss_fn: Callable[[], torch.Tensor] | Sequence[Callable[[], torch.Tensor]]) -> StepResult:
        """One optimisation step. With gradient accumulation (``Engine(gradient_accumulation_steps=k)``)
        ``loss_fn`` is a sequence of ``k`` callables, one per equal-sized micro-batch of the process's shard:
        each is forward and backward under accelerate's ``accumulate`` (gradients of the first ``k - 1`` are
        not synchronised between processes; ``backward`` scales each loss by ``1 / k``), so the update is that
        of the whole batch's mean loss; the reported loss is the mean over micro-batches."""
        fns = list(loss_fn) if isinstance(loss_fn, list | tuple) else [loss_fn]
        k = self.engine.accumulation
        if len(fns) != k:
            raise ValueError(f"{len(fns)} micro-batch loss(es) for {k} gradient accumulation step(s)")
        lr = self.lr
        losses = []
        for fn in fns:
            with self.engine.acc.accumulate(self.module) if k > 1 else contextlib.nullcontext():
                losses.append(self.forward_backward(fn))
        self.update()
        return StepResult(sum(losses) / k, lr)

    def scheduler_state(self) -> dict[str, Any] | None:
        return None if self.scheduler is None else checkpoint.scheduler_state(self.scheduler)

    def restore_scheduler(self, saved: dict[str, Any] | None, step: int) -> None:
        if self.scheduler is not None:
            checkpoint.restore_scheduler(self.scheduler, saved, step)


def warmup_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base lr over ``warmup_steps`` steps (step ``s`` uses ``min(1, (s+1)/w)``), then
    constant; ``warmup_steps == 0`` is constant from the start."""
    w = warmup_steps
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / w) if w else 1.0)


@contextlib.contextmanager
def recorded(write_summary: Callable[[str, str | None], Any]) -> Iterator[None]:
    """Every way a run can end early is written into its summary before the exception goes on:
    ``interrupted`` (Ctrl-C, SIGTERM), ``diverged`` (:class:`RunDiverged`), ``failed`` (anything else, with
    its first line). When even that cannot be written (a full disk), the writer lock, released as the process
    ends, is what tells ``probes status`` that the run is dead."""
    try:
        yield
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            write_summary("interrupted", None)
        raise
    except RunDiverged as exc:
        write_summary("diverged", str(exc))
        raise
    except Exception as exc:
        message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            write_summary("failed", message.splitlines()[0] if message else type(exc).__name__)
        raise
