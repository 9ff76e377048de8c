"""Run-directory integrity (README): `probes status` tells a dead run from a running one (writer lock, heartbeat age), does
not trust a garbage summary, and lists only run directories."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from probes.cli.app import main
from probes_cli import cli_ok

from probes.errors import UserError
from probes.launch.status import STALE_S, collect, read_state

# A stand-in writer: takes the run's writer lock and writes a running summary, as the trainer does.
WRITER = """
import json, sys, time
from pathlib import Path
from probes.train.lock import writer_lock
run_dir = Path(sys.argv[1])
with writer_lock(run_dir):
    (run_dir / "config.json").write_text("{}")
    (run_dir / "summary.json").write_text(json.dumps({"status": "running", "steps_done": 200, "max_steps": 300,
                                                       "heartbeat": time.time()}))
    print("running", flush=True)
    time.sleep(120)
"""

def start_writer(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"
    return proc


def test_sigkilled_run_shows_dead_not_running(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "runA"
    proc = start_writer(run_dir)
    try:
        assert read_state(run_dir).state == "running"
        cli_ok(["status", str(tmp_path)])
        assert "running" in capsys.readouterr().out
    finally:
        proc.kill()  # SIGKILL / OOM killer: the summary still says running
        proc.wait()
    state = read_state(run_dir)
    assert state.state == "dead" and "no writer holds it" in state.detail and "--resume" in state.detail
    cli_ok(["status", str(tmp_path)])
    out = capsys.readouterr().out
    assert "dead" in out and "running" not in out.replace("1 dead", "")


def test_garbage_summary_is_not_running(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (run_dir / "summary.json").write_text("\x00garbage{")
    state = read_state(run_dir)
    assert state.state == "dead" and "summary.json is unreadable" in state.detail


@pytest.mark.parametrize(("age", "expected"), [(5.0, "running"), (STALE_S + 60, "dead")])
def test_without_a_lock_file_the_heartbeat_decides(tmp_path: Path, age: float, expected: str) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"status": "running", "heartbeat": time.time() - age}))
    assert read_state(run_dir).state == expected


def test_status_lists_only_run_directories(tmp_path: Path, capsys) -> None:
    for name in ("bin", "lib", "share"):
        (tmp_path / name).mkdir()
    (tmp_path / "share" / "config.txt").write_text("x")
    with pytest.raises(UserError, match="has no run directories"):
        collect(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["status", "/etc"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err == "error: /etc has no run directories"
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "summary.json").write_text(json.dumps({"status": "finished", "reached": False}))
    assert [s.name for s in collect(tmp_path)] == ["real"]
