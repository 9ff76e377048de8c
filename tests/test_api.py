"""The notebook API: `from probes import …` (lazy re-exports) and the README's "Python API" example, run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import probes

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_import_probes_loads_no_heavy_module() -> None:
    """`import probes` (and the CLI's start-up through it) must not pay for torch, pandas or matplotlib."""
    code = (
        "import sys, probes\n"
        "heavy = ('torch', 'transformers', 'pandas', 'matplotlib', 'numpy')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_exports_are_the_library_objects() -> None:
    from probes.analysis.rundir import load_run, load_runs
    from probes.synthetic.grounding import GroundingConfig, GroundingTask
    from probes.synthetic.mqar import MQARTask

    from probes.train import loop
    from probes.train.config import RunConfig

    assert probes.load_run is load_run and probes.load_runs is load_runs
    assert probes.GroundingTask is GroundingTask and probes.GroundingConfig is GroundingConfig
    assert probes.MQARTask is MQARTask and probes.RunConfig is RunConfig
    assert callable(probes.train) and probes.train.loop is loop  # the package, callable as loop.run
    assert set(probes.__all__) <= set(dir(probes))
    for name in probes.__all__:
        assert getattr(probes, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        probes.nope  # noqa: B018


def test_build_task_export_makes_a_generator() -> None:
    import torch

    task = probes.build_task("grounding", {"length": 6, "order": "prefix", "context_offset": 512})
    batch = task.generate("train", torch.arange(6))
    assert batch.input_ids.shape == (6, 8)
    assert batch.metric_positions[:, 0].tolist() == list(range(6))  # target k = i mod L


@pytest.mark.slow  # trains pythia-tiny for 60 steps: ~5-15 s on the shared 2-core box
def test_readme_python_api_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_example(), str(README) + ":Python API", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert out.startswith("torch.Size([4, 12]) [2, 3, 4, 5]\n")  # suffix, L=10: targets 0..3 -> ids 2..5
    assert "finished 60 " in out
    run = probes.load_run(tmp_path / "runs" / "api-demo")
    df = run.to_dataframe()
    assert len(df) == 3 * 10 and sorted(set(df.step)) == [20, 40, 60]
    np.testing.assert_allclose(df.per_position_acc.to_numpy(), run.accuracy.reshape(-1))
    # the count-weighted mean over positions is the overall held-out accuracy of each evaluation
    df["hits"] = df.per_position_acc * df.per_position_count
    by_step = df.groupby("step")
    weighted = (by_step.hits.sum() / by_step.per_position_count.sum()).to_numpy()
    np.testing.assert_allclose(weighted, run.heldout_acc, atol=1e-6)
    np.testing.assert_allclose(by_step.heldout_acc.first().to_numpy(), run.heldout_acc)
