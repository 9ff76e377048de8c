"""Property tests of every probe-task generator (grounding, MQAR, copying, induction).

Each task must: lay samples out as documented (distinct contexts, query and label where they belong), fill
per-position buckets exactly evenly, be a pure function of the sample index (any batch split, any order,
fresh objects, CPU or CUDA), keep train and held-out disjoint, and describe itself in a JSON manifest from
which the same data can be rebuilt. Configurations are small so each example is fast.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from probes.synthetic.bank import sequence_fingerprint
from probes.synthetic.base import Batch, ProbeTask, TaskConfigError
from probes.synthetic.disjoint import check_disjoint
from probes.synthetic.hashing import mix32
from probes.synthetic.registry import build_task, make_config, task_from_config, task_names

TASKS = ("grounding", "mqar", "copying", "induction")
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]

# Few distinct (length, pool, seed) combinations: token banks are built once per combination and cached
# (copying / induction: 2 lengths x 2 pools x 1 seed x 2 banks fit the i.i.d. bank cache of 16).
LENGTHS = st.sampled_from([3, 5, 12])
SEEDS = st.sampled_from([0, 1])
OFFSETS = st.sampled_from([0, 100, 50277])


def params_for(name: str) -> st.SearchStrategy[dict[str, Any]]:
    if name == "grounding":
        return st.builds(
            lambda length, pool, order, seed, pos, ctx: {
                "length": length,
                "pool": pool,
                "order": order,
                "seed": seed,
                "pos_offset": pos,
                "context_offset": pos + length + ctx,
                "bank_size": 256,
            },
            LENGTHS,
            st.sampled_from([None, 14, 25]),
            st.sampled_from(["suffix", "prefix"]),
            SEEDS,
            st.integers(0, 5),
            st.sampled_from([0, 10]),
        )
    if name == "mqar":
        return st.builds(
            lambda length, q, pool, seed, ctx: {
                "length": length,
                "queries": None if q is None else min(q, length),
                "pool": pool,
                "seed": seed,
                "context_offset": ctx,
                "bank_size": 256,
            },
            LENGTHS,
            st.sampled_from([None, 1, 2, 5]),
            st.sampled_from([None, 12, 20]),
            SEEDS,
            OFFSETS,
        )
    return st.builds(
        lambda length, pool, ctx, m: {
            "length": length,
            "pool": pool,
            "seed": 0,
            "context_offset": ctx,
            "heldout_modulus": m,
        },
        st.sampled_from([3, 12]),
        st.sampled_from([None, 9]),
        OFFSETS,
        st.sampled_from([2, 8]),
    )


def make(name: str, params: dict[str, Any]) -> ProbeTask:
    """The task, skipping the (legitimate, rare) configurations whose sample space leaves a split empty."""
    task = build_task(name, params)
    try:
        task.generate("heldout", torch.arange(1))
    except TaskConfigError as exc:
        assume("split is empty" not in str(exc))
        raise
    return task


def tensors(batch: Batch) -> dict[str, torch.Tensor]:
    return {
        "input_ids": batch.input_ids,
        "label_positions": batch.label_positions,
        "labels": batch.labels,
        "metric_positions": batch.metric_positions,
        **{f"extras.{k}": v for k, v in batch.extras.items()},
    }


def assert_same(a: Batch, b: Batch) -> None:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key].cpu(), tb[key].cpu()), key


def select(batch: Batch, rows: torch.Tensor) -> Batch:
    return Batch(
        *(t[rows] for t in (batch.input_ids, batch.label_positions, batch.labels, batch.metric_positions)),
        {k: v[rows] for k, v in batch.extras.items()},
    )


def cat(a: Batch, b: Batch) -> Batch:
    fields = ("input_ids", "label_positions", "labels", "metric_positions")
    return Batch(
        *(torch.cat([getattr(a, f), getattr(b, f)]) for f in fields),
        {k: torch.cat([v, b.extras[k]]) for k, v in a.extras.items()},
    )


INDICES = st.tuples(st.integers(0, 2**40), st.integers(0, 40))


# -- layout invariants, one test per task ---------------------------------------------------------------
@SETTINGS
@given(params=params_for("grounding"), span=INDICES, split=st.sampled_from(["train", "heldout"]))
def test_grounding_layout(params: dict[str, Any], span: tuple[int, int], split: str) -> None:
    task = make("grounding", params)
    c = task.config
    b = task.generate(split, torch.arange(span[0], span[0] + span[1]))
    ctx, q, k = b.extras["context"], b.extras["query"], b.extras["target_position"]
    L = c.length
    assert b.input_ids.shape == (span[1], L + 2) == (span[1], task.seq_len)
    assert all(len(set(row)) == L for row in ctx.tolist()), "context tokens must be distinct"
    assert ((ctx >= c.context_offset) & (ctx < c.context_offset + c.pool_size)).all()
    assert torch.equal(ctx.gather(1, k[:, None])[:, 0], q), "query must sit at the target position"
    assert torch.equal(b.labels[:, 0], c.pos_offset + k)
    assert torch.equal(b.metric_positions[:, 0], k)
    assert (b.label_positions == L + 1).all()
    if c.order == "suffix":
        assert torch.equal(b.input_ids[:, :L], ctx) and (b.input_ids[:, L] == c.out_token_id).all()
        assert torch.equal(b.input_ids[:, L + 1], q)
    else:
        assert (b.input_ids[:, 0] == c.out_token_id).all() and torch.equal(b.input_ids[:, 1], q)
        assert torch.equal(b.input_ids[:, 2:], ctx)


@SETTINGS
@given(params=params_for("mqar"), span=INDICES, split=st.sampled_from(["train", "heldout"]))
def test_mqar_layout(params: dict[str, Any], span: tuple[int, int], split: str) -> None:
    task = make("mqar", params)
    c = task.config
    b = task.generate(split, torch.arange(span[0], span[0] + span[1]))
    keys, values, pairs = b.extras["keys"], b.extras["values"], b.extras["query_pairs"]
    d, q = c.length, c.num_queries
    assert b.input_ids.shape == (span[1], 2 * d + 2 * q - 1) == (span[1], task.seq_len)
    for row in (*keys.tolist(), *values.tolist(), *pairs.tolist()):
        assert len(set(row)) == len(row), "keys, values and queried pairs are distinct within a sample"
    assert ((keys >= c.context_offset) & (keys < c.context_offset + c.pool_size)).all()
    assert ((values >= task.value_offset) & (values < task.value_offset + c.pool_size)).all()
    assert torch.equal(b.input_ids[:, 0 : 2 * d : 2], keys) and torch.equal(
        b.input_ids[:, 1 : 2 * d : 2], values
    )
    queried_key = b.input_ids.gather(1, b.label_positions)
    assert torch.equal(queried_key, keys.gather(1, pairs)), "each label position holds the queried key"
    assert torch.equal(b.labels, values.gather(1, pairs)), "each label is the value paired with that key"
    assert torch.equal(b.metric_positions, pairs)
    assert torch.equal(b.input_ids.gather(1, b.label_positions[:, :-1] + 1), b.labels[:, :-1]), (
        "teacher forcing"
    )


@SETTINGS
@given(params=params_for("copying"), span=INDICES, split=st.sampled_from(["train", "heldout"]))
def test_copying_layout(params: dict[str, Any], span: tuple[int, int], split: str) -> None:
    task = make("copying", params)
    c = task.config
    b = task.generate(split, torch.arange(span[0], span[0] + span[1]))
    seq, L = b.extras["sequence"], c.length
    assert b.input_ids.shape == (span[1], 2 * L) == (span[1], task.seq_len)
    assert ((seq >= c.context_offset) & (seq < c.context_offset + c.pool_size)).all()
    assert torch.equal(b.input_ids[:, :L], seq) and (b.input_ids[:, L] == task.separator_id).all()
    assert torch.equal(b.input_ids[:, L + 1 :], seq[:, :-1]), "the input holds the copy shifted by one"
    assert torch.equal(b.labels, seq)
    assert torch.equal(b.label_positions, (L + torch.arange(L)).expand(span[1], L))
    assert torch.equal(b.metric_positions, torch.arange(L).expand(span[1], L))


@SETTINGS
@given(params=params_for("induction"), span=INDICES, split=st.sampled_from(["train", "heldout"]))
def test_induction_layout(params: dict[str, Any], span: tuple[int, int], split: str) -> None:
    task = make("induction", params)
    c = task.config
    b = task.generate(split, torch.arange(span[0], span[0] + span[1]))
    ctx, p, L = b.extras["context"], b.extras["trigger_position"], c.length
    assert b.input_ids.shape == (span[1], L + 1) == (span[1], task.seq_len)
    is_trigger = ctx == task.trigger_id
    assert (is_trigger.sum(dim=1) == 1).all(), "the trigger occurs exactly once in the context"
    assert torch.equal(is_trigger.to(torch.int64).argmax(dim=1), p)
    assert (p <= L - 2).all(), "the trigger is followed by a target inside the context"
    others = ctx[~is_trigger]
    assert ((others >= c.context_offset) & (others < c.context_offset + c.pool_size)).all()
    assert (b.input_ids[:, L] == task.trigger_id).all() and torch.equal(b.input_ids[:, :L], ctx)
    assert torch.equal(b.labels[:, 0], ctx.gather(1, (p + 1)[:, None])[:, 0])
    assert (b.label_positions == L).all() and torch.equal(b.metric_positions[:, 0], p)


# -- properties shared by every task ---------------------------------------------------------------------
@pytest.mark.parametrize("name", TASKS)
@SETTINGS
@given(data=st.data(), start=st.integers(0, 2**40), n=st.integers(0, 120))
def test_buckets_exactly_balanced(name: str, data: st.DataObject, start: int, n: int) -> None:
    params = data.draw(params_for(name))
    if name == "mqar":
        params["queries"] = None  # every pair queried once; with fewer queries the balance is in expectation
    task = make(name, params)
    b = task.generate(data.draw(st.sampled_from(["train", "heldout"])), torch.arange(start, start + n))
    buckets = task.num_buckets
    assert ((b.metric_positions >= 0) & (b.metric_positions < buckets)).all()
    counts = torch.bincount(b.metric_positions.reshape(-1), minlength=buckets)
    if b.metric_positions.shape[1] == 1:  # one bucket per sample: bucket i mod B
        expected = torch.tensor(
            [len(range(start + (j - start) % buckets, start + n, buckets)) for j in range(buckets)]
        )
        assert torch.equal(counts, expected)
        assert int(counts.max() - counts.min()) <= 1
    else:  # every bucket once per sample
        assert (counts == n).all()


@pytest.mark.parametrize("name", TASKS)
@SETTINGS
@given(data=st.data(), start=st.integers(0, 2**40), n=st.integers(1, 40))
def test_pure_function_of_index(name: str, data: st.DataObject, start: int, n: int) -> None:
    """Same samples across calls, fresh objects, batch splits and index order."""
    params = data.draw(params_for(name))
    split = data.draw(st.sampled_from(["train", "heldout"]))
    task = make(name, params)
    idx = torch.arange(start, start + n)
    ref = task.generate(split, idx)
    assert_same(ref, task.generate(split, idx.clone()))
    assert_same(ref, build_task(name, params).generate(split, idx))
    cut = data.draw(st.integers(0, n))
    assert_same(ref, cat(task.generate(split, idx[:cut]), task.generate(split, idx[cut:])))
    perm = torch.tensor(data.draw(st.permutations(list(range(n)))), dtype=torch.int64)
    assert_same(select(ref, perm), task.generate(split, idx[perm]))
    assert well_formed(ref, task)


def well_formed(b: Batch, task: ProbeTask) -> bool:
    n = len(b)
    return (
        all(t.dtype == torch.int64 for t in tensors(b).values())
        and b.input_ids.shape == (n, task.seq_len)
        and b.label_positions.shape == b.labels.shape == b.metric_positions.shape
        and bool(((b.label_positions >= 0) & (b.label_positions < task.seq_len)).all())
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TASKS)
def test_cpu_and_device_agree(name: str, device: str) -> None:
    params = {"grounding": {"length": 7}, "mqar": {"length": 5, "queries": 3}}.get(name, {"length": 7})
    task = build_task(name, params)
    idx = torch.tensor([0, 5, 3, 2**40 + 17, 123456789], dtype=torch.int64)
    for split in ("train", "heldout"):
        on_device = task.generate(split, idx.to(device))
        assert on_device.input_ids.device.type == device
        assert_same(task.generate(split, idx), on_device)


@pytest.mark.parametrize("name", TASKS)
def test_seed_changes_the_data(name: str) -> None:
    idx = torch.arange(20)
    a, b = (build_task(name, {"length": 6, "seed": s}).generate("train", idx) for s in (0, 1))
    assert not torch.equal(a.input_ids, b.input_ids)


def test_new_tokens_and_ids_match() -> None:
    """Every id a task emits lies in its new-token range or below min_base_vocab (existing ids)."""
    for name in TASKS:
        task = build_task(name, {"length": 6})
        b = task.generate("train", torch.arange(64))
        ids = torch.cat([b.input_ids.reshape(-1), b.labels.reshape(-1)])
        new = (ids >= task.first_new_id) & (ids < task.first_new_id + len(task.new_tokens))
        assert (new | (ids < task.min_base_vocab)).all(), name
        assert len(set(task.new_tokens)) == len(task.new_tokens)


# -- splits ---------------------------------------------------------------------------------------------
def heldout_rule(task: Any, batch: Batch) -> torch.Tensor:
    """Recompute each sample's split from its content alone (True = held-out), independently of generate."""
    c = task.config
    if task.name in ("grounding", "mqar"):
        content = batch.extras["context" if task.name == "grounding" else "keys"]
        fp = sequence_fingerprint(content)
        return mix32(fp ^ (fp >> 32) ^ task._key_split) % c.heldout_modulus == 0
    content = batch.extras["sequence" if task.name == "copying" else "context"] - c.context_offset
    return task.split_of(content)


