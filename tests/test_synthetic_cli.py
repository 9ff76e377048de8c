"""End-to-end tests of `probes data`: the installed command in a fresh process, as a user runs it.

Every invocation starts an interpreter that imports torch through the CLI root (~10-25 s on a shared 2-core
box), so all of them run concurrently from one module fixture and the tests only inspect the results.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from probes.synthetic.registry import build_task
from probes_cli import PROBES

pytestmark = pytest.mark.slow

GROUNDING_KEYS = ["context", "query", "target_position", "input_ids", "label"]  # the README export format, in this order

OK = {
    "grounding": ["--len", "6", "--n", "50", "--split", "heldout", "--seed", "3", "--out", "{d}/g.jsonl"],
    "grounding_prefix": [
        "--len",
        "5",
        "--order",
        "prefix",
        "--split",
        "train",
        "--start",
        "7",
        "--n",
        "20",
        "--pool",
        "9",
        "--pos-offset",
        "4",
        "--base-vocab",
        "1000",
        "--out",
        "{d}/gp.jsonl",
    ],
    "mqar": ["--task", "mqar", "--len", "4", "--n", "20", "--param", "queries=3", "--out", "{d}/m.jsonl"],
    "copying": ["--task", "copying", "--len", "5", "--n", "20", "--out", "{d}/c.jsonl"],
    "induction": ["--task", "induction", "--len", "5", "--n", "20", "--out", "{d}/i.jsonl"],
}
BAD = {
    "len0": ["--len", "0", "--n", "5", "--out", "{d}/x.jsonl"],
    "len1": ["--len", "1", "--n", "5", "--out", "{d}/x.jsonl"],
    "pool_below_len": ["--len", "5", "--pool", "3", "--n", "5", "--out", "{d}/x.jsonl"],
    "unknown_order": ["--len", "5", "--order", "middle", "--n", "5", "--out", "{d}/x.jsonl"],
    "unknown_task": ["--task", "nope", "--len", "5", "--n", "5", "--out", "{d}/x.jsonl"],
    "negative_n": ["--len", "5", "--n", "-1", "--out", "{d}/x.jsonl"],
    "unwritable": ["--len", "5", "--n", "5", "--out", "/proc/nope/x.jsonl"],
}


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    items = [*OK.items(), *BAD.items()]
    # mktemp is not thread-safe (numbered directories race): make every directory before the threads start
    dirs = {name: tmp_path_factory.mktemp(name) for name, _ in items}

    def one(name: str, args: list[str]) -> tuple[str, tuple[subprocess.CompletedProcess[str], Path]]:
        d = dirs[name]
        argv = [*PROBES, "data", *(a.replace("{d}", str(d)) for a in args)]
        return name, (subprocess.run(argv, capture_output=True, text=True, timeout=300), d)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(lambda item: one(*item), items))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_records(
    task_name: str, params: dict[str, Any], split: str, start: int, n: int
) -> list[dict[str, Any]]:
    task = build_task(task_name, params)
    batch = task.generate(split, torch.arange(start, start + n))  # type: ignore[arg-type]
    return [
        {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()} for r in task.records(batch)
    ]


def assert_ok(runs: dict[str, Any], name: str) -> Path:
    proc, d = runs[name]
    assert proc.returncode == 0, proc.stderr
    return d


def test_grounding_export_matches_spec_format(runs: dict[str, Any]) -> None:
    d = assert_ok(runs, "grounding")
    records = lines(d / "g.jsonl")
    assert len(records) == 50
    for r in records:
        assert list(r) == GROUNDING_KEYS
        assert all(
            type(x) is int
            for x in (*r["context"], *r["input_ids"], r["query"], r["target_position"], r["label"])
        )
        assert len(r["context"]) == 6 == len(set(r["context"]))
        assert r["context"][r["target_position"]] == r["query"]
        assert r["label"] == 2 + r["target_position"]  # default pos_offset
        assert r["input_ids"] == [*r["context"], 50277 + 12, r["query"]]  # <out> after the 2·L pool
    assert [r["target_position"] for r in records] == [i % 6 for i in range(50)]
    params = {
        "length": 6,
        "seed": 3,
        "order": "suffix",
        "pool": None,
        "pos_offset": 2,
        "context_offset": 50277,
    }
    assert records == expected_records("grounding", params, "heldout", 0, 50), (
        "the file holds the generator's samples"
    )
    manifest = json.loads((d / "g.manifest.json").read_text())
    assert manifest["task"] == "grounding" and manifest["split"] == "heldout" and manifest["n"] == 50
    assert (
        manifest["params"]["length"] == 6
        and manifest["params"]["seed"] == 3
        and manifest["data_file"] == "g.jsonl"
    )
    assert sorted(p.name for p in d.iterdir()) == ["g.jsonl", "g.manifest.json"], "no temporary file left"


def test_grounding_prefix_options_are_honoured(runs: dict[str, Any]) -> None:
    d = assert_ok(runs, "grounding_prefix")
    records = lines(d / "gp.jsonl")
    params = {"length": 5, "order": "prefix", "pool": 9, "seed": 0, "pos_offset": 4, "context_offset": 1000}
    assert records == expected_records("grounding", params, "train", 7, 20)
    for r in records:
        assert r["input_ids"] == [1009, r["query"], *r["context"]] and r["label"] == 4 + r["target_position"]
        assert all(1000 <= c < 1009 for c in r["context"])
    manifest = json.loads((d / "gp.manifest.json").read_text())
    assert (
        manifest["first_index"] == 7
        and manifest["split"] == "train"
        and manifest["params"]["order"] == "prefix"
    )


@pytest.mark.parametrize(
    ("name", "file", "params", "keys"),
    [
        (
            "mqar",
            "m",
            {"length": 4, "queries": 3},
            ["keys", "values", "query_pairs", "input_ids", "label_positions", "labels"],
        ),
        ("copying", "c", {"length": 5}, ["sequence", "input_ids", "label_positions", "labels"]),
        ("induction", "i", {"length": 5}, ["context", "trigger_position", "input_ids", "label"]),
    ],
)
def test_other_tasks_export(
    runs: dict[str, Any], name: str, file: str, params: dict[str, Any], keys: list[str]
) -> None:
    d = assert_ok(runs, name)
    records = lines(d / f"{file}.jsonl")
    assert records and all(list(r) == keys for r in records)
    assert records == expected_records(name, {**params, "order": "suffix", "seed": 0}, "heldout", 0, 20)
    for r in records:
        if "labels" in r:
            assert [r["input_ids"][p + 1] for p in r["label_positions"][:-1]] == r["labels"][
                :-1
            ]  # teacher forcing
        else:
            assert r["context"][r["trigger_position"] + 1] == r["label"]
    manifest = json.loads((d / f"{file}.manifest.json").read_text())
    assert (
        manifest["task"] == name and manifest["n"] == 20 and manifest["params"]["length"] == params["length"]
    )


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_fails_with_one_error_line_and_no_file(runs: dict[str, Any], name: str) -> None:
    proc, d = runs[name]
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(d.iterdir()) == [], "no output, manifest or temporary file left"
