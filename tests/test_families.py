"""The one model-family table (probes/families.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from probes.families import (
    FAMILIES,
    KINDS,
    families_of,
    has_ssm_layers,
    is_transformer,
    kind_of,
    kind_rank,
    model_sort_key,
)


@pytest.mark.parametrize(
    ("family", "kind"),
    [
        ("gpt_neox", "transformer"),
        ("llama", "transformer"),
        ("gpt2", "transformer"),
        ("mamba", "ssm"),
        ("mamba2", "ssm"),
        ("falcon_mamba", "ssm"),
        ("hybrid", "hybrid"),
        ("jamba", "hybrid"),
        ("zamba", "hybrid"),
        ("zamba2", "hybrid"),
        ("falcon_h1", "hybrid"),
    ],
)
def test_required_families(family: str, kind: str) -> None:
    assert kind_of(family) == kind


def test_helpers_agree_with_the_table() -> None:
    assert set(FAMILIES.values()) <= set(KINDS)
    assert families_of("transformer") == {f for f, k in FAMILIES.items() if k == "transformer"}
    assert families_of("ssm", "hybrid") == {f for f in FAMILIES if has_ssm_layers(f)}
    assert is_transformer("llama") and not is_transformer("hybrid") and not is_transformer("bert")
    assert kind_of("bert") is None and not has_ssm_layers("bert")
    with pytest.raises(ValueError):
        families_of("rnn")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FAMILIES["x"] = "ssm"  # type: ignore[index]


def test_sort_order_is_kind_then_name() -> None:
    models = [
        ("hybrid-tiny", "hybrid"),
        ("zz-llama", "llama"),
        ("a-mamba", "mamba"),
        ("odd", "bert"),
        ("pythia", "gpt_neox"),
    ]
    ordered = [m for m, f in sorted(models, key=lambda mf: model_sort_key(mf[1], mf[0]))]
    assert ordered == ["pythia", "zz-llama", "a-mamba", "hybrid-tiny", "odd"]
    assert [kind_rank(f) for f in ("gpt2", "mamba2", "jamba", "?")] == [0, 1, 2, 3]


def test_registry_families_are_all_in_the_table() -> None:
    """Every label probes.models.registry can record for a known model_type is classified here."""
    from probes.models.registry import FAMILIES as MODEL_TYPES

    missing = sorted(set(MODEL_TYPES.values()) - set(FAMILIES))
    assert not missing, f"family labels without a kind in probes/families.py: {missing}"


def test_importing_the_table_loads_no_torch() -> None:
    code = (
        "import sys, probes.families; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