@pytest.mark.parametrize("name", TASKS)
@SETTINGS
@given(data=st.data())
def test_splits_follow_content_rule_and_are_disjoint(name: str, data: st.DataObject) -> None:
    task = make(name, data.draw(params_for(name)))
    start = data.draw(st.integers(0, 2**40))
    for split in ("train", "heldout"):
        b = task.generate(split, torch.arange(start, start + 200))
        assert (heldout_rule(task, b) == (split == "heldout")).all()
    result = check_disjoint(task, 400, 200, chunk=97)
    assert result["overlaps"] == 0 and result["hash_matches"] == 0


TINY = {  # sample spaces small enough that 2000 samples per split cover them: disjointness is tested for real
    "grounding": {"length": 2, "pool": 5, "bank_size": 64},
    "mqar": {"length": 2, "pool": 4, "bank_size": 64},
    "copying": {"length": 2, "pool": 8},
    "induction": {"length": 3, "pool": 8},
}


@pytest.mark.parametrize("name", TASKS)
def test_tiny_sample_space_splits_disjoint(name: str) -> None:
    task = build_task(name, TINY[name])
    seen = {}
    for split in ("train", "heldout"):
        b = task.generate(split, torch.arange(2000))
        rows = torch.cat([b.input_ids, b.labels], dim=1)
        seen[split] = {tuple(r) for r in rows.tolist()}
    assert seen["train"] and seen["heldout"]
    assert not seen["train"] & seen["heldout"]
    result = check_disjoint(task, 2000, 2000, chunk=300)
    assert result["overlaps"] == 0
    assert result["heldout_distinct"] == len(seen["heldout"]) < 2000, "tiny spaces repeat samples"


