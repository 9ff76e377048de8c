"""Run configuration: what a probe run is, as recorded in its run directory (defaults: the paper's App. C.4 protocol).

One config system: these are pydantic dataclasses (like the VLM's pydantic models), so every field is
type-checked on construction (``--init-seed 1.7`` or ``lr: inf`` are errors, not truncations), unknown keys are
rejected (a typo in a config file or a resumed ``config.json`` never silently changes a run), and they still
construct positionally and work with :func:`dataclasses.asdict` / :func:`dataclasses.replace`.
:func:`run_config_from_dict` turns any validation error into a one-line :class:`UserError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, field
from typing import Any

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

from probes.errors import UserError

SCHEMA_VERSION = 1
PAPER_LRS: tuple[float, ...] = (1e-5, 5e-5, 1e-4)
PAPER_INIT_SEEDS: tuple[int, ...] = (0, 1, 2)

# extra="forbid": unknown keys are errors; allow_inf_nan=False: an lr of inf or nan is refused up front
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True, config=STRICT)
class ModelSpec:
    name: str = "pythia-tiny"
    init_strategy: str = "mean"
    init_seed: int = 0


@dataclass(frozen=True, config=STRICT)
class TaskSpec:
    name: str = "grounding"
    params: dict[str, Any] = field(default_factory=dict)  # the task config's fields except context_offset


@dataclass(frozen=True, config=STRICT)
class TrainConfig:
    lr: float = 1e-4
    batch_size: int = 64
    max_steps: int = 78_000
    eval_every: int | None = None  # None -> 1% of max_steps
    eval_samples: int = 100_000
    eval_batch_size: int = 512
    threshold: float = 0.95
    early_stop: bool = True
    # early stop waits until every third of the target positions (beginning / middle / end, the learning-order
    # bands of README "Learning order") has mean held-out accuracy >= threshold, so the last band learned is
    # observed rather than censored by the overall threshold; the budget still caps the run
    stop_after_bands: bool = False
    n_train: int = 1_000_000
    seed: int = 0  # data order
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    train_log_every: int = 10
    device: str = "auto"
    verify_disjoint: bool = True
    # paper scale (README "Disk and memory at paper scale"): how the run is computed and saved, not what it is
    save_every: int | None = None  # checkpoint cadence in steps (HF save_steps); None: at every evaluation
    save_total_limit: int = 2  # checkpoints kept (HF save_total_limit): the newest and the ones before it
    save_final: bool = True  # keep the final checkpoint of a finished run (False: removed when it finishes)
    gradient_accumulation_steps: int = 1  # micro-batches per step; the global batch stays batch_size
    gradient_checkpointing: bool = False  # recompute activations in backward (model.gradient_checkpointing_enable)

    def __post_init__(self) -> None:
        checks = [
            (self.lr > 0, f"lr must be > 0 (got {self.lr})"),
            (self.batch_size >= 1, f"batch size must be >= 1 (got {self.batch_size})"),
            (self.max_steps >= 1, f"max steps must be >= 1 (got {self.max_steps})"),
            (self.eval_every is None or self.eval_every >= 1, "eval_every must be >= 1"),
            (self.eval_samples >= 1, f"eval samples must be >= 1 (got {self.eval_samples})"),
            (self.eval_batch_size >= 1, f"eval batch size must be >= 1 (got {self.eval_batch_size})"),
            (0 < self.threshold <= 1, f"threshold must be in (0, 1] (got {self.threshold})"),
            (self.n_train >= self.batch_size, "n_train must be at least one batch"),
            (self.weight_decay >= 0, f"weight decay must be >= 0 (got {self.weight_decay})"),
            (all(0 <= b < 1 for b in self.betas), f"betas must be in [0, 1) (got {self.betas})"),
            (self.warmup_steps >= 0, f"warmup steps must be >= 0 (got {self.warmup_steps})"),
            (self.train_log_every >= 1, f"train_log_every must be >= 1 (got {self.train_log_every})"),
            (self.save_every is None or self.save_every >= 1, f"save every must be >= 1 (got {self.save_every})"),
            (self.save_total_limit >= 1, f"save total limit must be >= 1 (got {self.save_total_limit})"),
            (self.gradient_accumulation_steps >= 1,
             f"gradient accumulation steps must be >= 1 (got {self.gradient_accumulation_steps})"),
            (self.batch_size % self.gradient_accumulation_steps == 0,
             f"batch size {self.batch_size} is not divisible by {self.gradient_accumulation_steps} gradient "
             "accumulation steps"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)

    @property
    def eval_interval(self) -> int:
        return self.eval_every if self.eval_every is not None else max(1, self.max_steps // 100)

    @property
    def save_interval(self) -> int:
        return self.save_every if self.save_every is not None else self.eval_interval


#: Training fields that change how a run is saved or computed but not its data, steps or metrics: a run may be
#: resumed with other values (e.g. a smaller --save-total-limit to free disk). Gradient accumulation is not
#: among them: its micro-batch sums round differently in floating point.
RESUMABLE_CHANGES = ("save_every", "save_total_limit", "save_final", "gradient_checkpointing")
#: Training fields added after schema_version 1 was written: a ``config.json`` without them had their defaults.
NEWER_FIELDS = (*RESUMABLE_CHANGES, "gradient_accumulation_steps", "stop_after_bands")


@dataclass(frozen=True, config=STRICT)
class RunConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    task: TaskSpec = field(default_factory=TaskSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}


def config_changes(saved: dict[str, Any], cfg: RunConfig) -> list[str]:
    """The fields in which a run directory's ``config.json`` (``saved``) differs from ``cfg``, as
    ``"train.lr: 0.0001 in the run, 0.001 now"``. Not compared: the trainer's informational ``model.family`` /
    ``model.n_params`` and :data:`RESUMABLE_CHANGES`; a field that a run written before it existed lacks
    counts as its default. What ``--resume`` and the launchers refuse."""
    from .layout import config_differences

    saved = dict(saved)
    if isinstance(saved.get("train"), dict):
        defaults = asdict(TrainConfig(lr=cfg.train.lr))
        saved["train"] = {**{k: defaults[k] for k in NEWER_FIELDS}, **saved["train"]}
    ignore = ("model.family", "model.n_params", *(f"train.{k}" for k in RESUMABLE_CHANGES))
    return config_differences(saved, cfg.to_dict(), ignore=ignore)


def validation_message(exc: ValidationError) -> str:
    """The first problem of a pydantic error as one line: ``train.lr: Input should be a finite number``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
    value = err.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float | bool) else ""
    msg = str(err.get("msg", exc)).removeprefix("Value error, ")
    return f"{where + ': ' if where else ''}{msg}{shown}"


def run_config_from_dict(d: dict[str, Any]) -> RunConfig:
    """Inverse of :meth:`RunConfig.to_dict`; unknown or mistyped keys are a one-line error."""
    if not isinstance(d, dict):
        raise UserError("run config is not valid: expected a JSON object")
    d = dict(d)
    version = d.pop("schema_version", None)
    if version != SCHEMA_VERSION:
        raise UserError(f"run config schema_version {version} is not supported (expected {SCHEMA_VERSION})")
    try:
        model = dict(d.pop("model"))
        task = dict(d.pop("task"))
        train = dict(d.pop("train"))
        model.pop("family", None), model.pop("n_params", None)  # informational fields written by the trainer
        if "betas" in train and isinstance(train["betas"], list):
            train["betas"] = tuple(train["betas"])
        return RunConfig(ModelSpec(**model), TaskSpec(**task), TrainConfig(**train), **d)
    except ValidationError as exc:
        raise UserError(f"run config is not valid: {validation_message(exc)}") from None
    except (TypeError, KeyError, ValueError) as exc:
        raise UserError(f"run config is not valid: {exc}") from None


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)
