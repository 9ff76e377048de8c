"""`probes synth`: train models on a probe task (one run, or the paper's 9-run grid per model).

Without ``--launcher`` the runs train one after another in this process. ``--launcher local`` runs each in
its own worker process, one per ``--gpus`` slot at a time; ``--launcher slurm`` submits a submitit job
array. Launchers make re-launching safe (finished runs skipped, interrupted ones resumed), so ``--resume``
is implied and ``--overwrite`` refused with them; the logic lives in :mod:`probes.launch`.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from probes.errors import UserError
from probes.models.resize import STRATEGIES
from probes.train.config import PAPER_INIT_SEEDS, PAPER_LRS, TaskSpec, TrainConfig
from probes.train.grid import plan

from .app import app
from .common import console, parse_params, progress_bar


def _sigterm_as_interrupt() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated numbers, got {text!r}") from None


def validate_runs(models: list[str], run_dirs: list[Path], resume: bool, overwrite: bool) -> None:
    """Fail with one line before any progress output: unknown models, run dirs that exist without a flag."""
    from probes.models.registry import load_config

    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    for name in models:
        load_config(name)
    for run_dir in run_dirs:
        if run_dir.is_dir() and any(run_dir.iterdir()) and not (resume or overwrite):
            raise UserError(f"run directory {run_dir} exists; pass --resume to continue it or --overwrite to replace it")


@app.command("synth")
def synth(
    length: Annotated[int, typer.Option("--len", help="Context length L.")] = 200,
    order: Annotated[str, typer.Option(help="suffix (query last) or prefix (query first).")] = "suffix",
    task: Annotated[str, typer.Option(help="Probe task.")] = "grounding",
    model: Annotated[str, typer.Option(help="Backbone: preset, local dir or HF id.")] = "pythia-tiny",
    models: Annotated[str | None, typer.Option(help="Comma-separated backbones (overrides --model).")] = None,
    grid: Annotated[bool, typer.Option("--grid", help="Run lrs {1e-5,5e-5,1e-4} x init seeds {0,1,2}.")] = False,
    lr: Annotated[str, typer.Option(help="Learning rate(s), comma-separated.")] = "1e-4",
    init: Annotated[str, typer.Option(help=f"New-row init: {', '.join(STRATEGIES)}.")] = "mean",
    init_seed: Annotated[str, typer.Option(help="Init seed(s), comma-separated.")] = "0",
    max_steps: Annotated[int, typer.Option(help="Step budget (paper: 78000).")] = 78_000,
    batch_size: Annotated[int, typer.Option(help="Global batch size.")] = 64,
    eval_every: Annotated[int | None, typer.Option(help="Eval interval in steps (default 1% of budget).")] = None,
    eval_samples: Annotated[int, typer.Option(help="Held-out samples per evaluation.")] = 100_000,
    n_train: Annotated[int, typer.Option(help="Training set size.")] = 1_000_000,
    threshold: Annotated[float, typer.Option(help="Early-stop held-out accuracy.")] = 0.95,
    no_early_stop: Annotated[bool, typer.Option("--no-early-stop", help="Train the full budget.")] = False,
    pool: Annotated[int | None, typer.Option(help="Context pool size (default 2·L).")] = None,
    seed: Annotated[int, typer.Option(help="Data seed (same data and order for every model).")] = 0,
    param: Annotated[list[str] | None, typer.Option(help="Extra task parameter key=value.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 …")] = "auto",
    out: Annotated[Path, typer.Option(help="Directory holding the run directories.")] = Path("runs"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue existing runs exactly (implied by a launcher).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing runs (not with a launcher).")] = False,
    launcher: Annotated[str, typer.Option(
        help="none: runs in this process; local: a worker process per --gpus slot; slurm: a submitit job array. "
             "Launchers skip finished runs and resume interrupted ones.", rich_help_panel="Launch")] = "none",
    gpus: Annotated[str | None, typer.Option(
        help="local: device slots, one run each at a time, e.g. 0,1,2,3 or cpu,cpu (default: every GPU, else cpu).",
        rich_help_panel="Launch")] = None,
    threads: Annotated[int | None, typer.Option(
        help="local: torch threads per worker (default: cores shared between cpu slots).",
        rich_help_panel="Launch")] = None,
    partition: Annotated[str | None, typer.Option(help="slurm: partition.", rich_help_panel="SLURM")] = None,
    time_limit: Annotated[str | None, typer.Option(
        "--time", help="slurm: time limit per run, minutes, HH:MM:SS or D-HH:MM (default 1-00:00).",
        rich_help_panel="SLURM")] = None,
    gpus_per_task: Annotated[int | None, typer.Option(help="slurm: GPUs per run (default 1).", rich_help_panel="SLURM")] = None,
    cpus_per_task: Annotated[int | None, typer.Option(help="slurm: CPUs per run (default 8).", rich_help_panel="SLURM")] = None,
    mem: Annotated[str | None, typer.Option(help="slurm: memory per run, e.g. 32G.", rich_help_panel="SLURM")] = None,
    array_parallelism: Annotated[int | None, typer.Option(
        help="slurm: runs of the array running at once (default 32).", rich_help_panel="SLURM")] = None,
    job_name: Annotated[str | None, typer.Option(help="slurm: job name (default probes).", rich_help_panel="SLURM")] = None,
    slurm_executor: Annotated[str | None, typer.Option(
        help="slurm: 'slurm' (sbatch) or 'local' (submitit's local executor: same jobs on this machine, no SLURM).",
        rich_help_panel="SLURM")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="slurm: block until every job ended, then show the table.",
                                       rich_help_panel="SLURM")] = False,
) -> None:
    """Train on the synthetic grounding task (or another probe task), recording per-position accuracy.

    Grids run in this process by default; --launcher local spreads them over GPUs (one run per GPU at a time)
    and --launcher slurm submits them as a job array; re-running the same command skips finished runs and
    resumes interrupted ones; follow a grid with `probes status OUT`.

    Example: probes synth --len 200 --order suffix --models pythia-tiny,mamba-tiny --grid --out runs/L200 --launcher local --gpus 0,1,2,3
    """
    from probes.train.loop import run  # heavy imports only when training

    names = [m.strip() for m in (models or model).split(",") if m.strip()]
    if not names:
        raise UserError("no model given")
    lrs = list(PAPER_LRS) if grid else _floats(lr)
    seeds = list(PAPER_INIT_SEEDS) if grid else [int(x) for x in _floats(init_seed)]
    if init not in STRATEGIES:
        raise UserError(f"unknown init strategy {init!r}; choose one of {', '.join(STRATEGIES)}")
    task_params: dict[str, Any] = {"length": length, "order": order, "seed": seed, **parse_params(param)}
    if pool is not None:
        task_params["pool"] = pool
    train = TrainConfig(
        batch_size=batch_size, max_steps=max_steps, eval_every=eval_every, eval_samples=eval_samples,
        n_train=n_train, threshold=threshold, early_stop=not no_early_stop, seed=seed, device=device,
    )
    from probes.synthetic.registry import build_task

    from probes.launch.dispatch import launch_grid, plan_launch
    from probes.launch.jobs import check_launchable

    build_task(task, task_params)  # validate task parameters before any model is built
    slurm = {"partition": partition, "time": time_limit, "gpus_per_task": gpus_per_task,
             "cpus_per_task": cpus_per_task, "mem": mem, "array_parallelism": array_parallelism,
             "job_name": job_name, "executor": slurm_executor}
    launch = plan_launch(launcher, gpus=gpus, threads=threads, slurm=slurm, wait=wait, resume=resume,
                         overwrite=overwrite)
    runs = plan(names, TaskSpec(task, task_params), train, lrs, seeds, init, out)
    if launch is not None:
        validate_runs(names, [], resume=False, overwrite=False)  # model names only: existing dirs are resumed
        check_launchable(runs)  # before any progress output; the launchers check again as library calls
        _sigterm_as_interrupt()
        results = launch_grid(launch, runs, console=console)
        if results is not None and any(r.status == "failed" for r in results):
            raise typer.Exit(1)
        return
    validate_runs(names, [p.run_dir for p in runs], resume, overwrite)
    _sigterm_as_interrupt()
    results = []
    with progress_bar("rate", "acc") as bar:
        for i, planned in enumerate(runs, 1):
            job = bar.add_task(f"[{i}/{len(runs)}] {planned.config.run_name}", total=max_steps, rate="", acc="")
            state = {"t0": None, "s0": 0}

            def on_step(step: int, info: dict[str, Any], job: int = job, state: dict = state) -> None:
                import time

                now = time.perf_counter()
                if state["t0"] is None:
                    state["t0"], state["s0"] = now, step
                rate = (step - state["s0"]) * batch_size / max(now - state["t0"], 1e-9)
                acc = "" if info["acc"] is None else f"held-out acc {info['acc']:.3f}"
                bar.update(job, completed=step, rate=f"{rate:,.0f} samples/s", acc=acc)

            summary = run(planned.config, planned.run_dir, resume=resume, overwrite=overwrite, on_step=on_step)
            bar.update(job, completed=summary["steps_done"], total=summary["steps_done"])
            results.append((planned, summary))
    for planned, s in results:
        reached = f"reached {s['threshold']:.2f} at step {s['steps_to_threshold']}" if s["reached"] else "not reached"
        console.print(f"{planned.run_dir}: {reached}; final held-out acc {s['final_acc']:.3f}; mamba path {s['mamba_path']}")