@SETTINGS
@given(params=params_for("grounding"), start=st.integers(0, 2**40), n=st.integers(1, 30))
def test_grounding_prefix_and_suffix_hold_the_same_samples(
    params: dict[str, Any], start: int, n: int
) -> None:
    idx = torch.arange(start, start + n)
    suffix = make("grounding", {**params, "order": "suffix"}).generate("train", idx)
    prefix = make("grounding", {**params, "order": "prefix"}).generate("train", idx)
    for key in ("context", "query", "target_position"):
        assert torch.equal(suffix.extras[key], prefix.extras[key]), key
    assert torch.equal(suffix.labels, prefix.labels)
    L = params["length"]
    assert torch.equal(suffix.input_ids[:, :L], prefix.input_ids[:, 2:])
    assert torch.equal(suffix.input_ids[:, L:], prefix.input_ids[:, :2]), (
        "the query block <out> q moves as a whole"
    )


# -- manifests and configuration errors ----------------------------------------------------------------
@pytest.mark.parametrize("name", TASKS)
@SETTINGS
@given(data=st.data())
def test_manifest_round_trips_and_rebuilds_the_data(name: str, data: st.DataObject) -> None:
    task = make(name, data.draw(params_for(name)))
    manifest = task.manifest()
    assert json.loads(json.dumps(manifest)) == manifest
    assert manifest["task"] == name and isinstance(manifest["generator_version"], int)
    ids = [entry["id"] for entry in manifest["vocabulary"]["new_tokens"]]
    tokens = [entry["token"] for entry in manifest["vocabulary"]["new_tokens"]]
    assert tokens == task.new_tokens and ids[0] == task.first_new_id and len(set(ids)) == len(ids)
    rebuilt = task_from_config(name, make_config(name, json.loads(json.dumps(manifest["params"]))))
    idx = torch.arange(50)
    assert_same(task.generate("heldout", idx), rebuilt.generate("heldout", idx))
    assert rebuilt.manifest() == manifest


