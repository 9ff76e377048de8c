"""The shared task base (``probes.synthetic.base``): a new task is its config dataclass and its generator.

A toy task is written here in a few lines (config + ``sample``) and must then work everywhere a built-in task
does: the registry builds it by name, unknown or ill-typed parameters are one-line errors, it has a manifest
that rebuilds it, export records, and the shared validation of every task applies to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import pytest
import torch
from probes.synthetic import registry
from probes.synthetic.base import (
    TASK_TYPES,
    Batch,
    ProbeTask,
    Split,
    TaskBase,
    TaskConfigBase,
    TaskConfigError,
    register_task,
)
from probes.synthetic.hashing import derive_key, uniform_int

BUILTIN = ("grounding", "mqar", "copying", "induction")


@pytest.fixture
def toy() -> Iterator[type[TaskBase[Any]]]:
    """Register a brand-new task for one test and take it out again, so other tests see the usual registry."""
    before = dict(TASK_TYPES)

    @dataclass(frozen=True)
    class PreviousConfig(TaskConfigBase):
        length: int = 6
        stride: int = 1  # a task-specific parameter with its own check

        def validate(self) -> None:
            super().validate()
            if not 1 <= self.stride < self.length:
                raise TaskConfigError(f"stride must be in 1..{self.length - 1} (got {self.stride})")

    @register_task
    class PreviousTask(TaskBase[PreviousConfig]):
        """Predict the token ``stride`` positions back: the logit at position j names x_{j - stride}."""

        name = "toy-previous"
        config_type = PreviousConfig
        token_blocks = (("context_tokens", "<p_{j}>"),)
        special_tokens = (("marker", "<m>"),)

        @property
        def seq_len(self) -> int:
            return self.config.length

        def sample(self, split: Split, indices: torch.Tensor) -> Batch:
            c, n = self.config, indices.shape[0]
            key = derive_key("toy-previous", split, c.seed)
            j = torch.arange(c.length, device=indices.device)
            x = c.context_offset + uniform_int(indices[:, None] * c.length + j, key, c.pool_size)
            at = j[c.stride :].expand(n, -1)
            return Batch(x, at, x[:, : c.length - c.stride], at - c.stride, {"tokens": x, "index": indices})

    try:
        yield PreviousTask
    finally:
        TASK_TYPES.clear()
        TASK_TYPES.update(before)


def test_a_new_task_registers_and_builds_by_name(toy: type[TaskBase[Any]]) -> None:
    assert "toy-previous" in registry.task_names() and set(BUILTIN) <= set(registry.task_names())
    assert registry.config_class("toy-previous") is toy.config_type
    task = registry.build_task("toy-previous", {"length": 5, "stride": 2, "context_offset": 100})
    assert isinstance(task, toy) and isinstance(task, ProbeTask)
    b = task.generate("train", torch.arange(7, 17))
    assert b.input_ids.shape == (10, 5) == (10, task.seq_len)
    assert torch.equal(b.input_ids.gather(1, b.label_positions - 2), b.labels), "labels are x_{j - stride}"
    assert task.num_buckets == 5 and ((b.metric_positions >= 0) & (b.metric_positions < 5)).all()
    # the inherited vocabulary: one block of pool_size tokens from context_offset, then the special token
    assert task.new_tokens == [f"<p_{j}>" for j in range(10)] + ["<m>"]
    assert task.first_new_id == 100 and task.min_base_vocab == 0 and task.special_id(0) == 110
    ids = b.input_ids.reshape(-1)
    assert ((ids >= 100) & (ids < 110)).all()
    assert not torch.equal(b.input_ids, task.generate("heldout", torch.arange(7, 17)).input_ids)
    assert registry.task_from_config("toy-previous", task.config).manifest() == task.manifest()


def test_a_new_task_has_a_manifest_that_rebuilds_it(toy: type[TaskBase[Any]]) -> None:
    task = registry.build_task("toy-previous", {"length": 4, "seed": 3})
    manifest = task.manifest()
    assert json.loads(json.dumps(manifest)) == manifest
    assert manifest["task"] == "toy-previous" and manifest["generator_version"] == 1
    assert manifest["params"] == {
        "length": 4, "pool": 8, "order": "suffix", "seed": 3, "context_offset": 50277, "heldout_modulus": 8,
        "stride": 1,
    }  # fmt: skip
    assert manifest["seq_len"] == 4 and manifest["buckets"] == {"count": 4, "meaning": "position"}
    vocab = manifest["vocabulary"]
    assert vocab["context_tokens"] == {"first_id": 50277, "count": 8, "format": "<p_{j}>"}
    assert vocab["marker"] == {"token": "<m>", "id": 50285}
    assert [e["token"] for e in vocab["new_tokens"]] == task.new_tokens
    assert [e["id"] for e in vocab["new_tokens"]] == list(range(50277, 50286))
    rebuilt = registry.build_task("toy-previous", json.loads(json.dumps(manifest["params"])))
    idx = torch.arange(20)
    assert torch.equal(rebuilt.generate("train", idx).input_ids, task.generate("train", idx).input_ids)


def test_a_new_task_gets_export_records(toy: type[TaskBase[Any]]) -> None:
    task = registry.build_task("toy-previous", {"length": 4})
    b = task.generate("train", torch.arange(3, 6))
    records = list(task.records(b))
    assert [list(r) for r in records] == [["tokens", "index", "input_ids", "label_positions", "labels"]] * 3
    assert [r["index"] for r in records] == [3, 4, 5] and all(type(r["index"]) is int for r in records)
    assert (records[1]["labels"] == b.labels[1].numpy()).all()


def test_a_new_task_rejects_unknown_and_ill_typed_parameters(toy: type[TaskBase[Any]]) -> None:
    with pytest.raises(TaskConfigError, match="no parameter.*colour") as info:
        registry.build_task("toy-previous", {"colour": 1})
    assert "stride" in str(info.value), "the message lists the known parameters, inherited and own"
    with pytest.raises(TaskConfigError, match="stride must be int"):
        registry.build_task("toy-previous", {"stride": "2"})
    with pytest.raises(TaskConfigError, match="seed must be int"):
        registry.build_task("toy-previous", {"seed": 1.5})  # a base field keeps its type check
    with pytest.raises(TaskConfigError, match="stride must be in 1..5"):
        registry.build_task("toy-previous", {"stride": 6})  # the task's own validate() hook runs


def test_a_new_task_inherits_the_generate_checks(toy: type[TaskBase[Any]]) -> None:
    task = registry.build_task("toy-previous", {})
    with pytest.raises(TaskConfigError, match="unknown split"):
        task.generate("validation", torch.arange(3))  # type: ignore[arg-type]
    with pytest.raises(TaskConfigError, match="non-negative"):
        task.generate("train", torch.tensor([2, -1]))
    assert task.generate("train", torch.arange(4, dtype=torch.int32)).input_ids.dtype == torch.int64


def test_the_toy_is_gone_after_its_test() -> None:
    assert "toy-previous" not in registry.task_names() and set(registry.task_names()) >= set(BUILTIN)


# -- registration ------------------------------------------------------------------------------------------
def test_registration_needs_a_name_and_a_config_and_a_free_name(toy: type[TaskBase[Any]]) -> None:
    with pytest.raises(TypeError, match="name"):

        @register_task
        class Nameless(toy):  # type: ignore[valid-type,misc]
            pass

    with pytest.raises(TypeError, match="config_type"):

        @register_task
        class Configless(TaskBase[TaskConfigBase]):
            name = "toy-configless"

    with pytest.raises(TypeError, match="does not implement sample, seq_len"):

        @register_task
        class Generatorless(TaskBase[TaskConfigBase]):
            name = "toy-generatorless"
            config_type = TaskConfigBase

    with pytest.raises(ValueError, match="already taken"):

        @register_task
        class Impostor(toy):  # type: ignore[valid-type,misc]
            name = "grounding"
            config_type = toy.config_type

    assert registry.TASKS["grounding"].__module__ == "probes.synthetic.grounding"
    assert register_task(registry.TASKS["grounding"]) is registry.TASKS["grounding"], "re-registering is a no-op"


def test_a_task_without_its_generator_cannot_be_built() -> None:
    class Half(TaskBase[TaskConfigBase]):  # no seq_len, no sample
        name = "half"

    with pytest.raises(TypeError, match="abstract"):
        Half(TaskConfigBase())  # type: ignore[abstract]


def test_builtin_tasks_are_registered_subclasses() -> None:
    for name in BUILTIN:
        cls = registry.TASKS[name]
        assert issubclass(cls, TaskBase) and cls.name == name
        assert issubclass(cls.config_type, TaskConfigBase)
        assert all(f.name.islower() for f in fields(cls.config_type)), "class constants are not parameters"
        assert registry.config_class(name) is cls.config_type


# -- shared validation, for every task ---------------------------------------------------------------------
@pytest.mark.parametrize("name", [*BUILTIN, "toy-previous"])
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"length": -3}, "--len must be at least"),
        ({"heldout_modulus": 1}, "heldout_modulus must be >= 2"),
        ({"pool": 2**31 + 1}, "at most 2\\*\\*31"),
        ({"order": "sideways"}, "unknown order 'sideways'; choose one of"),
        ({"context_offset": -1}, "context_offset"),
    ],
)
def test_shared_checks_apply_to_every_task(
    toy: type[TaskBase[Any]], name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskConfigError, match=message) as info:
        registry.build_task(name, {"length": 12, **params})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("grounding", {"length": 6, "pool": 5}, r"--pool \(5\) must be at least --len \(6\): contexts are distinct"),
        ("mqar", {"length": 6, "pool": 5}, r"--pool \(5\) must be at least --len \(6\): keys are distinct"),
        ("copying", {"length": 6, "pool": 7}, r"--pool \(7\) must be at least heldout_modulus \(8\)"),
        ("induction", {"pool": 3, "heldout_modulus": 4}, r"--pool \(3\) must be at least heldout_modulus \(4\)"),
        ("induction", {"length": 2}, r"--len must be at least 3 \(got 2\)"),
        ("copying", {"length": 1}, r"--len must be at least 2 \(got 1\)"),
        ("grounding", {"order": "middle"}, "choose one of suffix, prefix"),
        ("grounding", {"bank_size": 0}, "bank_size must be >= 1"),
        ("mqar", {"bank_size": 0}, "bank_size must be >= 1"),
    ],
)
def test_pool_length_order_and_bank_bounds_are_per_family(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskConfigError, match=message):
        registry.build_task(name, params)


def test_pool_defaults_and_floor_are_exact() -> None:
    """The smallest admissible pool is accepted, and None resolves to the family's default."""
    assert registry.build_task("grounding", {"length": 6, "pool": 6}).config.pool_size == 6
    assert registry.build_task("copying", {"length": 3, "pool": 8}).config.pool_size == 8
    assert registry.build_task("copying", {"length": 3}).config.pool_size == 16  # max(2L, 16)
    assert registry.build_task("mqar", {"length": 3}).config.pool_size == 6  # 2L
    assert registry.make_config("induction", {"length": 20}).manifest_params()["pool"] == 40


