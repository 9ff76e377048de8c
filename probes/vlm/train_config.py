"""Configuration of one VLM training stage; unknown keys are rejected and the config is saved in the run.

Defaults follow the paper (App. A.3) and README "VLM module": stage 1 trains the connector only (lr 1e-3, batch 256), stage 2 the connector and
the language model (lr 2e-5, batch 128); cosine schedule with 3 % warmup; max sequence length 1024.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from probes.errors import UserError

STAGE_DEFAULTS = {1: {"lr": 1e-3, "batch_size": 256}, 2: {"lr": 2e-5, "batch_size": 128}}


class VLMTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Literal[1, 2]
    data: str  # a LLaVA JSON file, or a directory with llava_pretrain.json (stage 1) / llava_instruct.json (2)
    out: str
    backbone: str = "pythia-tiny"
    encoder: str = "tiny"
    encoder_weights: str | None = None
    encoder_overrides: dict[str, Any] = Field(default_factory=dict)
    # A VLM checkpoint (or run directory with final/) whose vision-encoder weights this run starts from, e.g.
    # one shared pretrained encoder for every arm of a study (the paper's EVA-CLIP is one frozen encoder).
    encoder_from: str | None = None
    # Whether a trainable (tiny) encoder learns in this run. None: only in stage 1 and only when it is not
    # taken from encoder_from; stage 2 keeps it frozen ("the vision encoder is kept frozen during training", §3.2).
    train_encoder: bool | None = None
    connector: str = "mlp"
    resolution: int | None = None
    prune_k: int | None = Field(default=None, ge=1)
    image_root: str | None = None
    init_from: str | None = None
    tokenizer: str | None = None  # a tokenizer directory; default: the backbone's own, or trained (tiny presets)
    # sequence order (probes.vlm.sequence.ORDERS); a bool is read as agnostic/aware. Stage 1 always trains
    # task-agnostic (the paper moves the instruction in instruction tuning only); the order is then kept
    # in the checkpoint for stage 2 and evaluation.
    task_aware: bool | Literal["agnostic", "aware", "query-first", "matched"] = "agnostic"
    loss_norm: Literal["sequence", "turn", "token"] = "sequence"  # probes.vlm.packing; the paper's default
    max_steps: int = Field(default=1000, ge=1)
    epochs: float | None = Field(default=None, gt=0)  # stage length in epochs of packed sequences; wins over max_steps
    # Each packed sequence of task T appears task_repeats[T] times per epoch (default 1). A deliberate
    # deviation from the paper's plain mixed batches, used by the offline study to give the one task it
    # must learn (grounding) more of a small step budget.
    task_repeats: dict[str, int] = Field(default_factory=dict)
    batch_size: int | None = Field(default=None, ge=1)
    lr: float | None = Field(default=None, gt=0)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = Field(default=1.0, gt=0)
    max_length: int = Field(default=1024, ge=16)
    seed: int = 0
    save_every: int = Field(default=0, ge=0)  # 0: checkpoint only at the end
    log_every: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _stage_defaults(self) -> VLMTrainConfig:
        from .connector import CONNECTORS
        from .encoders import ENCODERS, EVA_TIMM_NAME

        if self.encoder not in (*ENCODERS, EVA_TIMM_NAME):
            raise ValueError(f"unknown vision encoder {self.encoder!r}; choose one of {', '.join(ENCODERS)}")
        if self.connector not in CONNECTORS:
            raise ValueError(f"unknown connector {self.connector!r}; choose one of {', '.join(CONNECTORS)}")
        from .sequence import as_order

        bad = {k: v for k, v in self.task_repeats.items() if not 1 <= int(v) <= 100}
        if bad:
            raise ValueError(f"task_repeats must be between 1 and 100, got {bad}")

        self.task_aware = as_order(self.task_aware)
        d = STAGE_DEFAULTS[self.stage]
        if self.lr is None:
            self.lr = d["lr"]
        if self.batch_size is None:
            self.batch_size = d["batch_size"]
        return self

    @classmethod
    def build(cls, **kwargs: Any) -> VLMTrainConfig:
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise UserError(f"bad training config: {loc + ': ' if loc else ''}{msg}") from None

    def total_steps(self, n_sequences: int) -> int:
        """Steps of this stage: ``ceil(epochs · sequences / batch)`` when ``epochs`` is set, else ``max_steps``."""
        if self.epochs is None:
            return self.max_steps
        import math

        return max(1, math.ceil(self.epochs * n_sequences / int(self.batch_size or 1)))

    @property
    def encoder_learns(self) -> bool:
        """Whether this stage updates a trainable encoder (see ``train_encoder``)."""
        if self.train_encoder is not None:
            return self.train_encoder
        return self.stage == 1 and self.encoder_from is None

    @property
    def stage_order(self) -> str:
        """The order this stage trains with: stage 1 is always task-agnostic (see ``task_aware``)."""
        return "agnostic" if self.stage == 1 else str(self.task_aware)

    def data_file(self) -> Path:
        p = Path(self.data)
        if p.is_dir():
            p = p / ("llava_pretrain.json" if self.stage == 1 else "llava_instruct.json")
        if not p.is_file():
            raise UserError(f"training data not found: {p}")
        return p


# Config-file keys that are the flag spelling of a field with another name (`--order`, `--model`); every other
# key is a field name, with ``-`` read as ``_`` (``batch-size`` = ``batch_size``).
KEY_ALIASES = {"order": "task_aware", "model": "backbone"}
_FLAGS = {"task_aware": "--order", "backbone": "--backbone"}  # fields whose flag is not --field-name
REQUIRED = ("stage", "data", "out")


def _flag(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def config_from_sources(file_values: dict[str, Any], flag_values: dict[str, Any]) -> VLMTrainConfig:
    """One stage's config from a config file's values overridden by the flags typed on the command line.

    ``flag_values`` holds only flags given explicitly (field names as keys), so a flag's default never undoes
    the file's value; fields neither sets keep the model's defaults. Problems are one line naming the key and
    where it came from, raised before anything is written.
    """
    values: dict[str, Any] = {}
    source: dict[str, str] = {}  # field -> the file's key for it
    for key, value in file_values.items():
        field = KEY_ALIASES.get(key, key)
        if field not in VLMTrainConfig.model_fields:
            known = ", ".join([*VLMTrainConfig.model_fields, *KEY_ALIASES])
            raise UserError(f"unknown key {key!r} in the config file; known: {known}")
        if field in values:
            raise UserError(f"the config file sets {field!r} twice (keys {source[field]!r} and {key!r})")
        values[field], source[field] = value, key
    values.update(flag_values)
    missing = [_flag(k) for k in REQUIRED if values.get(k) is None]
    if missing:
        keys = ", ".join(f"`{m[2:]}:`" for m in missing)
        them = "them" if len(missing) > 1 else "it"
        raise UserError(f"missing {', '.join(missing)}: give {them} on the command line "
                        f"or as {keys} in --config FILE.yaml")
    try:
        return VLMTrainConfig(**values)
    except ValidationError as exc:
        errors = exc.errors()
        loc = errors[0]["loc"]
        if not loc:  # the model validator: the message names the value (unknown encoder, connector …)
            msg = str(errors[0]["msg"]).removeprefix("Value error, ")
            raise UserError(f"bad training config: {msg}") from None
        # a union (task_aware: bool | order name) reports each member; its last error is the most telling
        err = [e for e in errors if e["loc"][:1] == loc[:1]][-1]
        value = err.get("input")
        shown = f" (got {value!r})" if isinstance(value, str | int | float | bool) else ""
        msg = str(err["msg"]).removeprefix("Value error, ") + shown
        key = str(loc[0])
        where = (f"{_flag(key)} (command line)" if key in flag_values
                 else f"{source[key]!r} in the config file")
        raise UserError(f"{where}: {msg}") from None
