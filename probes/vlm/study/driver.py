"""Running (or continuing) a study: the ``study.json`` record, time slices, resume, parallel workers.

``cfg.workers`` > 1 runs independent stages (other backbones / seeds) in that many spawned worker processes,
each with ``cfg.threads`` torch threads: on a 2-core machine two 1-thread processes train two tiny models
about twice as fast as one 2-thread process (the models are too small for intra-op parallelism to pay).
The order in which stages finish does not change any number: every stage is a pure function of its
inputs, its seed and the thread count. Stage wall times are measured where the stage runs; the record
also keeps each invocation's elapsed wall time, the study's real duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.errors import UserError
from probes.io import atomic_write_json, ensure_writable_dir

from .config import StudyConfig
from .layout import RUNS_MARKER, Layout, config_json, prepare_dirs
from .stages import Stage, execute, plan

SCHEMA_VERSION = 2


def _env() -> dict[str, Any]:
    """The environment record every run directory has (:func:`probes.train.engine.environment`)."""
    from probes.train.engine import environment, resolve_device

    return environment(resolve_device("auto"))


@dataclass(frozen=True)
class OpenStudy:
    """A validated study whose directories are checked (and, with ``overwrite``, emptied): ready to run."""

    cfg: StudyConfig
    layout: Layout
    saved: dict[str, Any] | None  # the record being resumed


def open_study(
    cfg: StudyConfig, out: str | Path, runs: str | Path | None = None, *, resume: bool = False, overwrite: bool = False
) -> OpenStudy:
    """Every check a user can fail, before any output (``runs`` defaults to ``out/runs``)."""
    cfg.validate()
    layout = Layout(Path(out), Path(runs) if runs is not None else Path(out) / "runs")
    if layout.runs.resolve() == layout.out.resolve():
        raise UserError("--runs must differ from --out")
    return OpenStudy(cfg, layout, prepare_dirs(cfg, layout, resume=resume, overwrite=overwrite))


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_in_worker(cfg: StudyConfig, layout: Layout, spec: tuple[Any, ...]) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    info = execute(cfg, layout, spec, lambda d, t: None)
    return info, round(time.perf_counter() - t0, 2)


def run_study(
    study: OpenStudy,
    *,
    stop_after_s: float | None = None,
    invocation: str | None = None,
    on_stage: Callable[[int, int, str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run (or continue) the study; returns the ``study.json`` record (status ``finished`` or ``partial``).

    ``stop_after_s``: start no new stage after that many seconds (status ``partial``; at least one stage runs
    per call); the same options with ``resume=True`` continue. ``on_stage(index, n_stages, name)`` is called
    as each stage starts, ``on_progress(done, total)`` inside it (in-process stages only)."""
    import torch

    cfg, layout, saved = study.cfg, study.layout, study.saved
    workers = cfg.workers
    torch.set_num_threads(cfg.threads)
    stages = plan(cfg)
    ensure_writable_dir(layout.out)
    ensure_writable_dir(layout.runs)
    atomic_write_json(layout.runs / RUNS_MARKER, {"study": str(layout.out)})
    done = {s["name"]: s for s in (saved or {}).get("stages", []) if s.get("status") == "done"}
    invocation_rec = {"command": invocation, "started": time.time(), "workers": workers, "elapsed_s": None}
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": cfg.command(layout.out, layout.runs),
        "invocations": [*(saved or {}).get("invocations", []), invocation_rec],
        "config": config_json(cfg),
        "out": str(layout.out),
        "runs": str(layout.runs),
        "env": _env(),
        "status": "running",
        "stages": [],
        "total_wall_s": 0.0,
        "elapsed_s": 0.0,
    }
    t_start = time.perf_counter()

    def save(status: str) -> None:
        record["status"] = status
        record["stages"] = [
            done.get(s.name, {"name": s.name, "kind": s.kind, "status": "pending", "wall_s": None, "info": {}}) for s in stages
        ]
        record["total_wall_s"] = round(sum(s["wall_s"] or 0.0 for s in record["stages"]), 2)
        invocation_rec["elapsed_s"] = round(time.perf_counter() - t_start, 2)
        record["elapsed_s"] = round(sum(i.get("elapsed_s") or 0.0 for i in record["invocations"]), 2)
        mamba = {s["info"].get("mamba_path") for s in record["stages"] if s["kind"] == "train" and s.get("info")} - {None}
        record["env"]["mamba_path"] = ",".join(sorted(mamba)) or None
        atomic_write_json(layout.out / "study.json", record)

    def finish(stage: Stage, info: dict[str, Any], wall: float) -> None:
        done[stage.name] = {"name": stage.name, "kind": stage.kind, "status": "done", "wall_s": wall, "info": info}
        save("running")

    def out_of_time(ran: int) -> bool:
        return bool(ran) and stop_after_s is not None and time.perf_counter() - t_start >= stop_after_s

    index = {s.name: i for i, s in enumerate(stages)}
    todo = [s for s in stages if s.name not in done]
    save("running")
    ran = 0
    try:
        if workers == 1:
            for stage in todo:
                if out_of_time(ran):
                    save("partial")
                    return record
                if on_stage is not None:
                    on_stage(index[stage.name], len(stages), stage.name)
                t0 = time.perf_counter()
                info = execute(cfg, layout, stage.spec, on_progress or (lambda d, t: None))
                finish(stage, info, round(time.perf_counter() - t0, 2))
                ran += 1
        else:
            ran = _run_parallel(cfg, layout, todo, done, index, len(stages), workers, on_stage, finish, out_of_time)
    except KeyboardInterrupt:
        save("interrupted")
        raise
    except Exception:
        save("failed")
        raise
    save("finished" if all(s.name in done for s in stages) else "partial")
    return record


def _run_parallel(
    cfg: StudyConfig,
    layout: Layout,
    todo: list[Stage],
    done: dict[str, Any],
    index: dict[str, int],
    n_stages: int,
    workers: int,
    on_stage: Callable[[int, int, str], None] | None,
    finish: Callable[[Stage, dict[str, Any], float], None],
    out_of_time: Callable[[int], bool],
) -> int:
    """Submit every stage whose dependencies are done, in plan order, to a spawned process pool."""
    import multiprocessing

    pending = list(todo)
    running: dict[Future, Stage] = {}
    ran = 0
    ctx = multiprocessing.get_context("spawn")  # torch + OpenMP are not fork-safe
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(cfg.threads,)) as pool:
        try:
            while pending or running:
                if not out_of_time(ran):
                    for stage in [s for s in pending if all(d in done for d in s.deps)]:
                        if len(running) >= workers:
                            break
                        pending.remove(stage)
                        if on_stage is not None:
                            on_stage(index[stage.name], n_stages, stage.name)
                        running[pool.submit(_run_in_worker, cfg, layout, stage.spec)] = stage
                elif not running:
                    break
                if not running:
                    raise RuntimeError("study plan has stages whose dependencies never finish")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in sorted(finished, key=lambda f: index[running[f].name]):
                    stage = running.pop(fut)
                    info, wall = fut.result()
                    finish(stage, info, wall)
                    ran += 1
        except BaseException:
            for fut in running:
                fut.cancel()
            raise
    return ran
