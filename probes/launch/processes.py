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


def launch_args(argv: list[str], num_processes: int, *, fsdp: bool = False, device: str = "auto") -> list[str]:
    """The ``accelerate launch`` arguments that run ``probes <argv>`` on ``num_processes`` processes."""
    if num_processes < 2:
        raise UserError(f"--num-processes must be at least 2 to launch processes (got {num_processes})")
    cuda = device != "cpu" and torch.cuda.is_available()
    if fsdp and not cuda:
        raise UserError("--fsdp needs CUDA devices (accelerate runs CPU processes as DDP); drop --fsdp or use GPUs")
    if cuda and device == "auto" and num_processes > torch.cuda.device_count():
        raise UserError(f"--num-processes {num_processes} exceeds the {torch.cuda.device_count()} visible GPU(s)")
    args = ["--num_processes", str(num_processes), "--num_machines", "1", "--main_process_port", str(free_port()),
            "--dynamo_backend", "no", "--mixed_precision", "bf16" if cuda else "no"]
    args += ["--use_fsdp", "--fsdp_version", "2"] if fsdp else ["--multi_gpu"]
    if not cuda:
        args += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // num_processes))]
    return [*args, "-m", "probes", *strip_own_flags(argv)]


def accelerate_command(argv: list[str], num_processes: int, *, fsdp: bool = False, device: str = "auto") -> list[str]:
    """The same as a shell command: ``python -m accelerate.commands.launch …`` (what users may run themselves)."""
    return [sys.executable, "-m", "accelerate.commands.launch", *launch_args(argv, num_processes, fsdp=fsdp, device=device)]


def run_processes(
    argv: list[str], num_processes: int, batch_size: int, *, fsdp: bool = False, device: str = "auto"
) -> int:
    """Run ``probes <argv>`` on ``num_processes`` processes, each on its shard of the global ``batch_size``;
    the exit status for the command: 0 when all succeeded, else the failing process's 1, 2 or 130 (1 for
    anything else).

    accelerate's launcher runs in this process, so a process that exits with an error (a diverged run, exit 2)
    ends the command with that status and the processes' own one-line message, not with the launcher's
    traceback and failure report."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from probes.train.order import check_divisible

    check_divisible(batch_size, num_processes)
    args = launch_command_parser().parse_args(launch_args(argv, num_processes, fsdp=fsdp, device=device))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its failure line repeats ours
    try:
        launch_command(args)
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        code = int(failure.exitcode or 0)
    except subprocess.CalledProcessError as exc:
        code = int(exc.returncode)
    else:
        return 0
    return code if code in (1, 2, 130) else 1