def test_registry_lists_all_tasks() -> None:
    assert set(TASKS) <= set(task_names())
    with pytest.raises(TaskConfigError, match="unknown task"):
        build_task("nope", {})
    with pytest.raises(TaskConfigError, match="no parameter"):
        build_task("copying", {"length": 4, "colour": 1})


BAD = [
    ("grounding", {"length": 1}),
    ("grounding", {"length": 5, "pool": 4}),
    ("grounding", {"order": "middle"}),
    ("grounding", {"length": 10, "context_offset": 5}),
    ("grounding", {"pos_offset": -1}),
    ("mqar", {"length": 1}),
    ("mqar", {"length": 4, "pool": 3}),
    ("mqar", {"length": 4, "queries": 5}),
    ("mqar", {"length": 4, "queries": 0}),
    ("mqar", {"order": "prefix"}),
    ("mqar", {"context_offset": -1}),
    ("mqar", {"heldout_modulus": 1}),
    ("copying", {"length": 1}),
    ("copying", {"length": 4, "pool": 7}),
    ("copying", {"order": "prefix"}),
    ("copying", {"heldout_modulus": 1}),
    ("copying", {"context_offset": -3}),
    ("induction", {"length": 2}),
    ("induction", {"pool": 4}),
    ("induction", {"order": "reverse"}),
    ("induction", {"length": 5, "pool": 2**31 + 1}),
]


