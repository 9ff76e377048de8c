"""One run on several processes: ``probes synth --num-processes N`` re-runs itself under ``accelerate launch``.

``accelerate launch -m probes synth …`` is the documented way (any accelerate option: ``--use_fsdp``, several
machines, a config file); ``--num-processes N`` is its short form for one machine. The re-run command is the
same command line without ``--num-processes`` / ``--fsdp``, so each of the N processes trains the same runs,
each on its shard of every global batch (:mod:`probes.train.engine`), DDP by default (gloo on CPUs, NCCL on
GPUs) or FSDP with ``--fsdp`` (GPUs only: accelerate wraps CPU processes in DDP whatever is asked).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

import torch

from probes.errors import UserError

OWN_FLAGS = ("--num-processes", "--fsdp")


def strip_own_flags(argv: list[str]) -> list[str]:
    """``argv`` without ``--num-processes N`` / ``--num-processes=N`` / ``--fsdp`` (the re-run's arguments)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--num-processes":
            skip = True
            continue
        if arg.startswith("--num-processes=") or arg == "--fsdp":
            continue
        out.append(arg)
    return out


def free_port() -> int:
    """A TCP port nothing listens on now, for the processes' rendezvous (two launches must not share one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accelerate_command(argv: list[str], num_processes: int, *, fsdp: bool = False, device: str = "auto") -> list[str]:
    """The ``accelerate launch`` command line that runs ``probes <argv>`` on ``num_processes`` processes."""
    if num_processes < 2:
        raise UserError(f"--num-processes must be at least 2 to launch processes (got {num_processes})")
    cuda = device != "cpu" and torch.cuda.is_available()
    if fsdp and not cuda:
        raise UserError("--fsdp needs CUDA devices (accelerate runs CPU processes as DDP); drop --fsdp or use GPUs")
    if cuda and device == "auto" and num_processes > torch.cuda.device_count():
        raise UserError(f"--num-processes {num_processes} exceeds the {torch.cuda.device_count()} visible GPU(s)")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
           "--num_machines", "1", "--main_process_port", str(free_port()), "--dynamo_backend", "no",
           "--mixed_precision", "bf16" if cuda else "no"]
    cmd += ["--use_fsdp", "--fsdp_version", "2"] if fsdp else ["--multi_gpu"]
    if not cuda:
        cmd += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // num_processes))]
    return [*cmd, "-m", "probes", *strip_own_flags(argv)]


def run_processes(argv: list[str], num_processes: int, *, fsdp: bool = False, device: str = "auto") -> int:
    """Run ``probes <argv>`` on ``num_processes`` processes; their exit status (0 when all succeeded).

    accelerate's launcher runs in this process, so a process that exits with an error (a diverged run, exit 2)
    ends the command with that status and the processes' own one-line message, not with the launcher's
    traceback and failure report."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    cmd = accelerate_command(argv, num_processes, fsdp=fsdp, device=device)
    args = launch_command_parser().parse_args(cmd[3:])  # after `python -m accelerate.commands.launch`
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its failure line repeats ours
    try:
        launch_command(args)
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        return int(failure.exitcode) if failure.exitcode and failure.exitcode > 0 else 1
    except subprocess.CalledProcessError as exc:
        return int(exc.returncode) or 1
    return 0
