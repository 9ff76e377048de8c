"""The architecture study: Transformer vs SSM vs hybrid tiny presets on the grounding probe, the paper's protocol.

"Shaking Up VLMs" (Pantazopoulos et al., 2024) compares Pythia and Mamba-1 on the synthetic grounding task
(§5.3, Fig. 6/7/11/12): three learning rates per model, several initialisations, held-out evaluation every 1 %
of the budget, and each model read at its best learning rate. This study trains every preset of
:data:`StudyConfig.models` on suffix and prefix layouts at several lengths, for every lr of ``lrs`` and every
*model seed* of ``seeds``; the CLI then picks each (model, length, order) cell's best lr
(:mod:`probes.analysis.best_lr`) and reports medians with exact order-statistic intervals at their real
coverage (:mod:`probes.analysis.intervals`), paired differences, the learning order and the claims table.

Model seed. The trainer builds presets from :data:`probes.train.loop.BASE_MODEL_SEED` (the same "pretrained"
weights for every run of a grid: the paper fine-tunes one pretrained model and its seeds only draw the new
embedding rows). For from-scratch presets that would make "seed" mean almost nothing, so the study builds, for
each seed ``s``, the preset with ``torch.manual_seed(s)`` (:func:`probes.models.registry.load_backbone`),
saves it as a local checkpoint ``RUNS-models/s{s}/{preset}`` and trains that checkpoint with ``init_seed=s``
for the new rows. Seed ``s`` therefore varies the whole model init and the new rows; the data and its
order are the same for every run (task seed 0, data-order seed 0), so differences between seeds are init
alone, and seed ``s`` of one model is paired with seed ``s`` of another (same data, same order).

Censoring. ``stop_after_bands`` (default on) keeps a run training past the overall threshold until every
third of the target positions has reached it, so the learning order sees the last band instead of stopping
just before it (README "Architecture study").

Resumable: every run is a normal run directory launched through the local launcher
(:func:`probes.launch.local.launch_local`, one worker process per slot): finished runs are skipped,
interrupted ones resume from their checkpoint, and ``RUNS/study.json`` pins the study configuration (a
re-run with other options is refused rather than mixing two studies). Library code: figures and reports
are drawn by the CLI layer (``probes arch-study``) from the run directories.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from probes.errors import UserError
from probes.io import atomic_write_json
from probes.launch.jobs import RunResult
from probes.train.config import ModelSpec, RunConfig, TaskSpec, TrainConfig
from probes.train.grid import PlannedRun

STUDY_FILE = "study.json"
#: The grid's axes: a study folder may be extended along them (check_study_file)
GRID_FIELDS = ("models", "lengths", "orders", "seeds", "lrs")
MODELS_SUFFIX = "-models"


@dataclass(frozen=True)
class StudyConfig:
    """What the study trains. Defaults: the committed study (README "Architecture study")."""

    models: tuple[str, ...] = ("pythia-tiny", "mamba-tiny")
    lengths: tuple[int, ...] = (10, 16)
    orders: tuple[str, ...] = ("suffix", "prefix")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)  # from scratch: around the tiny presets' working lr
    max_steps: int = 3000
    batch_size: int = 64
    eval_every: int = 30  # 1 % of the budget, as the paper evaluates
    eval_samples: int = 1000
    n_train: int = 200_000
    threshold: float = 0.95
    stop_after_bands: bool = True

    def __post_init__(self) -> None:
        for name in ("models", "lengths", "orders", "seeds", "lrs"):
            values = getattr(self, name)
            if not values:
                raise UserError(f"the study needs at least one of {name}")
            if len(set(values)) != len(values):
                raise UserError(f"{name} has a repeated value: {', '.join(map(str, values))}")
        from probes.models.presets import PRESETS

        unknown = [m for m in self.models if m not in PRESETS]
        if unknown:
            raise UserError(
                f"{unknown[0]!r} is not a preset ({', '.join(sorted(PRESETS))}): the study seeds the whole model "
                "init, which only a preset built from its config allows"
            )
        bad = [o for o in self.orders if o not in ("suffix", "prefix")]
        if bad:
            raise UserError(f"unknown order {bad[0]!r}: use suffix and/or prefix")
        if any(length < 2 for length in self.lengths):
            raise UserError("lengths must be >= 2")
        if any(s < 0 for s in self.seeds):
            raise UserError("seeds must be >= 0")
        if any(not lr > 0 for lr in self.lrs):
            raise UserError("learning rates must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudyConfig:
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        except TypeError as exc:
            raise UserError(f"study configuration is not valid: {exc}") from None

    def train_config(self, lr: float) -> TrainConfig:
        return TrainConfig(
            lr=lr,
            batch_size=self.batch_size,
            max_steps=self.max_steps,
            eval_every=self.eval_every,
            eval_samples=self.eval_samples,
            n_train=self.n_train,
            threshold=self.threshold,
            stop_after_bands=self.stop_after_bands,
            device="cpu",
        )


@dataclass(frozen=True)
class StudyRun:
    """One planned run and the preset and model seed it stands for (its config names a checkpoint path)."""

    preset: str
    seed: int
    length: int
    order: str
    lr: float
    planned: PlannedRun


def run_name(preset: str, length: int, order: str, lr: float, seed: int) -> str:
    return f"{preset}-L{length}-{order}-lr{lr:g}-s{seed}"


def models_root(runs_dir: Path) -> Path:
    """``RUNS-models/``, beside (not inside) the runs folder: its ``config.json`` files are model configs, and
    ``probes report|status RUNS`` take every folder with a ``config.json`` under RUNS for a run directory."""
    return runs_dir.with_name(runs_dir.name + MODELS_SUFFIX)


def model_dir(runs_dir: Path, preset: str, seed: int) -> Path:
    return models_root(runs_dir) / f"s{seed}" / preset


def plan_study(cfg: StudyConfig, runs_dir: Path) -> list[StudyRun]:
    """Every (length, order, model, lr, seed) run."""
    out = []
    for length in cfg.lengths:
        for order in cfg.orders:
            task = TaskSpec("grounding", {"length": length, "order": order, "seed": 0})
            for preset in cfg.models:
                for lr in cfg.lrs:
                    train = cfg.train_config(lr)
                    for seed in cfg.seeds:
                        name = run_name(preset, length, order, lr, seed)
                        model = ModelSpec(str(model_dir(runs_dir, preset, seed)), "mean", seed)
                        planned = PlannedRun(RunConfig(model, task, train, run_name=name), runs_dir / name)
                        out.append(StudyRun(preset, seed, length, order, lr, planned))
    return out


def ensure_model(runs_dir: Path, preset: str, seed: int) -> Path:
    """Write the preset built from ``seed`` as a ``save_pretrained`` checkpoint, once (atomic rename)."""
    from probes.models.registry import load_backbone

    path = model_dir(runs_dir, preset, seed)
    if (path / "config.json").is_file():
        return path
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    load_backbone(preset, seed=seed).model.save_pretrained(tmp)
    tmp.rename(path)
    return path


def check_study_file(cfg: StudyConfig, runs_dir: Path) -> None:
    """Refuse to mix two studies in one folder: ``study.json`` must match ``cfg`` when it exists."""
    path = runs_dir / STUDY_FILE
    if not path.exists():
        return
    try:
        saved = StudyConfig.from_dict(json.loads(path.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a readable study file ({type(exc).__name__})") from None
    # A study may grow along its grid (more models, lengths, orders, seeds or lrs): every run it already holds
    # is planned again under the same name and config, so finished runs are skipped. Anything else would mix
    # two protocols in one folder.
    old, new = saved.to_dict(), cfg.to_dict()
    diffs = [k for k, v in new.items() if k not in GRID_FIELDS and old.get(k) != v]
    shrunk = [k for k in GRID_FIELDS if not set(old[k]) <= set(new[k])]
    if diffs or shrunk:
        what = ", ".join(diffs + [f"{k} (drops {', '.join(str(x) for x in old[k] if x not in new[k])})" for k in shrunk])
        raise UserError(
            f"{runs_dir} holds a study with other options ({what}); use the same options (or add grid values) "
            "or another --runs"
        )


def write_study_file(cfg: StudyConfig, runs_dir: Path, runs: list[StudyRun]) -> Path:
    path = runs_dir / STUDY_FILE
    atomic_write_json(
        path,
        {
            "config": cfg.to_dict(),
            "runs": {
                r.planned.config.run_name: {
                    "preset": r.preset, "model_seed": r.seed, "length": r.length, "order": r.order, "lr": r.lr,
                    "checkpoint": r.planned.config.model.name,
                }
                for r in runs
            },
        },
    )
    return path


def read_labels(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """``run name -> {"preset", "model_seed", ...}`` from ``study.json`` (for relabelling runs by preset)."""
    path = runs_dir / STUDY_FILE
    try:
        return dict(json.loads(path.read_text())["runs"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is missing or unreadable ({type(exc).__name__}): run the study first") from None


def run_study(
    cfg: StudyConfig,
    runs_dir: Path,
    *,
    workers: int = 2,
    threads: int = 1,
    on_event: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Build the seeded checkpoints, then train every run (skip finished, resume interrupted).

    ``workers >= 1``: the local launcher, one worker process per run (``threads`` torch threads each);
    ``workers == 0``: every run in this process, one after another (same skip/resume rule; no process
    start-up per run, for tests and one-core machines)."""
    from probes.launch.jobs import Action, decide, execute, result_of
    from probes.launch.local import launch_local

    if workers < 0 or threads < 1:
        raise UserError("--workers must be >= 0 and --threads >= 1")
    check_study_file(cfg, runs_dir)
    runs = plan_study(cfg, runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    write_study_file(cfg, runs_dir, runs)
    for preset in cfg.models:
        for seed in cfg.seeds:
            ensure_model(runs_dir, preset, seed)
    # seed-major: every arm of seed 0 before any of seed 1, so a study stopped part-way (or still running) has
    # whole paired seeds to report; within a seed the slow models first, so workers finish close together
    queue = sorted(runs, key=lambda r: (r.seed, -_COST.get(r.preset, 1.0) * r.length, r.planned.config.run_name))
    if workers == 0:
        results = []
        for r in queue:
            skipped = decide(r.planned.run_dir) is Action.SKIP
            try:
                execute(r.planned.run_dir, r.planned.config.to_dict(), sigterm_interrupts=False)
            except Exception:  # recorded in the run's summary (status failed, error): the others go on
                pass
            results.append(result_of(r.planned.run_dir, skipped=skipped))
            if on_event is not None:
                on_event(results[-1])
    else:
        results = launch_local([r.planned for r in queue], ["cpu"] * workers, threads=threads, on_event=on_event)
    by_dir = {res.run_dir: res for res in results}
    return [by_dir[r.planned.run_dir] for r in runs]


# Relative CPU cost per step (measured at L=10, B=64, 1 thread): only orders the queue within a seed.
_COST = {"pythia-tiny": 1.0, "mamba-tiny": 2.2, "mamba-tiny-s1": 2.2, "mamba-tiny-s4": 2.2, "mamba2-tiny": 2.2, "hybrid-tiny": 2.5, "zamba2-tiny": 4.6}
