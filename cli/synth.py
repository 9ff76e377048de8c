"""`probes synth`: train models on a probe task (one run, or the paper's 9-run grid per model).

Without ``--launcher`` the runs train one after another in this process. ``--launcher local`` runs each in
its own worker process, one per ``--gpus`` slot at a time; ``--launcher slurm`` submits a submitit job
array. Launchers make re-launching safe (finished runs skipped, interrupted ones resumed), so ``--resume``
is implied and ``--overwrite`` refused with them; the logic lives in :mod:`probes.launch`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from probes.errors import UserError
from probes.models.resize import STRATEGIES
from probes.train.progress import PlainLog
from probes.train.sweep import SweepSpec, build_sweep, load_sweep_file

from .app import app
from .common import (
    PROGRESS_FIXED,
    console,
    parse_params,
    progress_bar,
    run_label,
    sigterm_as_interrupt,
    stdout_console,
    step_metrics,
    validate_runs,
)
from .options import given_values, model_flags, warn_paper_scale_on_cpu

# typer parameter -> SweepSpec field, where the names differ; every other SweepSpec field is a flag of the
# same name (hand-declared below, or derived by cli/options.py), and every such flag is a config-file key
_RENAME = {"length": "len"}


def sweep_from_options(ctx: typer.Context, config: Path | None) -> SweepSpec:
    """The sweep a command line asks for: the config file's values, then every flag given explicitly; defaults
    apply only where neither says anything (so a file's value is never undone by a flag's default)."""
    file_values = load_sweep_file(config) if config is not None else {}
    flags = given_values(ctx, SweepSpec, rename=_RENAME, skip=("param",))
    if ctx.params.get("param"):
        flags["param"] = {**file_values.get("param", {}), **parse_params(ctx.params["param"])}
    spec = build_sweep(file_values, flags)
    if spec.init not in STRATEGIES:
        raise UserError(f"unknown init strategy {spec.init!r}; choose one of {', '.join(STRATEGIES)}")
    return spec


def check_launch_options(launcher: str, *, slurm: dict[str, Any], **options: Any) -> None:
    """``--dry-run``: the launch options are valid, as the launchers check them; a SLURM plan is checked
    without asking for SLURM or submitit (a dry run on a laptop or a login node plans a cluster grid)."""
    from probes.launch.dispatch import plan_launch

    if launcher != "slurm":
        plan_launch(launcher, slurm=slurm, **options)
        return
    from probes.launch.slurm import slurm_options

    plan_launch("none", **{k: v for k, v in options.items() if k not in ("gpus", "threads", "wait")})
    if options.get("gpus") is not None or options.get("threads") is not None:
        raise UserError("--gpus and --threads need --launcher local")
    if options.get("overwrite"):
        raise UserError("--overwrite cannot be combined with --launcher")
    slurm_options({k: v for k, v in slurm.items() if v is not None})


def print_plan(runs: list[Any]) -> None:
    """``--dry-run`` (after the task parameters and model names are checked): the runs a command would launch, whether each is new, resumable or finished, and the
    training settings they share (everything but lr and init seed, which the run names carry)."""
    from dataclasses import asdict

    from rich.table import Table

    from probes.launch.status import read_state

    table = Table(title=f"{len(runs)} planned run(s)", title_justify="left")
    for col in ("#", "run", "state"):
        table.add_column(col, no_wrap=col != "run")
    for i, p in enumerate(runs, 1):
        state = read_state(p.run_dir).status if p.run_dir.exists() else "new"
        table.add_row(str(i), str(p.run_dir), state)
    out = stdout_console()
    out.print(table)
    if runs:
        shared = {k: v for k, v in asdict(runs[0].config.train).items() if k != "lr"}
        out.print("each run: " + " ".join(f"{k}={v}" for k, v in shared.items()), soft_wrap=True)


@app.command("synth")
@model_flags(SweepSpec, rename=_RENAME)
def synth(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML file of the experiment's options (keys = flag names, e.g. len: [50, 200]); flags "
        "given override it. Run controls (Sweep, Launch, SLURM panels) are flags only.",
        rich_help_panel="Sweep")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the planned runs and exit; write nothing.",
                                          rich_help_panel="Sweep")] = False,
    length: Annotated[str, typer.Option("--len", help="Context length(s) L, comma-separated.")] = "200",
    order: Annotated[str, typer.Option(help="Layout(s), comma-separated: suffix (query last), prefix (query first).")] = "suffix",
    task: Annotated[str, typer.Option(help="Probe task: grounding, mqar, copying, induction.")] = "grounding",
    models: Annotated[str, typer.Option("--models", "--model", help="Backbone(s), comma-separated: preset, local dir or HF id.")] = "pythia-tiny",
    grid: Annotated[bool, typer.Option("--grid", help="The paper's lrs {1e-5,5e-5,1e-4} x init seeds {0,1,2} (unless --lr / --init-seed).")] = False,
    lr: Annotated[str, typer.Option(help="Learning rate(s), comma-separated.")] = "1e-4",
    init: Annotated[str, typer.Option(help=f"New-row init: {', '.join(STRATEGIES)}.")] = "gaussian",
    init_seed: Annotated[str, typer.Option(help="Init seed(s), comma-separated.")] = "0",
    max_steps: Annotated[int, typer.Option(help="Step budget (paper: 78000).")] = 78_000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Global batch size.")] = 64,
    eval_every: Annotated[int | None, typer.Option(help="Eval interval in steps (default 1% of budget).")] = None,
    eval_samples: Annotated[int, typer.Option(help="Held-out samples per evaluation.")] = 100_000,
    n_train: Annotated[int, typer.Option(help="Training set size.")] = 1_000_000,
    threshold: Annotated[float, typer.Option(help="Early-stop held-out accuracy.")] = 0.95,
    pool: Annotated[int | None, typer.Option(help="Context pool size (default 2·L).")] = None,
    seed: Annotated[int, typer.Option(help="Data seed (same data and order for every model).")] = 0,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.0,
    warmup_steps: Annotated[int, typer.Option(help="Linear lr warm-up steps.")] = 0,
    param: Annotated[list[str] | None, typer.Option(help="Extra task parameter key=value (repeatable).")] = None,
    report_to: Annotated[str, typer.Option(
        help="Trackers mirroring metrics.jsonl, comma-separated: tensorboard, wandb (offline unless "
             "WANDB_MODE/WANDB_API_KEY), csv; files in RUN/tracking/. Launchers log each run when it ends.")] = "none",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 …")] = "auto",
    out: Annotated[Path, typer.Option(help="Folder holding the run directories.")] = Path("runs"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue existing runs exactly (implied by a launcher).",
                                         rich_help_panel="Sweep")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing runs (not with a launcher).",
                                            rich_help_panel="Sweep")] = False,
    num_processes: Annotated[int, typer.Option(
        "--num-processes", help="Train each run on N processes (DDP: gloo on CPUs, NCCL on GPUs) through "
        "accelerate launch, each on its shard of the global --batch-size; = accelerate launch -m probes synth.",
        rich_help_panel="Launch")] = 1,
    stop_after: Annotated[int | None, typer.Option(
        "--stop-after", help="Checkpoint and stop each run after N steps (status stopped); the same command "
        "with --resume continues exactly (time-sliced jobs). Not with a launcher.", rich_help_panel="Launch")] = None,
    fsdp: Annotated[bool, typer.Option("--fsdp", help="With --num-processes on GPUs: FSDP instead of DDP.",
                                       rich_help_panel="Launch")] = False,
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
    **_fields: Any,  # the other SweepSpec fields as flags (cli/options.py); read through ctx.params
) -> None:
    """Train on the synthetic grounding task (or another probe task), recording per-position accuracy.

    One command plans a whole grid: lengths x orders x models x lrs x init seeds (--grid: the paper's 9 runs
    per model, length and order). Runs train one after another in this process by default; --launcher local
    spreads them over GPUs and --launcher slurm submits a job array; re-running the same command skips
    finished runs and resumes interrupted ones; follow a grid with `probes status OUT`. --config FILE.yaml sets
    any option of the experiment (keys = the flag names of the Options panel); flags given on
    the command line override the file.

    Example: probes synth --len 50,100,200 --order suffix,prefix --models pythia-tiny,mamba-tiny --grid --out runs/paper --dry-run
    """
    spec = sweep_from_options(ctx, config)
    from probes.synthetic.registry import build_task

    for length_value in spec.len:  # validate task parameters before any model is built
        for order_value in spec.order:
            ts = spec.task_spec(length_value, order_value)
            build_task(ts.name, ts.params)
    runs = spec.plan()
    slurm = {"partition": partition, "time": time_limit, "gpus_per_task": gpus_per_task,
             "cpus_per_task": cpus_per_task, "mem": mem, "array_parallelism": array_parallelism,
             "job_name": job_name, "executor": slurm_executor}
    if dry_run:
        validate_runs(spec.models, [], resume=False, overwrite=False)  # model names (a hub id: its config)
        check_launch_options(launcher, gpus=gpus, threads=threads, slurm=slurm, wait=wait, overwrite=overwrite)
        print_plan(runs)
        return
    if stop_after is not None and stop_after < 1:
        raise UserError(f"--stop-after must be at least 1 (got {stop_after})")
    if stop_after is not None and launcher != "none":
        raise UserError("--stop-after stops runs trained in this process; launchers resume runs themselves")
    if fsdp and num_processes < 2:
        raise UserError("--fsdp needs --num-processes N (N >= 2)")
    if num_processes != 1 and launcher != "none":
        raise UserError("--num-processes trains one run on several processes; it does not combine with --launcher")
    from probes.launch.dispatch import launch_grid, plan_launch
    from probes.launch.jobs import check_launchable

    launch = plan_launch(launcher, gpus=gpus, threads=threads, slurm=slurm, wait=wait, resume=resume,
                         overwrite=overwrite)
    if launch is not None:
        validate_runs(spec.models, [], resume=False, overwrite=False)  # model names only: existing dirs resume
        check_launchable(runs)  # before any progress output; the launchers check again as library calls
        warn_paper_scale_on_cpu(spec, ctx, config)  # after every check: an error stays the only line
        sigterm_as_interrupt()
        results = launch_grid(launch, runs, console=console, progress=progress_bar,
                              on_done=(lambda r: _mirror(r.run_dir, spec.report_to)) if spec.report_to else None)
        if results is not None and any(r.status in ("failed", "diverged") for r in results):
            raise typer.Exit(1)
        return
    validate_runs(spec.models, [p.run_dir for p in runs], resume, overwrite)
    if resume:  # --resume that matches no existing run says so (README "Run-directory integrity")
        from probes.train.layout import check_resume_matches

        check_resume_matches([(p.run_dir, p.config.to_dict()) for p in runs])
    if num_processes != 1:  # checked above in this process (one error line); the N processes check again
        from probes.launch.processes import run_processes

        from .app import ARGV

        code = run_processes(ARGV, num_processes, spec.batch_size, fsdp=fsdp, device=spec.device)
        if code:
            raise typer.Exit(code)
        return
    warn_paper_scale_on_cpu(spec, ctx, config)  # after every check: an error stays the only line
    sigterm_as_interrupt()
    train_runs(runs, resume=resume, overwrite=overwrite, report_to=spec.report_to, stop_after=stop_after)


def _mirror(run_dir: Path, report_to: list[str]) -> None:
    """Log a run directory's whole record into the trackers (runs a launcher trained in other processes)."""
    from probes.train.trackers import RunMirror

    mirror = RunMirror(Path(run_dir), report_to)
    mirror.finish()


