"""Run-directory integrity (README): output modes, refused targets (device, directory, symlink), temporary files
cleaned on SIGTERM and removed after a SIGKILL, and no pickle executed from a run directory."""

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from probes.cli.app import main

from probes.errors import UserError
from probes.io import atomic_path, atomic_write_text

DATA = ["data", "--len", "4", "--n", "10"]

# A writer caught in the middle of an atomic write (e.g. a long `probes data` export).
WRITING = """
import sys, time
from probes.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("partial")
    print(tmp, flush=True)
    time.sleep(120)
"""


def one_error_line(capsys, exc) -> str:
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_atomic_files_get_the_umask_mode(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "x.safetensors") as tmp:
            save_file({"a": torch.zeros(2)}, str(tmp))  # safetensors itself writes 0600
        atomic_write_text(tmp_path / "y.txt", "y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.safetensors").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "y.txt").stat().st_mode) == 0o640


def test_device_target_is_refused_and_left_a_device(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*DATA, "--out", "/dev/null"])
    assert "it is a device" in one_error_line(capsys, exc)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_symlink_and_directory_targets_are_refused(tmp_path: Path, capsys) -> None:
    target = tmp_path / "target.jsonl"
    target.write_text("keep")
    (tmp_path / "link.jsonl").symlink_to(target)
    (tmp_path / "dir.jsonl").mkdir()
    for name, why in (("link.jsonl", "symbolic link"), ("dir.jsonl", "is a directory")):
        with pytest.raises(SystemExit) as exc:
            main([*DATA, "--out", str(tmp_path / name)])
        assert why in one_error_line(capsys, exc)
    assert (tmp_path / "link.jsonl").is_symlink() and target.read_text() == "keep"
    with pytest.raises(UserError, match="symbolic link"):
        atomic_write_text(tmp_path / "link.jsonl", "x")


def _writer(dest: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", WRITING, str(dest)], stdout=subprocess.PIPE, text=True)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.is_file() and tmp.parent == dest.parent
    return proc, tmp


def test_sigterm_removes_the_temporary_file(tmp_path: Path) -> None:
    proc, tmp = _writer(tmp_path / "out.jsonl")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    assert not tmp.exists() and not (tmp_path / "out.jsonl").exists()


def test_temp_file_of_a_sigkilled_writer_is_removed_by_the_next_write(tmp_path: Path) -> None:
    dest = tmp_path / "out.jsonl"
    proc, tmp = _writer(dest)
    proc.kill()
    proc.wait()
    assert tmp.exists()  # SIGKILL: nothing could clean it
    atomic_write_text(dest, "complete\n")
    assert not tmp.exists() and dest.read_text() == "complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_temp_file_of_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    dest = tmp_path / "out.jsonl"
    proc, tmp = _writer(dest)
    try:
        atomic_write_text(dest, "other\n")
        assert tmp.exists()
    finally:
        proc.kill()
        proc.wait()


class _Payload:
    """Unpickling this runs ``touch MARKER``: what a crafted run directory would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_vlm_resume_does_not_unpickle_a_crafted_checkpoint(tmp_path: Path) -> None:
    from accelerate import Accelerator
    from transformers import get_cosine_schedule_with_warmup

    from probes.train import checkpoint

    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = get_cosine_schedule_with_warmup(opt, 1, 10)
    model, opt = acc.prepare(model, opt)
    model(torch.randn(2, 4)).sum().backward()
    opt.step(), sched.step()
    checkpoint.save_accelerate_checkpoint(acc, tmp_path, {"step": 1, "scheduler": checkpoint.scheduler_state(sched)})
    ckpt = tmp_path / "checkpoint"
    assert not list(ckpt.glob("*.pkl")) or all(p.name.startswith("random_states") for p in ckpt.glob("*.pkl"))

    live = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Payload(live)))  # the payload does run when unpickled…
    assert live.exists()
    marker = tmp_path / "pwned"
    state_file = ckpt / "state.json"
    state = json.loads(state_file.read_text())
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl"):  # a crafted directory, sizes updated too
        (ckpt / name).write_bytes(pickle.dumps(_Payload(marker)))
        state["files"][name] = (ckpt / name).stat().st_size
    state_file.write_text(json.dumps(state))
    weights_before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.zero_()
    state, note = checkpoint.load_accelerate_checkpoint(acc, tmp_path)
    assert not marker.exists()  # …but resuming never unpickles it
    assert state["step"] == 1 and torch.equal(model.weight, weights_before)
    assert note.endswith("removed custom_checkpoint_0.pkl unread (a run directory's pickles are never loaded)")
    fresh = get_cosine_schedule_with_warmup(torch.optim.AdamW(torch.nn.Linear(1, 1).parameters(), lr=1e-3), 1, 10)
    checkpoint.restore_scheduler(fresh, state["scheduler"], 1)
    assert fresh.last_epoch == sched.last_epoch and fresh.get_last_lr() == sched.get_last_lr()


def test_refcoco_pickle_refusal_names_a_real_way(tmp_path: Path) -> None:
    from probes.vlm.data.refcoco import load_refcoco_pickle

    with pytest.raises(UserError) as exc:
        load_refcoco_pickle(tmp_path, "refcoco", "unc", tmp_path)
    msg = str(exc.value)
    assert "--allow-pickle" not in msg and "allow_pickle=True" in msg and "write_refcoco_jsonl" in msg
