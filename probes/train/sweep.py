"""A sweep: every run one `probes synth` command (or one config file) asks for, as one validated spec.

The paper's protocol (App. C.4) is a grid: models × lengths × orders × learning rates × init seeds, each run
with the same data and data order. :class:`SweepSpec` holds that grid with every training field, so a YAML
file can set anything a flag can (``--config FILE.yaml``; flags given on the command line override the
file's values). Keys are the flags' names with ``_`` for ``-`` (one name per concept): ``models`` (or
``model``), ``len``, ``order``, ``lr``, ``init``, ``init_seed``, ``batch_size`` … List keys also take a single
value or a comma-separated string.

One place declares the options: the sweep's own fields are written out below, and every field of
:class:`~probes.train.config.TrainConfig` but ``lr`` (swept) and ``seed`` (the data seed, shared with the task)
is added automatically with TrainConfig's default, so a new training setting is a config-file key at once; the
`probes synth` flags are derived from these fields (``probes.cli.options``), so it is a flag too.

``--len 50,100,200 --order suffix,prefix --models A,B --grid`` plans 3 × 2 × 2 × 3 lrs × 3 seeds = 108 runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from probes.errors import UserError

from .config import PAPER_INIT_SEEDS, PAPER_LRS, TaskSpec, TrainConfig, validation_message
from .grid import PlannedRun, plan

_LIST_KEYS = ("models", "len", "order", "lr", "init_seed")
#: TrainConfig fields that are not sweep options of their own: lr is swept (``lr`` above), seed is the task's.
_NOT_OPTIONS = ("lr", "seed")
#: Help of the TrainConfig fields (flag help and README); a field missing here still becomes an option.
TRAIN_HELP: dict[str, str] = {
    "batch_size": "Global batch size (paper: 64).",
    "max_steps": "Step budget (paper: 78000).",
    "eval_every": "Eval interval in steps (default: 1% of the budget, the paper's).",
    "eval_samples": "Held-out samples per evaluation (paper: 100000).",
    "eval_batch_size": "Batch size of the held-out evaluation (memory only).",
    "threshold": "Early-stop held-out accuracy (paper: 0.95).",
    "early_stop": "Stop a run once held-out accuracy reaches the threshold (--no-early-stop: full budget).",
    "n_train": "Training set size (paper: 1000000).",
    "weight_decay": "AdamW weight decay.",
    "betas": "AdamW betas, two comma-separated values.",
    "warmup_steps": "Linear lr warm-up steps.",
    "train_log_every": "Log the training loss every N steps.",
    "device": "auto, cpu, cuda, cuda:1 …",
    "verify_disjoint": "Check by hashing that train and held-out contexts are disjoint before training.",
    "save_every": "Checkpoint every N steps (HF save_steps; default: at every evaluation).",
    "save_total_limit": "Checkpoints kept per run (HF save_total_limit); 1 keeps none to fall back to.",
    "save_final": "Keep the final checkpoint of a finished run (--no-save-final: metrics only).",
    "gradient_accumulation_steps": "Micro-batches per step (accelerate); the global batch stays --batch-size.",
    "gradient_checkpointing": "Recompute activations in backward (the model's transformers support).",
}


class _SweepOptions(BaseModel):
    """The sweep's own fields (what to train); :class:`SweepSpec` adds the training fields."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, populate_by_name=True)

    models: list[str] = Field(default_factory=lambda: ["pythia-tiny"], min_length=1,
                              validation_alias=AliasChoices("models", "model"),
                              description="Backbone(s), comma-separated: preset, local dir or HF id.")
    task: str = Field("grounding", description="Probe task: grounding, mqar, copying, induction.")
    len: list[int] = Field(default_factory=lambda: [200], min_length=1, description="Context length(s) L.")
    order: list[str] = Field(default_factory=lambda: ["suffix"], min_length=1,
                             description="Layout(s): suffix (query last), prefix (query first).")
    grid: bool = Field(False, description="The paper's lrs {1e-5,5e-5,1e-4} x init seeds {0,1,2}.")
    lr: list[float] | None = Field(None, description="Learning rate(s) (default 1e-4, or the paper's three with grid).")
    init: str = Field("mean", description="New-row init: mean, normal, sample.")
    init_seed: list[int] | None = Field(None, description="Init seed(s) (default 0, or 0,1,2 with grid).")
    pool: int | None = Field(None, description="Context pool size (default 2·L).")
    seed: int = Field(0, description="Data seed (same data and order for every model).")
    param: dict[str, Any] = Field(default_factory=dict, description="Extra task parameters (key: value).")
    out: str = Field("runs", description="Folder holding the run directories.")
    report_to: list[str] = Field(default_factory=list,
                                 description="Trackers mirroring metrics.jsonl: tensorboard, wandb, csv.")

    @model_validator(mode="before")
    @classmethod
    def _split_commas(cls, data: Any) -> Any:
        """``"0.9,0.95"`` → ``["0.9", "0.95"]`` for every list or tuple field (flags arrive as strings)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, value in data.items():
            field = cls.model_fields.get("models" if key == "model" else key)
            if field is None or key == "report_to" or not isinstance(value, str):
                continue
            if typing.get_origin(_unoptional(field.annotation)) in (list, tuple):
                out[key] = [v.strip() for v in value.split(",") if v.strip()] if "," in value else value
        return out

    @field_validator(*_LIST_KEYS, mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None or isinstance(value, list | tuple):
            return value
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
    def _orders(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """The task owns its orders (``ORDERS`` of its config class); ``task`` is validated before ``order``."""
        from probes.synthetic.registry import TASKS

        task = TASKS.get(info.data.get("task", ""))
        allowed: tuple[str, ...] = task.config_type.ORDERS if task is not None else ()
        bad = [o for o in value if o not in allowed]
        if task is not None and bad:
            raise ValueError(f"unknown order {bad[0]!r}: use {' or '.join(allowed)} (task {info.data['task']})")
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
        fields = {k: getattr(self, k) for k in TrainConfig.__dataclass_fields__ if k != "lr" and hasattr(self, k)}
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


def _unoptional(annotation: Any) -> Any:
    """``int | None`` → ``int`` (other annotations unchanged)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return args[0] if union and len(args) == 1 else annotation


