"""The interface every probe task shares with the trainer and the exporters.

A task turns sample indices into a :class:`Batch`. A batch says which input positions are supervised
(``label_positions``), what the right token is there (``labels``) and into which per-position bucket each
prediction falls (``metric_positions``; for the grounding task the target position ``k``). The trainer only
ever computes logits at ``label_positions`` and reports accuracy per bucket, so one trainer serves all tasks.

Why a shared base: the tasks differ in their generator and a handful of facts (sequence length, buckets,
vocabulary blocks); validation of the common parameters, the vocabulary mapping, the manifest, the export
records and registration are one piece of code (:class:`TaskConfigBase`, :class:`TaskBase`,
:func:`register_task`), so a new task is its config dataclass and its generator.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

import torch

from probes.errors import TaskConfigError  # noqa: F401  (re-exported: the generators raise it from here)

Split = Literal["train", "heldout"]
SPLITS: tuple[Split, ...] = ("train", "heldout")


@dataclass(frozen=True)
class Batch:
    """Samples of one task, all tensors on the same device, first dimension = samples."""

    input_ids: torch.Tensor  # [N, T] int64
    label_positions: torch.Tensor  # [N, Q] int64: the logit at this input position predicts the label
    labels: torch.Tensor  # [N, Q] int64 vocabulary ids
    metric_positions: torch.Tensor  # [N, Q] int64 bucket in [0, task.num_buckets)
    extras: dict[str, torch.Tensor]  # task-specific fields for export (context, query, ...)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.label_positions.to(device),
            self.labels.to(device),
            self.metric_positions.to(device),
            {k: v.to(device) for k, v in self.extras.items()},
        )


@runtime_checkable
class ProbeTask(Protocol):
    """What the trainer, the exporter and the benchmarks need to know about a task."""

    name: str

    @property
    def seq_len(self) -> int:
        """Number of input tokens per sample."""
        ...

    @property
    def num_buckets(self) -> int:
        """Number of per-position accuracy buckets (L for grounding)."""
        ...

    @property
    def new_tokens(self) -> list[str]:
        """Token strings the model's vocabulary must gain, in id order starting at ``first_new_id``."""
        ...

    @property
    def first_new_id(self) -> int:
        """Vocabulary id of ``new_tokens[0]`` (the base vocabulary size by default)."""
        ...

    @property
    def min_base_vocab(self) -> int:
        """Smallest base vocabulary that holds every existing id the task uses as a label."""
        ...

    def generate(self, split: Split, indices: torch.Tensor) -> Batch:
        """Samples ``indices`` (int64, any order, any device) of ``split``; a pure function of the indices."""
        ...

    def records(self, batch: Batch) -> Iterator[dict[str, Any]]:
        """One dict per sample in the task's export format (values: ints, lists or 1-D numpy arrays)."""
        ...

    def manifest(self) -> dict[str, Any]:
        """Everything needed to regenerate the data: parameters, vocabulary mapping, generator version."""
        ...

    def bucket_name(self) -> str:
        """What a per-position bucket means, for reports and plot axes (e.g. 'target position')."""
        ...


# -- the shared base: a new task is its config dataclass and its generator ---------------------------------
PYTHIA_TOKENIZER_SIZE = 50277  # len(tokenizer) of Pythia and mamba-*-hf: the first id add_tokens gives
MAX_POOL = 2**31  # draws are 32-bit multiply-shift hashes (disjoint.uniform_below takes bounds up to 2**31)


