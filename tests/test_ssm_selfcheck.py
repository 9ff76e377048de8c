"""The GPU path's self-check and fallback, simulated on a CPU through Triton's interpreter, and `probes doctor`.

A compiled Triton scan that fails to build, or builds and returns wrong numbers, must not crash a run or
train it on wrong values: the run falls back to a path that passes, says so in one warning line, and records
the reason in `env.json`. A forced path that fails is an error (one line, exit 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import probes.ssm.triton_scan as ts
from probes.errors import UserError
from probes.ssm import patch, selfcheck
from probes.ssm.patch import FAST_SCAN, TRITON_SCAN

pytestmark = pytest.mark.skipif(not ts.triton_available(), reason="triton is not installed")
CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")  # compiled on a GPU, Triton's interpreter without one


@pytest.fixture(autouse=True)
def _interpreted_and_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(selfcheck.ENV_VAR, raising=False)
    selfcheck.clear_cache()
    patch._WARNED.clear()
    yield
    selfcheck.clear_cache()


def broken_compile(*args, **kwargs):
    raise RuntimeError("PTX assembly aborted: out of resource: shared memory\nsecond line")


def right_values(*args, block_d=None, chunk=None, **kwargs):
    """A stand-in for a compiled Triton scan that is correct: the chunked PyTorch scan (no interpreter)."""
    from probes.ssm.selective_scan import selective_scan

    return selective_scan(*args, **kwargs)


def wrong_values(*args, **kwargs):
    y, last = right_values(*args, **kwargs)
    return y * 1.01, last


def test_the_triton_scan_passes_its_check() -> None:
    result = selfcheck.check_path(TRITON_SCAN, DEVICE)
    assert result.ok and result.reason is None, result
    assert selfcheck.check_path(TRITON_SCAN, DEVICE) is result  # cached for the process


@pytest.mark.parametrize(("fake", "words"), [(broken_compile, "RuntimeError: PTX assembly aborted"),
                                              (wrong_values, "output differs by")])
def test_a_failing_triton_scan_falls_back_with_one_warning(monkeypatch, capsys, fake, words) -> None:
    monkeypatch.setattr(ts, "selective_scan", fake)
    choice = selfcheck.select_path(DEVICE, candidates=[TRITON_SCAN, FAST_SCAN])
    assert choice.path == FAST_SCAN
    assert words in choice.note and "using probes-fast-scan" in choice.note
    assert "second line" not in choice.note  # one line
    assert [c.path for c in choice.checks] == [TRITON_SCAN, FAST_SCAN]


def test_a_model_records_the_fallback_and_its_reason(monkeypatch, capsys) -> None:
    from test_ssm_patch import tiny_mamba

    monkeypatch.setattr(ts, "selective_scan", wrong_values)
    monkeypatch.setattr(selfcheck, "automatic_candidates", lambda device: [TRITON_SCAN, FAST_SCAN])
    model = tiny_mamba().to(DEVICE)
    assert patch.enable_fast_path(model) == FAST_SCAN
    note = patch.mamba_path_note(model)
    assert note and "probes-triton: output differs by" in note
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: self-check failed") and "mamba_path probes-fast-scan" in err[0]
    before = patch.SCAN_CALLS[FAST_SCAN]
    model(input_ids=torch.zeros(1, 4, dtype=torch.long, device=DEVICE)).logits.sum().backward()
    assert patch.SCAN_CALLS[FAST_SCAN] - before == 2  # the run really uses the fallback


def test_a_forced_path_that_fails_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(ts, "selective_scan", broken_compile)
    monkeypatch.setenv(selfcheck.ENV_VAR, TRITON_SCAN)
    with pytest.raises(UserError, match="failed its self-check"):
        selfcheck.select_path(DEVICE)
    monkeypatch.setenv(selfcheck.ENV_VAR, "mamba-ssm")
    monkeypatch.setattr(selfcheck.found, "mamba_ssm_importable", lambda: False)
    with pytest.raises(UserError, match=f"unavailable on {DEVICE.type}"):
        selfcheck.select_path(DEVICE)
    monkeypatch.setenv(selfcheck.ENV_VAR, "warp-drive")
    with pytest.raises(UserError, match="not a Mamba path"):
        selfcheck.forced_path()


def test_a_forced_path_that_passes_is_used(monkeypatch) -> None:
    from test_ssm_patch import tiny_mamba

    monkeypatch.setattr(ts, "selective_scan", right_values)
    monkeypatch.setenv(selfcheck.ENV_VAR, TRITON_SCAN)
    model = tiny_mamba().to(DEVICE)
    assert patch.enable_fast_path(model) == TRITON_SCAN
    before = patch.SCAN_CALLS[TRITON_SCAN]
    model(input_ids=torch.zeros(1, 3, dtype=torch.long, device=DEVICE))
    assert patch.SCAN_CALLS[TRITON_SCAN] - before == 2
    monkeypatch.setenv(selfcheck.ENV_VAR, "transformers-sequential")
    assert patch.enable_fast_path(model) == "transformers-sequential"


def probes(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, **(env_extra or {})}
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, "-m", "probes", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.slow
def test_forcing_an_unavailable_path_from_the_cli_is_one_line_exit_2(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine the Triton path is available")
    out = probes("--mamba-path", "probes-triton", "synth", "--model", "mamba-tiny", "--len", "4",
                 "--max-steps", "2", "--eval-samples", "16", "--n-train", "64", "--batch-size", "4",
                 "--out", str(tmp_path / "runs"))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "probes-triton" in lines[0], out.stderr
    bad = probes("--mamba-path", "nope", "doctor")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a Mamba path" in bad.stderr


@pytest.mark.slow
def test_doctor_on_cpu(tmp_path: Path) -> None:
    out = probes("doctor", "--json", str(tmp_path / "d.json"))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "d.json").read_text())
    rows = {r["path"]: r for r in report["mamba"]["rows"]}
    if not torch.cuda.is_available():
        assert report["mamba"]["run_would_use"]["path"] == FAST_SCAN
        assert not rows[TRITON_SCAN]["available"] and "needs CUDA" in rows[TRITON_SCAN]["note"]
        assert report["fast_paths"]["bf16 autocast"]["ok"] and not report["fast_paths"]["fused AdamW"]["ok"]
    assert report["versions"]["torch"] == torch.__version__.split("+")[0] or report["versions"]["torch"]
    for words in ("Mamba-1 scan paths", "a run here would use", "engine fast paths", "transformers"):
        assert words in out.stdout