def test_config_base_validates_on_construction_too() -> None:
    """Configs built directly (the notebook API), not through the registry, get the same checks."""
    from probes.synthetic.grounding import GroundingConfig

    with pytest.raises(TaskConfigError, match="--len"):
        GroundingConfig(length=1)
    with pytest.raises(TaskConfigError, match="out_id"):
        GroundingConfig(length=4, context_offset=100, out_id=103)


@dataclass(frozen=True)
class _Tuned(TaskConfigBase):
    ORDERS: ClassVar[tuple[str, ...]] = ("suffix", "prefix")
    ORDER_RULE: ClassVar[str] = "a made-up reason"
    MIN_LENGTH: ClassVar[int] = 5
    MIN_DEFAULT_POOL: ClassVar[int] = 32


def test_class_constants_tune_the_shared_checks() -> None:
    assert _Tuned(order="prefix").order == "prefix" and _Tuned(length=5).pool_size == 32
    assert _Tuned(length=20).pool_size == 40
    with pytest.raises(TaskConfigError, match=r"choose one of suffix, prefix \(a made-up reason\)"):
        _Tuned(order="middle")
    with pytest.raises(TaskConfigError, match=r"--len must be at least 5 \(got 4\)"):
        _Tuned(length=4)
    assert [f.name for f in fields(_Tuned)] == [
        "length", "pool", "order", "seed", "context_offset", "heldout_modulus"
    ], "class constants are not parameters"