@pytest.mark.parametrize(("name", "params"), BAD)
def test_bad_configs_raise_one_line(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(TaskConfigError) as info:
        build_task(name, params)
    assert "\n" not in str(info.value) and str(info.value)


@pytest.mark.parametrize("name", TASKS)
@SETTINGS
@given(length=st.integers(-(10**6), 1), order=st.text(max_size=8))
def test_bad_lengths_and_orders_always_rejected(name: str, length: int, order: str) -> None:
    with pytest.raises(TaskConfigError):
        build_task(name, {"length": length})
    valid = ("suffix", "prefix") if name == "grounding" else ("suffix",)
    assume(order not in valid)
    with pytest.raises(TaskConfigError):
        build_task(name, {"length": 5, "order": order})


@pytest.mark.parametrize("name", TASKS)
def test_bad_indices_and_splits(name: str) -> None:
    task = build_task(name, {"length": 5})
    with pytest.raises(TaskConfigError):
        task.generate("validation", torch.arange(3))  # type: ignore[arg-type]
    with pytest.raises(TaskConfigError):
        task.generate("train", torch.tensor([3, -1]))
    assert len(task.generate("train", torch.arange(0))) == 0


def test_mqar_split_empty_is_reported() -> None:
    """A sample space too small for a split fails with a message that names the fix."""
    messages = []
    for seed in range(40):
        task = build_task("mqar", {"length": 2, "pool": 2, "seed": seed, "bank_size": 4})
        try:
            task.generate("heldout", torch.arange(1))
        except TaskConfigError as exc:
            messages.append(str(exc))
    assert messages and all("raise --pool" in m for m in messages)
