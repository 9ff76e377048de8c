"""The interface every probe task shares with the trainer and the exporters.

A task turns sample indices into a :class:`Batch`. A batch says which input positions are supervised
(``label_positions``), what the right token is there (``labels``) and into which per-position bucket each
prediction falls (``metric_positions``; for the grounding task the target position ``k``). The trainer only
ever computes logits at ``label_positions`` and reports accuracy per bucket, so one trainer serves all tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

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
