"""``--select key=value``: parsing, matching, and the errors that keep a typo from an empty figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import write_run
from probes.analysis.rundir import Run, load_run
from probes.analysis.select import parse_selectors, select_runs

from probes.errors import UserError


def _runs(root: Path) -> list[Run]:
    acc = np.full((2, 3), 0.5)
    out = []
    for model, family in (("pythia-tiny", "gpt_neox"), ("mamba-tiny", "mamba"), ("hybrid-tiny", "hybrid")):
        for order in ("suffix", "prefix"):
            for lr in (1e-5, 1e-4):
                name = f"{model}-{order}-{lr:g}"
                out.append(
                    load_run(write_run(root, name, acc, model=model, family=family, order=order, lr=lr))
                )
    return out


def test_parse_values_and_aliases() -> None:
    sel = parse_selectors(["model=a,b", "lr=1e-4", "L=200", "seed=2", "model=c"])
    assert sel == {"model": ("a", "b", "c"), "lr": (1e-4,), "length": (200,), "init_seed": (2,)}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("model", "expected key=value"),
        ("model=", "expected key=value"),
        ("colour=red", "unknown key 'colour'"),
        ("lr=fast", "'fast' is not a valid lr"),
        ("length=2.5", "'2.5' is not a valid length"),
    ],
)
def test_bad_selectors(item: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_selectors([item])


def test_keys_and_together_values_or_together_numbers_compare_as_numbers(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    got = select_runs(runs, parse_selectors(["model=pythia-tiny,mamba-tiny", "lr=0.0001", "order=suffix"]))
    assert sorted(r.name for r in got) == ["mamba-tiny-suffix-0.0001", "pythia-tiny-suffix-0.0001"]
    assert [
        r.name for r in select_runs(runs, parse_selectors(["kind=hybrid", "lr=1e-5", "order=prefix"]))
    ] == ["hybrid-tiny-prefix-1e-05"]
    assert select_runs(runs, {}) == runs


def test_selection_matching_nothing_lists_what_exists(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    with pytest.raises(UserError) as exc:
        select_runs(runs, parse_selectors(["model=pythia", "lr=3e-4"]))
    msg = str(exc.value)
    assert "matches none of the 12 runs" in msg
    assert "model: hybrid-tiny, mamba-tiny, pythia-tiny" in msg and "lr: 0.0001, 1e-05" in msg