def _train_fields() -> dict[str, Any]:
    """Every TrainConfig field but lr and seed, with TrainConfig's own default and its help."""
    hints = typing.get_type_hints(TrainConfig)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NOT_OPTIONS:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_ = TRAIN_HELP.get(f.name, f"Training setting {f.name} (TrainConfig).")
        fields[f.name] = (hints[f.name], Field(default, description=help_))
    return fields


SweepSpec = create_model("SweepSpec", __base__=_SweepOptions, __module__=__name__, **_train_fields())
SweepSpec.__doc__ = """What to train: the sweep's fields plus every TrainConfig field but lr and seed. Field names are
the `probes synth` flag names (``--init-seed`` → ``init_seed``)."""


def option_keys() -> list[str]:
    """Every config-file key, in declaration order (``model`` is also accepted for ``models``)."""
    return list(SweepSpec.model_fields)


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


def did_you_mean(word: str, choices: list[str]) -> str:
    """``"; did you mean 'models'?"`` for a close match, else ``""``."""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def build_sweep(file_values: dict[str, Any], flag_values: dict[str, Any]) -> Any:
    """File values, overridden by the flags given on the command line; one-line error naming the key."""
    if "model" in file_values and "models" in flag_values:  # the flag (either spelling) overrides the file
        file_values = {k: v for k, v in file_values.items() if k != "model"}
    try:
        return SweepSpec.model_validate({**file_values, **flag_values})
    except ValidationError as exc:
        loc = exc.errors()[0].get("loc", ())
        if exc.errors()[0].get("type") == "extra_forbidden":
            keys = option_keys()
            raise UserError(f"unknown option {loc[0]!r} in the config file{did_you_mean(str(loc[0]), keys)} "
                            f"(known: {', '.join(keys)})") from None
        flag = f"--{str(loc[0]).replace('_', '-')}" if loc else "option"
        where = "command line" if loc and loc[0] in flag_values else "config file"
        raise UserError(f"{flag} ({where}): {validation_message(exc).split(': ', 1)[-1]}") from None
