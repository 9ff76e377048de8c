"""`probes bench …` on tiny sizes: each subcommand runs end to end and its JSON holds positive numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from probes.cli.app import main


def _run(args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as exc:
        main(["bench", *args, "--json", str(out)])
    assert exc.value.code in (0, None)
    return json.loads(out.read_text())


def test_data(tmp_path: Path) -> None:
    r = _run(["data", "--len", "20", "--n", "3000", "--chunk", "1000", "--python-n", "500"], tmp_path)
    assert r["bench"] == "data" and len(r["rows"]) == 3
    assert all(row["samples_per_s"] > 0 for row in r["rows"])
    assert r["ratio"]["warm_vs_python"] > 0 and r["ratio"]["cold_vs_python"] > 0


def test_step(tmp_path: Path) -> None:
    r = _run(["step", "--models", "pythia-tiny,mamba-tiny", "--batch-size", "2", "--len", "16", "--steps", "1",
              "--device", "cpu"], tmp_path)
    rows = {row["model"]: row for row in r["rows"]}
    assert rows["pythia-tiny"]["ratio_to_first"] == 1.0
    assert rows["mamba-tiny"]["mamba_path"] == "probes-fast-scan" and rows["pythia-tiny"]["mamba_path"] is None
    for row in rows.values():
        assert row["ms_per_step"] > 0 and row["tokens_per_s"] > 0 and row["model_flops_per_step"] > 0
        assert row["peak_step_memory_bytes"] > 0


def test_step_takes_a_local_checkpoint(tmp_path: Path) -> None:
    from probes.models.registry import load_backbone

    ckpt = tmp_path / "my-mamba"
    load_backbone("mamba-tiny", seed=3).model.save_pretrained(ckpt)
    r = _run(["step", "--models", f"pythia-tiny,{ckpt}", "--batch-size", "2", "--len", "8", "--steps", "1",
              "--device", "cpu"], tmp_path)
    row = r["rows"][1]
    assert row["model"] == str(ckpt) and row["family"] == "mamba" and row["mamba_path"] == "probes-fast-scan"


def test_eval(tmp_path: Path) -> None:
    r = _run(["eval", "--vocab", "4096", "--len", "16", "--n", "8", "--batch-size", "4", "--device", "cpu"], tmp_path)
    assert r["config"]["vocab_rows"] >= 4096
    assert r["prediction_agreement"] == 1.0  # both heads must give the same argmax
    assert all(row["samples_per_s"] > 0 for row in r["rows"]) and r["ratio"]["target_vs_full"] > 0


def test_scaling_writes_figure(tmp_path: Path) -> None:
    fig = tmp_path / "scaling.png"
    r = _run(["scaling", "--lengths", "8,16,32", "--models", "pythia-tiny,mamba-tiny", "--batch-size", "1", "--steps", "1",
              "--out", str(fig), "--device", "cpu"], tmp_path)
    assert len(r["rows"]) == 6 and all(row["ms_per_step"] > 0 and row["memory_bytes"] > 0 for row in r["rows"])
    # saved activations grow with length
    mem = [row["memory_bytes"] for row in r["rows"] if row["model"] == "mamba-tiny"]
    assert mem == sorted(mem) and mem[-1] > mem[0]
    assert fig.stat().st_size > 0 and fig.with_suffix(".pdf").stat().st_size > 0


def test_mamba_path(tmp_path: Path) -> None:
    r = _run(["mamba-path", "--len", "8", "--batch-size", "2", "--steps", "1", "--device", "cpu"], tmp_path)
    paths = {row["path"]: row for row in r["rows"]}
    assert r["default_path"] == "probes-fast-scan" and paths["probes-fast-scan"]["default"]
    assert list(paths) == ["mamba-ssm", "probes-triton", "probes-fast-scan", "transformers-mambapy",
                           "transformers-sequential"]
    for name in ("probes-fast-scan", "transformers-sequential"):
        assert paths[name]["available"] and paths[name]["ms_per_step"] > 0
        assert paths[name]["peak_step_memory_bytes"] > 0
    # No GPU here: the CUDA paths are listed as absent, each with its reason, and not timed.
    for name in ("mamba-ssm", "probes-triton"):
        assert not paths[name]["available"] and "CUDA" in paths[name]["note"] and paths[name]["ms_per_step"] is None
    mambapy = paths["transformers-mambapy"]
    assert mambapy["available"] == (r["mambapy_installed"] and not r["cuda"])
    assert paths["probes-fast-scan"]["ratio_to_default"] == 1.0


def test_mamba_path_subset_and_unknown_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = _run(["mamba-path", "--len", "8", "--batch-size", "2", "--steps", "1", "--device", "cpu",
              "--paths", "probes-fast-scan"], tmp_path)
    assert [row["path"] for row in r["rows"]] == ["probes-fast-scan"]
    with pytest.raises(SystemExit) as exc:
        main(["bench", "mamba-path", "--len", "8", "--paths", "mambapy2", "--device", "cpu"])
    assert exc.value.code == 2 and "unknown Mamba path" in capsys.readouterr().err


def test_step_one_at_a_time(tmp_path: Path) -> None:
    r = _run(["step", "--models", "pythia-tiny,mamba-tiny", "--batch-size", "2", "--len", "8", "--steps", "1",
              "--device", "cpu", "--one-at-a-time"], tmp_path)
    assert r["config"]["one_at_a_time"] is True and r["targets"] == []
    assert [row["model"] for row in r["rows"]] == ["pythia-tiny", "mamba-tiny"]
    assert all(row["ms_per_step"] > 0 and row["peak_total_bytes"] is None for row in r["rows"])


def test_paper_target_rows() -> None:
    from probes.bench.step import target_rows

    rows = [
        {"model": "pythia-small", "ms_per_step": 45.0, "mfu": 0.155},
        {"model": "mamba-small", "ms_per_step": 100.0, "mfu": 0.05},
        {"model": "pythia-1.4b-shape", "ms_per_step": 200.0, "mfu": 0.5},
        {"model": "mamba-1.4b-shape", "ms_per_step": 320.0, "mfu": 0.3, "peak_total_bytes": 41e9},
    ]
    got = {t["target"]: (t["measured"], t["met"]) for t in target_rows(rows)}
    assert got == {
        "mamba-small / pythia-small step time": (100 / 45, False),
        "mamba-1.4b-shape / pythia-1.4b-shape step time": (1.6, False),
        "mamba-1.4b-shape peak memory (GB)": (41.0, False),
        "pythia-1.4b-shape MFU": (0.5, True),
    }
    assert target_rows(rows[:1]) == []


def test_pruning(tmp_path: Path) -> None:
    r = _run(["pruning", "--k", "16,4", "--grid", "4", "--text-tokens", "4", "--repeats", "1", "--device", "cpu"],
             tmp_path)
    assert [row["k"] for row in r["rows"]] == [16, 4]
    assert all(row["latency_ms"] > 0 and row["seq_len"] > 0 for row in r["rows"])


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.json"
    with pytest.raises(SystemExit) as exc:
        main(["bench", "scaling", "--lengths", "8,a", "--json", str(out)])
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err and not out.exists()


def test_scan_configurations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench scan` times launch configurations and checks each against the default (interpreted on a CPU)."""
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    r = _run(["scan", "--batch-size", "1", "--d-inner", "6", "--state", "4", "--len", "5", "--block-d", "2,4",
              "--chunk", "16", "--warps", "4/8,2/4", "--steps", "1", "--device", "cuda" if cuda else "cpu"], tmp_path)
    assert len(r["rows"]) == 5  # the default (block 8) and 2 x 2 candidates
    assert sum(row["default"] for row in r["rows"]) == 1
    for row in r["rows"]:
        assert row["fwd_bwd_ms"] > 0 and row["max_rel_error"] < 1e-2, row  # bf16 inputs, same float32 maths


def test_scan_needs_a_gpu_or_the_interpreter(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit) as exc:
        main(["bench", "scan", "--device", "cpu"])
    assert exc.value.code == 2 and "needs a CUDA device" in capsys.readouterr().err