def train_runs(runs: list[Any], *, resume: bool, overwrite: bool, report_to: list[str] | None = None,
               stop_after: int | None = None) -> list[tuple[Any, dict[str, Any]]]:
    """Train planned runs one after another in this process, one progress row each; print each outcome.
    Trackers (``report_to``) mirror each run's metrics.jsonl live, at every train-log and eval step."""
    from probes.train.loop import run  # heavy imports only when training
    from probes.train.trackers import RunMirror

    from .app import _secondary_rank

    if _secondary_rank():  # another process of a multi-process run: same runs, no output, no trackers
        return [(p, run(p.config, p.run_dir, resume=resume, overwrite=overwrite, stop_after=stop_after))
                for p in runs]
    results = []
    plain = not (sys.stdout.isatty() and sys.stderr.isatty())
    with contextlib.nullcontext() if plain else progress_bar() as bar:
        for i, planned in enumerate(runs, 1):
            cfg = planned.config
            label = run_label(i, len(runs), cfg, width=max(20, console.width - PROGRESS_FIXED))
            job = None if bar is None else bar.add_task(label, total=cfg.train.max_steps, metrics="")
            mirror = RunMirror(planned.run_dir, report_to or [])
            every = min(cfg.train.train_log_every, cfg.train.eval_interval)
            log = PlainLog(label, cfg.train.max_steps, step_metrics) if plain else None

            def on_step(step: int, info: dict[str, Any], job: Any = job, mirror: RunMirror = mirror,
                        every: int = every, log: PlainLog | None = log) -> None:
                if log is not None:
                    log.step(step, info)
                else:
                    bar.update(job, completed=step, metrics=step_metrics(info))
                if step % every == 0:
                    mirror.sync()

            try:
                summary = run(cfg, planned.run_dir, resume=resume, overwrite=overwrite, on_step=on_step,
                              stop_after=stop_after)
            finally:
                mirror.finish()
            if bar is not None:
                stopped = summary["status"] == "stopped"  # a full bar only for runs that ended
                bar.update(job, completed=summary["steps_done"],
                           total=cfg.train.max_steps if stopped else summary["steps_done"])
            results.append((planned, summary))
    for planned, s in results:
        if s["status"] == "stopped":
            console.print(f"{planned.run_dir}: stopped at step {s['steps_done']} of {s['max_steps']} (--stop-after); "
                          "the same command with --resume continues it")
            continue
        reached = f"reached {s['threshold']:.2f} at step {s['steps_to_threshold']}" if s["reached"] else "not reached"
        final = "n/a" if s.get("final_acc") is None else f"{s['final_acc']:.3f}"
        path = f"; mamba path {s['mamba_path']}" if s.get("mamba_path") else ""  # SSM runs only
        console.print(f"{planned.run_dir}: {reached}; final held-out acc {final}{path}")
    return results
