"""A sweep: every run one `probes synth` command (or one config file) asks for, as one validated spec.

The paper's protocol (SPEC §2) is a grid: models × lengths × orders × learning rates × init seeds, each run
with the same data and data order. :class:`SweepSpec` holds that grid with every training field, so a YAML
file can set anything a flag can (``--config FILE.yaml``; flags given on the command line override the
file's values). Keys are the flags' names with ``_`` for ``-`` (one name per concept): ``models``, ``len``,
``order``, ``lr``, ``init``, ``init_seed``, ``batch_size`` … List keys also take a single value.

``--len 50,100,200 --order suffix,prefix --models A,B --grid`` plans 3 × 2 × 2 × 3 lrs × 3 seeds = 108 runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from probes.errors import UserError

from .config import PAPER_INIT_SEEDS, PAPER_LRS, TaskSpec, TrainConfig, validation_message
from .grid import PlannedRun, plan

ORDERS = ("suffix", "prefix")
_LIST_KEYS = ("models", "len", "order", "lr", "init_seed")
_TRAIN = TrainConfig()  # the defaults of every training field


class SweepSpec(BaseModel):
    """What to train. Field names are the `probes synth` flag names (``--init-seed`` → ``init_seed``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    models: list[str] = Field(default_factory=lambda: ["pythia-tiny"], min_length=1)
    task: str = "grounding"
    len: list[int] = Field(default_factory=lambda: [200], min_length=1)
    order: list[str] = Field(default_factory=lambda: ["suffix"], min_length=1)
    grid: bool = False  # the paper's lrs × init seeds, unless lr / init_seed are given explicitly
    lr: list[float] | None = None  # None: 1e-4, or the paper's three with grid
    init: str = "mean"
    init_seed: list[int] | None = None  # None: 0, or the paper's three with grid
    pool: int | None = None
    seed: int = 0  # data seed and data order: the same for every model
    param: dict[str, Any] = Field(default_factory=dict)  # extra task parameters (key=value)
    out: str = "runs"
    report_to: list[str] = Field(default_factory=list)  # trackers mirroring metrics.jsonl (not part of a run)
    # TrainConfig's fields but lr (swept above; ``seed`` is shared with the task): defaults come from
    # TrainConfig itself, so the two never drift apart
    batch_size: int = _TRAIN.batch_size
    max_steps: int = _TRAIN.max_steps
    eval_every: int | None = _TRAIN.eval_every
    eval_samples: int = _TRAIN.eval_samples
    eval_batch_size: int = _TRAIN.eval_batch_size
    n_train: int = _TRAIN.n_train
    threshold: float = _TRAIN.threshold
    early_stop: bool = _TRAIN.early_stop
    weight_decay: float = _TRAIN.weight_decay
    betas: tuple[float, float] = _TRAIN.betas
    warmup_steps: int = _TRAIN.warmup_steps
    train_log_every: int = _TRAIN.train_log_every
    device: str = _TRAIN.device
    verify_disjoint: bool = _TRAIN.verify_disjoint
    save_every: int | None = _TRAIN.save_every
    save_total_limit: int = _TRAIN.save_total_limit
    save_final: bool = _TRAIN.save_final
    gradient_accumulation_steps: int = _TRAIN.gradient_accumulation_steps
    gradient_checkpointing: bool = _TRAIN.gradient_checkpointing

    @field_validator(*_LIST_KEYS, mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None or isinstance(value, list | tuple):
            return value
        if isinstance(value, str) and "," in value:
            return [v.strip() for v in value.split(",") if v.strip()]
        return [value]

    @field_validator("report_to", mode="before")
    @classmethod
    def _trackers(cls, value: Any) -> list[str]:
        from .trackers import parse_report_to

        return parse_report_to(",".join(value) if isinstance(value, list | tuple) else value)

    @field_validator("lr", "init_seed")
    @classmethod
    def _not_empty(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None and not value:
            raise ValueError("needs at least one value")
        return value

    @field_validator("order")
    @classmethod
    def _orders(cls, value: list[str]) -> list[str]:
        bad = [o for o in value if o not in ORDERS]
        if bad:
            raise ValueError(f"unknown order {bad[0]!r}: use {' or '.join(ORDERS)}")
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        names = [m.strip() for m in value if m.strip()]
        if not names:
            raise ValueError("needs at least one model")
        return names

    @property
    def lrs(self) -> list[float]:
        return list(self.lr) if self.lr is not None else (list(PAPER_LRS) if self.grid else [1e-4])

    @property
    def init_seeds(self) -> list[int]:
        return list(self.init_seed) if self.init_seed is not None else (list(PAPER_INIT_SEEDS) if self.grid else [0])

    def train_config(self) -> TrainConfig:
        fields = {k: getattr(self, k) for k in TrainConfig.__dataclass_fields__ if k not in ("lr",) and hasattr(self, k)}
        return TrainConfig(lr=self.lrs[0], **fields)

    def task_spec(self, length: int, order: str) -> TaskSpec:
        params: dict[str, Any] = {"length": length, "order": order, "seed": self.seed, **self.param}
        if self.pool is not None:
            params["pool"] = self.pool
        return TaskSpec(self.task, params)

    def plan(self) -> list[PlannedRun]:
        """Every run in a stable order: length, order, then model × lr × init seed (:func:`grid.plan`)."""
        train = self.train_config()
        runs: list[PlannedRun] = []
        for length in self.len:
            for order in self.order:
                runs += plan(self.models, self.task_spec(length, order), train, self.lrs, self.init_seeds,
                             self.init, Path(self.out))
        return runs


def load_sweep_file(path: Path) -> dict[str, Any]:
    """The mapping a YAML (or JSON) config file holds; one-line errors for unreadable or malformed files."""
    import yaml

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_sweep(file_values: dict[str, Any], flag_values: dict[str, Any]) -> SweepSpec:
    """File values, overridden by the flags given on the command line; one-line error naming the key."""
    try:
        return SweepSpec.model_validate({**file_values, **flag_values})
    except ValidationError as exc:
        loc = exc.errors()[0].get("loc", ())
        if exc.errors()[0].get("type") == "extra_forbidden":
            known = ", ".join(SweepSpec.model_fields)
            raise UserError(f"unknown option {loc[0]!r} in the config file; known: {known}") from None
        flag = f"--{str(loc[0]).replace('_', '-')}" if loc else "option"
        where = "command line" if loc and loc[0] in flag_values else "config file"
        raise UserError(f"{flag} ({where}): {validation_message(exc).split(': ', 1)[-1]}") from None