@dataclass(frozen=True)
class TaskConfigBase:
    """The parameters every task has, and their checks; a task's config is a frozen dataclass subclass.

    Subclasses add fields, change defaults by redeclaring a field, tune the class constants below and add
    task-specific checks by overriding :meth:`validate` (calling ``super().validate()`` first). Every field
    determines the data and is recorded in manifests and run directories.
    """

    length: int = 64  # the task's size knob (--len); what it counts is the task's to say
    pool: int | None = None  # new tokens to draw from; None -> max(2 * length, MIN_DEFAULT_POOL)
    order: str = "suffix"
    seed: int = 0
    context_offset: int = PYTHIA_TOKENIZER_SIZE  # id of the first new token; the trainer sets the vocab size
    heldout_modulus: int = 8  # a sample is held-out iff a hash of its content is 0 mod this

    MIN_LENGTH: ClassVar[int] = 2
    LENGTH_RULE: ClassVar[str] = "shorter samples hold no task"  # why a shorter --len makes no data
    ORDERS: ClassVar[tuple[str, ...]] = ("suffix",)
    ORDER_RULE: ClassVar[str] = ""  # why only these orders, said when another is asked for
    MIN_DEFAULT_POOL: ClassVar[int] = 0
    POOL_RULE: ClassVar[str] = "samples draw distinct tokens"  # why --pool has its lower bound

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject a parameter set that makes no data, with one line naming the parameter to change."""
        if self.length < self.MIN_LENGTH:
            raise TaskConfigError(
                f"--len must be at least {self.MIN_LENGTH} (got {self.length}): {self.LENGTH_RULE}"
            )
        if self.heldout_modulus < 2:
            raise TaskConfigError(f"heldout_modulus must be >= 2 (got {self.heldout_modulus})")
        floor, floor_name = self.min_pool()
        if self.pool is not None and self.pool < floor:
            raise TaskConfigError(
                f"--pool ({self.pool}) must be at least {floor_name} ({floor}): {self.POOL_RULE}"
            )
        if self.pool is not None and self.pool > MAX_POOL:
            raise TaskConfigError(f"--pool ({self.pool}) must be at most 2**31")
        if self.order not in self.ORDERS:
            why = f" ({self.ORDER_RULE})" if self.ORDER_RULE else ""
            raise TaskConfigError(
                f"unknown order {self.order!r}; choose one of {', '.join(self.ORDERS)}{why}"
            )
        if self.context_offset < 0:
            raise TaskConfigError(f"context_offset must be >= 0 (got {self.context_offset})")

    def min_pool(self) -> tuple[int, str]:
        """The smallest admissible --pool and the parameter it comes from (distinct tokens: --len)."""
        return self.length, "--len"

    @property
    def pool_size(self) -> int:
        return self.pool if self.pool is not None else max(2 * self.length, self.MIN_DEFAULT_POOL)

    def manifest_params(self) -> dict[str, Any]:
        """Every field, with the defaults that depend on others (``pool``) resolved: enough to rebuild."""
        return {**asdict(self), "pool": self.pool_size}


C = TypeVar("C", bound=TaskConfigBase)


class TaskBase(ABC, Generic[C]):
    """Every :class:`ProbeTask` member that is not task-specific, computed from a few class facts.

    A subclass sets ``name``, ``config_type``, its vocabulary (``token_blocks``, ``special_tokens``), what a
    bucket means, its layout and sampling notes for the manifest, and implements ``seq_len`` and
    :meth:`sample` (and ``num_buckets`` where it is not ``length``); ``@register_task`` makes it buildable
    by name.
    """

    name: str
    config_type: ClassVar[type[TaskConfigBase]]
    generator_version: ClassVar[int] = 1  # bump when the same parameters start producing different data
    # blocks of ``pool_size`` new tokens each, in id order: (manifest vocabulary key, token format with {j})
    token_blocks: ClassVar[tuple[tuple[str, str], ...]] = ()
    # single new tokens after the blocks: (manifest vocabulary key or None, token)
    special_tokens: ClassVar[tuple[tuple[str | None, str], ...]] = ()
    bucket_meaning: ClassVar[str] = "position"
    layout: ClassVar[str] = ""
    sampling: ClassVar[Mapping[str, str]] = {}
    # one supervised position per sample: export records carry ``label`` (an int), not position/label arrays
    one_label: ClassVar[bool] = False
    manifest_shape: ClassVar[bool] = True  # manifest states seq_len and buckets (grounding's v1 did not)

    def __init__(self, config: C) -> None:
        self.config = config

    # -- task-specific: what a subclass implements --------------------------------------------------------
    @property
    @abstractmethod
    def seq_len(self) -> int: ...

    @abstractmethod
    def sample(self, split: Split, indices: torch.Tensor) -> Batch:
        """The generator proper; ``generate`` has checked ``split`` and made ``indices`` non-negative int64."""

    # -- shared -----------------------------------------------------------------------------------------
    @property
    def num_buckets(self) -> int:
        """One bucket per unit of ``length`` (context position, pair, copied token) unless a task says else."""
        return self.config.length

    def generate(self, split: Split, indices: torch.Tensor) -> Batch:
        if split not in SPLITS:
            raise TaskConfigError(f"unknown split {split!r}; choose train or heldout")
        indices = indices.to(torch.int64)
        if indices.numel() and int(indices.min()) < 0:
            raise TaskConfigError("sample indices must be non-negative")
        return self.sample(split, indices)

    @property
    def first_new_id(self) -> int:
        return self.config.context_offset

    @property
    def min_base_vocab(self) -> int:
        return 0  # every token is new unless the task labels with existing ids

    def bucket_name(self) -> str:
        return self.bucket_meaning

    def block_first_id(self, block: int) -> int:
        """Vocabulary id of token 0 of ``token_blocks[block]``."""
        return self.first_new_id + block * self.config.pool_size

    def special_id(self, index: int) -> int:
        """Vocabulary id of ``special_tokens[index]``."""
        return self.block_first_id(len(self.token_blocks)) + index

    @property
    def new_tokens(self) -> list[str]:
        p = self.config.pool_size
        blocks = [fmt.format(j=j) for _, fmt in self.token_blocks for j in range(p)]
        return blocks + [token for _, token in self.special_tokens]

    def new_token_ids(self) -> list[int]:
        p = self.config.pool_size
        ids = [self.block_first_id(b) + j for b in range(len(self.token_blocks)) for j in range(p)]
        return ids + [self.special_id(s) for s in range(len(self.special_tokens))]

    def layout_text(self) -> str:
        return self.layout

    def vocabulary(self) -> dict[str, Any]:
        """The manifest's vocabulary mapping: every block, every named special token, every new token's id."""
        p = self.config.pool_size
        vocab: dict[str, Any] = {
            key: {"first_id": self.block_first_id(b), "count": p, "format": fmt}
            for b, (key, fmt) in enumerate(self.token_blocks)
        }
        for s, (key, token) in enumerate(self.special_tokens):
            if key is not None:
                vocab[key] = {"token": token, "id": self.special_id(s)}
        vocab["new_tokens"] = [
            {"token": token, "id": i} for token, i in zip(self.new_tokens, self.new_token_ids(), strict=True)
        ]
        return vocab

    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = {
            "task": self.name,
            "generator_version": self.generator_version,
            "params": self.config.manifest_params(),
            "layout": self.layout_text(),
        }
        if self.manifest_shape:
            manifest["seq_len"] = self.seq_len
            manifest["buckets"] = {"count": self.num_buckets, "meaning": self.bucket_name()}
        manifest["vocabulary"] = self.vocabulary()
        manifest["sampling"] = dict(self.sampling)
        return manifest

    def records(self, batch: Batch) -> Iterator[dict[str, Any]]:
        """The extras (rows as numpy arrays, per-sample scalars as ints), the input ids, then the labels."""
        columns: dict[str, Any] = {
            k: v.cpu().numpy() if v.dim() > 1 else v.cpu().tolist() for k, v in batch.extras.items()
        }
        columns["input_ids"] = batch.input_ids.cpu().numpy()
        if self.one_label:
            columns["label"] = batch.labels[:, 0].cpu().tolist()
        else:
            columns["label_positions"] = batch.label_positions.cpu().numpy()
            columns["labels"] = batch.labels.cpu().numpy()
        for j in range(len(batch)):
            yield {k: v[j] for k, v in columns.items()}


# -- registration: the registry builds itself from the decorated task classes --------------------------------
TASK_TYPES: dict[str, type[TaskBase[Any]]] = {}

T = TypeVar("T", bound=type[TaskBase[Any]])


def register_task(cls: T) -> T:
    """Class decorator: make ``cls`` buildable by its ``name`` (``registry.build_task``, CLI, trainer)."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute name = '...' to be registered")
    config_type = getattr(cls, "config_type", None)
    if not (isinstance(config_type, type) and issubclass(config_type, TaskConfigBase)):
        raise TypeError(f"{cls.__qualname__}.config_type must be a TaskConfigBase dataclass")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise TypeError(f"{cls.__qualname__} cannot be registered: it does not implement {missing}")
    previous = TASK_TYPES.get(name)
    if previous is not None and _where(previous) != _where(cls):  # re-importing the same module is fine
        raise ValueError(f"task name {name!r} is already taken by {_where(previous)}")
    TASK_TYPES[name] = cls
    return cls


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
