"""Run directory loading: valid, still running, and every kind of corrupt directory names its file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from analysis_fixtures import ramp, write_run  # noqa: E402
from probes.analysis.rundir import TIDY_COLUMNS, find_runs, load_run, load_runs  # noqa: E402

from probes.errors import UserError  # noqa: E402


def test_load_run_reads_every_file(tmp_path: Path) -> None:
    acc = ramp(4, 6, [0, 1, 2, 3, 3, 3])
    run = load_run(write_run(tmp_path, "r", acc, lr=5e-5, init_seed=2, max_steps=80, eval_every=20))
    np.testing.assert_allclose(run.accuracy, acc)
    assert run.steps.tolist() == [20, 40, 60, 80]
    assert run.counts is not None and run.counts.shape == (4, 6)
    assert [e["step"] for e in run.evals] == [20, 40, 60, 80]
    assert len(run.train_log) == 4
    assert (run.model, run.family, run.length, run.order, run.lr, run.init_seed) == (
        "pythia-tiny",
        "gpt_neox",
        6,
        "suffix",
        5e-5,
        2,
    )
    assert run.status == "finished" and run.eval_interval == 20
    np.testing.assert_allclose(run.frac_steps, [0.25, 0.5, 0.75, 1.0])
    assert run.samples_seen.tolist() == [20 * 64, 40 * 64, 60 * 64, 80 * 64]


def test_eval_interval_defaults_to_one_percent(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "r", ramp(2, 3, [0, 0, 1]), steps=[500, 1000], max_steps=1000))
    assert run.config["train"]["eval_every"] is None
    assert run.eval_interval == 10


def test_running_run_without_summary_loads(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(3, 4, [0, 1, 2, 9 % 4]), status=None)
    run = load_run(d)
    assert run.summary is None and run.status == "running" and len(run.evals) == 3


def test_just_started_run_loads_with_no_evaluations(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", np.zeros((0, 4)), status="running")
    (d / "metrics.jsonl").unlink()
    run = load_run(d)
    assert run.status == "running" and run.evals == [] and run.accuracy.shape == (0, 0)
    (d / "summary.json").unlink()  # neither summary nor metrics: not a run yet
    with pytest.raises(UserError, match="neither metrics.jsonl nor summary.json"):
        load_run(d)


def test_running_run_tolerates_half_written_last_line_and_lagging_matrix(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(3, 4, [0, 1, 2, 2]), status=None)
    metrics = d / "metrics.jsonl"
    good = metrics.read_text()
    eval_line = json.dumps(
        {
            "kind": "eval",
            "step": 40,
            "samples_seen": 2560,
            "frac_steps": 1.0,
            "heldout_acc": 1.0,
            "per_position_acc": [1.0] * 4,
        }
    )
    metrics.write_text(good + eval_line + "\n" + '{"kind": "tra')  # eval appended, matrix not yet rewritten
    run = load_run(d)
    assert len(run.evals) == 3 and run.accuracy.shape == (3, 4)


def test_finished_run_rejects_half_written_line(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(3, 4, [0, 1, 2, 2]))
    with (d / "metrics.jsonl").open("a") as fh:
        fh.write('{"kind": "tra')
    with pytest.raises(UserError, match=r"metrics\.jsonl line 7: not valid JSON"):
        load_run(d)


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(3, 4, [0, 1, 2, 2]))
    lines = (d / "metrics.jsonl").read_text().splitlines()
    lines[2] = "{not json"
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"metrics\.jsonl line 3: not valid JSON"):
        load_run(d)


def test_missing_config_is_an_error(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(2, 3, [0, 1, 1]))
    (d / "config.json").unlink()
    with pytest.raises(UserError, match=r"config\.json is missing"):
        load_run(d)
    with pytest.raises(UserError, match="no run directories"):
        find_runs([tmp_path])


@pytest.mark.parametrize("name", ["manifest.json", "env.json", "per_position.safetensors"])
def test_missing_required_file_is_named(tmp_path: Path, name: str) -> None:
    d = write_run(tmp_path, "r", ramp(2, 3, [0, 1, 1]))
    (d / name).unlink()
    with pytest.raises(UserError, match=name.replace(".", r"\.")):
        load_run(d)


def test_unknown_schema_version(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(2, 3, [0, 1, 1]))
    cfg = json.loads((d / "config.json").read_text())
    cfg["schema_version"] = 2
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match=r"config\.json: schema_version 2 is not supported"):
        load_run(d)


def test_bad_json_in_config_names_file(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(2, 3, [0, 1, 1]))
    (d / "config.json").write_text('{"schema_version": 1,\n oops')
    with pytest.raises(UserError, match=r"config\.json is not valid JSON \(line 2"):
        load_run(d)


def test_matrix_row_count_must_match_eval_lines(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(3, 4, [0, 1, 2, 2]))
    other = write_run(tmp_path / "x", "r", ramp(2, 4, [0, 1, 1, 1]))
    (d / "per_position.safetensors").write_bytes((other / "per_position.safetensors").read_bytes())
    with pytest.raises(
        UserError, match=r"per_position\.safetensors: accuracy has 2 rows but .* has 3 eval lines"
    ):
        load_run(d)


def test_matrix_width_must_match_eval_lines(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(3, 4, [0, 1, 2, 2]))
    other = write_run(tmp_path / "x", "r", ramp(3, 5, [0, 1, 2, 2, 2]))
    (d / "per_position.safetensors").write_bytes((other / "per_position.safetensors").read_bytes())
    with pytest.raises(UserError, match="5 positions but eval lines have 4"):
        load_run(d)


def test_matrix_values_must_mirror_eval_lines(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(3, 4, [0, 1, 2, 2]))
    other = write_run(tmp_path / "x", "r", ramp(3, 4, [0, 0, 0, 0]))
    (d / "per_position.safetensors").write_bytes((other / "per_position.safetensors").read_bytes())
    with pytest.raises(UserError, match=r"row 0 does not match eval line 2"):
        load_run(d)


def test_garbage_matrix_file(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(2, 3, [0, 1, 1]))
    (d / "per_position.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match=r"per_position\.safetensors cannot be read"):
        load_run(d)


def test_unknown_summary_status(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(2, 3, [0, 1, 1]), status="exploded")
    with pytest.raises(UserError, match=r"summary\.json: unknown status 'exploded'"):
        load_run(d)


def test_eval_line_missing_key(tmp_path: Path) -> None:
    d = write_run(tmp_path, "r", ramp(2, 3, [0, 1, 1]))
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    del lines[1]["heldout_acc"]
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(UserError, match="line 2: eval record lacks heldout_acc"):
        load_run(d)


def test_find_runs_expands_grid_and_skips_duplicates(tmp_path: Path) -> None:
    grid = tmp_path / "grid"
    a = write_run(grid / "L10", "a", ramp(2, 3, [0, 1, 1]))
    b = write_run(grid / "L20", "b", ramp(2, 3, [0, 1, 1]))
    c = write_run(tmp_path, "c", ramp(2, 3, [0, 1, 1]))
    found = find_runs([grid, c, a, c / "config.json"])
    assert found == [a.resolve(), b.resolve(), c.resolve()]
    assert [r.name for r in load_runs([grid])] == ["a", "b"]


def test_find_runs_rejects_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        find_runs([tmp_path / "nope"])


def test_analysis_imports_no_training_code() -> None:
    """CONTRACTS: analysis reads run directories only; it must not pull in the trainer, models or torch."""
    code = (
        "import sys, probes.analysis.report, probes.analysis.heatmap, probes.analysis.curves\n"
        "import probes.analysis.select, probes.analysis.aggregate, probes.analysis.intervals, probes.analysis.claims\n"
        "import probes.analysis.best_lr, probes.families\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or "
        "m.startswith(('probes.train', 'probes.models', 'probes.ssm'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_tidy_rows_one_per_eval_and_position(tmp_path: Path) -> None:
    acc = ramp(3, 4, [0, 1, 2, 2])
    acc[1, 3] = np.nan  # no held-out sample for position 3 at eval 1 (null in metrics.jsonl)
    run = load_run(
        write_run(tmp_path, "r", acc, model="m", family="mamba", order="prefix", lr=5e-5, init_seed=2,
                  steps=[10, 20, 30], max_steps=40, batch_size=8)
    )  # fmt: skip
    df = run.to_dataframe()
    assert len(df) == 3 * 4 and list(df.columns) == list(TIDY_COLUMNS)
    # positions are 1-based (1 = first context token): per_position_acc[k] of a metrics line is position k + 1
    assert df[["step", "position"]].values.tolist() == [[s, k + 1] for s in (10, 20, 30) for k in range(4)]
    np.testing.assert_allclose(df["per_position_acc"].to_numpy(), acc.reshape(-1))  # NaN stays NaN
    row = df[(df.step == 20) & (df.position == 2)].iloc[0]
    assert (row.frac_steps, row.samples_seen, row.per_position_count, row.per_position_acc) == (0.5, 160, 100, 1.0)
    assert row.heldout_acc == pytest.approx(run.heldout_acc[1])
    assert set(df.model) == {"m"} and set(df.kind) == {"ssm"} and set(df.order) == {"prefix"}
    assert set(df.lr) == {5e-5} and set(df.init_seed) == {2} and set(df.length) == {4}
    assert run.to_records()[5] == df.iloc[5].to_dict() | {"per_position_acc": float(acc[1, 1])}


def test_tidy_rows_of_a_run_without_evaluations(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "r", np.zeros((0, 4)), status="running"))
    df = run.to_dataframe()
    assert df.empty and list(df.columns) == list(TIDY_COLUMNS)


def test_load_run_of_a_grid_points_at_load_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "grid" / "L4", "r", ramp(2, 4, [1, 1, 1, 1]))
    with pytest.raises(UserError, match=r"holds run directories, it is not one: use load_runs\(\[") as exc:
        load_run(tmp_path / "grid")
    assert "\n" not in str(exc.value)
    assert len(load_runs([tmp_path / "grid"])) == 1
