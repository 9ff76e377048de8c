"""The README's "The paper's experiment on a GPU" section, run as written: every `probes` command of its bash
blocks, with tiny `save_pretrained` checkpoints standing in for the hub ids (no download here) and
temporary folders for `runs/` and `out/`. `probes synth` lines run with `--dry-run` (added where the line
launches), which checks the models, the task, the launch and SLURM options and prints the plan; the
report and figure lines run on a written grid of run directories. A command the test does not know fails
it, so a new line in the section is either run here or consciously skipped."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from analysis_fixtures import ramp, write_run  # noqa: E402
from probes.cli.app import main  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## The paper's experiment on a GPU"
HUB = re.compile(r"(EleutherAI/pythia-[\w.]+|state-spaces/mamba-[\w.]+-hf)")
SKIPPED = ("make setup", "export HF_HUB_OFFLINE=1", "tensorboard --logdir")  # environment, not probes


def _section() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end]


def _commands(section: str) -> list[tuple[str, str | None]]:
    """(command line, heredoc body or None) of every bash block, continuations joined, comments dropped."""
    out: list[tuple[str, str | None]] = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        lines = iter(block.splitlines())
        pending = ""
        for raw in lines:
            line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
            if not line.strip() and not pending:
                continue
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            cmd = (pending + line.strip()).strip()
            pending = ""
            heredoc = re.search(r"<<'(\w+)'", cmd)
            if heredoc:
                body = []
                for body_line in lines:
                    if body_line.strip() == heredoc.group(1):
                        break
                    body.append(body_line)
                out.append((cmd, "\n".join(body) + "\n"))
            else:
                out.append((cmd, None))
    return out


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny save_pretrained checkpoint of each family in place of every hub id of the section."""
    from probes.models.registry import load_backbone

    root = tmp_path_factory.mktemp("hub")
    ids = sorted(set(HUB.findall(_section())))
    assert "EleutherAI/pythia-1.4b" in ids and "state-spaces/mamba-1.4b-hf" in ids
    made: dict[str, str] = {}
    for family in ("pythia", "mamba"):
        path = root / family
        load_backbone(f"{family}-tiny", seed=0).model.save_pretrained(path)
        made[family] = str(path)
    return {hub: made["pythia" if "pythia" in hub else "mamba"] for hub in ids}


def _grid(root: Path) -> None:
    """A finished grid shaped like the paper's (both models, lengths, orders; two lrs, one seed each)."""
    for model, family, reach in (("EleutherAI/pythia-1.4b", "gpt_neox", 3), ("state-spaces/mamba-1.4b-hf", "mamba", 6)):
        for length in (50, 100, 200):
            for order in ("suffix", "prefix"):
                for lr in (1e-5, 1e-4):
                    name = f"{model.replace('/', '_')}-L{length}-{order}-lr{lr:g}"
                    write_run(root, name, ramp(10, length, np.full(length, reach if lr == 1e-4 else 9)),
                              model=model, family=family, length=length, order=order, lr=lr, max_steps=100)


def _localise(text: str, tmp: Path, stand_ins: dict[str, str]) -> str:
    text = HUB.sub(lambda m: stand_ins[m.group(1)], text)
    text = re.sub(r"(?<![\w/])runs/", f"{tmp}/runs/", text)
    text = re.sub(r"(?<![\w/])out/", f"{tmp}/out/", text)
    return text.replace("paper-1.4b.yaml", f"{tmp}/paper-1.4b.yaml")


def test_the_gpu_section_runs_as_written(tmp_path: Path, stand_ins: dict[str, str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands(_section())
    _grid(tmp_path / "runs" / "paper-1.4b")
    ran: list[str] = []
    for cmd, heredoc in commands:
        if cmd.startswith(SKIPPED):
            continue
        if cmd.startswith("python -c"):  # the download line: the function it calls exists
            from huggingface_hub import snapshot_download  # noqa: F401

            assert "snapshot_download" in cmd
            continue
        if cmd.startswith("cat > ") and heredoc is not None:
            target = _localise(cmd.split()[2], tmp_path, stand_ins)
            Path(target).write_text(_localise(heredoc, tmp_path, stand_ins))
            continue
        assert cmd.startswith("probes "), f"README command not covered by this test: {cmd}"
        argv = shlex.split(_localise(cmd, tmp_path, stand_ins))[1:]
        if argv[0] == "synth" and "--dry-run" not in argv:
            argv.append("--dry-run")
        with pytest.raises(SystemExit) as done:
            main(argv)
        captured = capsys.readouterr()
        assert done.value.code in (0, None), f"{cmd}\n{captured.err}"
        if argv[0] == "synth":
            planned = re.search(r"(\d+) planned run\(s\)", captured.out)
            paper = "check-160m" not in cmd  # the 108-run grid at the paper's settings (flags or file)
            expected = "108" if paper else "18"  # the check: 2 models x 1 length x 1 order x 9
            assert planned and planned.group(1) == expected, (cmd, captured.out[:300])
            settings = ("batch_size=64", "max_steps=78000", "eval_samples=100000", "n_train=1000000",
                        "threshold=0.95", "early_stop=True")
            assert not paper or all(s in captured.out for s in settings), captured.out
        ran.append(argv[0])
    assert ran.count("synth") >= 5 and {"status", "report", "curves", "heatmap"} <= set(ran)
    assert (tmp_path / "out" / "paper-1.4b" / "report" / "report.md").is_file()
    assert not (tmp_path / "runs" / "check-160m").exists()  # dry runs wrote nothing


def test_a_save_pretrained_stand_in_trains(tmp_path: Path, stand_ins: dict[str, str]) -> None:
    """What the dry runs cannot show: a local checkpoint of each family trains through `probes synth`."""
    models = ",".join(sorted(set(stand_ins.values())))
    with pytest.raises(SystemExit) as done:
        main(["synth", "--models", models, "--len", "4", "--max-steps", "2", "--eval-every", "2",
              "--eval-samples", "16", "--n-train", "128", "--batch-size", "8", "--device", "cpu",
              "--out", str(tmp_path)])
    assert done.value.code in (0, None)
    summaries = sorted(tmp_path.glob("*/summary.json"))
    assert len(summaries) == 2
