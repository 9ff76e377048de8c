"""The small Pythia-VL vs Mamba-VL study on the offline synthetic world, end to end (``probes vlm study``).

Stages, run in this order, each timed and recorded in ``study.json`` (``--resume`` skips finished ones):

1. ``world``: :func:`probes.vlm.data.world.write_world` into ``RUNS/world``;
2. ``blind-prior``: a text-only reference per benchmark, scored by the same scorer as the models
   (:func:`probes.vlm.eval.scoring.score_predictions`): grounding predicts the mean training box, VQA the
   most frequent training answer to the same question (else the most frequent answer overall), captioning
   the most frequent training caption. A model at or below it has not used the image;
3. per backbone × variant (task-agnostic, task-aware): ``stage1`` (connector + trainable tiny encoder) and
   ``stage2`` (+ the language model) through :func:`probes.vlm.train.train` — the code of ``probes vlm
   train`` — into ``RUNS/<backbone>-<variant>/stage{1,2}``; then one ``eval-<task>`` stage per benchmark the
   world provides through :func:`probes.vlm.eval.runner.evaluate` (as ``probes vlm eval``) into
   ``OUT/evals/<backbone>-<variant>/<task>/`` (``scores.json`` + ``predictions.jsonl``);
4. ``report``: :func:`probes.analysis.vlm_gap.build_gap_report` / ``write_gap_report`` (as ``probes vlm gap``)
   on ``OUT/evals`` → ``report.md``, ``report.csv``, ``gains.png/pdf``; then ``README.md`` and ``study.json``.

Deviation from SPEC §4, on purpose: the tiny presets are randomly initialised, so stage 2 uses lr 1e-3 by
default (SPEC's 2e-5 is for pretrained LMs: at 2e-5, pythia-tiny's stage-2 loss on the 400-image world is
still 5.4 after 300 steps, against 0.6 at 1e-3), and batches are small (CPU). Default size (400 images,
100 + 1500 steps of batch 16): about 10 minutes on 2 CPU cores for two backbones × two variants.
Everything is a pure function of the config (seeded world, seeded training order and init, greedy decoding);
the same torch build and thread count reproduce the numbers exactly.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from probes.errors import UserError
from probes.io import atomic_write_json, atomic_write_text, ensure_writable_dir

SCHEMA_VERSION = 1
WORLD_TASKS = ("grounding", "captioning", "vqa")  # what the synthetic world provides (no mc / POPE files)
VARIANTS = ("agnostic", "aware")
SPLITS = ("val", "test")
RUNS_MARKER = "study-runs.json"


@dataclass(frozen=True)
class StudyConfig:
    backbones: tuple[str, ...] = ("pythia-tiny", "mamba-tiny")
    variants: tuple[str, ...] = VARIANTS
    tasks: tuple[str, ...] = WORLD_TASKS
    n_images: int = 400
    seed: int = 0
    encoder: str = "tiny"
    connector: str = "mlp"
    stage1_steps: int = 100
    stage2_steps: int = 1500
    batch_size: int = 16
    stage1_lr: float = 1e-3
    stage2_lr: float = 1e-3
    max_length: int = 1024
    split: str = "test"
    eval_batch_size: int = 32

    def validate(self) -> None:
        from probes.models.registry import family_of, load_config

        if not self.backbones:
            raise UserError("--backbones must name at least one backbone")
        if len(set(self.backbones)) != len(self.backbones):
            raise UserError("--backbones lists a backbone twice")
        for b in self.backbones:
            family_of(load_config(b))  # unknown names fail here, before anything is written
        for v in self.variants:
            if v not in VARIANTS:
                raise UserError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise UserError("--variants must name agnostic and/or aware, each once")
        for t in self.tasks:
            if t not in WORLD_TASKS:
                raise UserError(f"the synthetic world has no {t!r} benchmark; choose from {', '.join(WORLD_TASKS)}")
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise UserError("--tasks must name at least one task, each once")
        from .connector import CONNECTORS

        if self.encoder != "tiny":
            raise UserError("the study runs offline: only the tiny (trainable) encoder is supported")
        if self.connector not in CONNECTORS:
            raise UserError(f"unknown connector {self.connector!r}; choose one of {', '.join(CONNECTORS)}")
        if self.split not in SPLITS:
            raise UserError(f"--split must be one of {', '.join(SPLITS)}")
        need = 10 if self.split == "test" else 9  # image i is train/val/test by i % 10 (8/1/1)
        if self.n_images < need:
            raise UserError(f"--n-images must be at least {need} so the {self.split} split has an image")
        for name in ("stage1_steps", "stage2_steps", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.stage1_lr <= 0 or self.stage2_lr <= 0:
            raise UserError("learning rates must be positive")

    def command(self, out: Path, runs: Path) -> str:
        """The full command line that reproduces this study (every option spelled out)."""
        import shlex

        args = ["probes", "vlm", "study", "--out", str(out), "--runs", str(runs),
                "--backbones", ",".join(self.backbones), "--variants", ",".join(self.variants),
                "--tasks", ",".join(self.tasks), "--n-images", str(self.n_images), "--seed", str(self.seed),
                "--connector", self.connector,
                "--stage1-steps", str(self.stage1_steps), "--stage2-steps", str(self.stage2_steps),
                "--batch-size", str(self.batch_size), "--stage1-lr", repr(self.stage1_lr),
                "--stage2-lr", repr(self.stage2_lr), "--max-length", str(self.max_length),
                "--split", self.split, "--eval-batch-size", str(self.eval_batch_size)]  # fmt: skip
        return shlex.join(args)


@dataclass
class Stage:
    name: str
    kind: str  # world | baseline | train | eval | report
    run: Callable[[Callable[[int, int], None]], dict[str, Any]]  # on_progress(done, total) → info
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    out: Path
    runs: Path

    @property
    def world(self) -> Path:
        return self.runs / "world"

    def run_dir(self, backbone: str, variant: str, stage: int) -> Path:
        return self.runs / f"{_slug(backbone)}-{variant}" / f"stage{stage}"

    def eval_dir(self, backbone: str, variant: str, task: str) -> Path:
        return self.out / "evals" / f"{_slug(backbone)}-{variant}" / task


def _slug(name: str) -> str:
    return Path(name).name if Path(name).is_dir() else name.replace("/", "--")


def _non_empty(p: Path) -> bool:
    return p.is_dir() and any(p.iterdir())


def prepare_dirs(cfg: StudyConfig, layout: Layout, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Check ``--resume`` / ``--overwrite`` against what is on disk; returns the saved record when resuming."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    record_path = layout.out / "study.json"
    if layout.out.exists() and not layout.out.is_dir():
        raise UserError(f"--out {layout.out} is a file, not a directory")
    if resume:
        if not record_path.is_file():
            if _non_empty(layout.out):
                raise UserError(f"{layout.out} has no study.json: nothing to resume (choose another --out)")
            return None
        saved = json.loads(record_path.read_text())
        if saved.get("config") != _config_json(cfg):
            raise UserError(f"{layout.out} holds a study with a different config; resume with the same options or use --overwrite")
        if saved.get("runs") != str(layout.runs):
            raise UserError(f"{layout.out} was run with --runs {saved.get('runs')}; resume with the same --runs")
        return saved
    for d, marker in ((layout.out, "study.json"), (layout.runs, RUNS_MARKER)):
        if not _non_empty(d):
            continue
        if not overwrite:
            raise UserError(f"{d} exists and is not empty; pass --resume to continue it or --overwrite to replace it")
        if not (d / marker).is_file():
            raise UserError(f"refusing to --overwrite {d}: it has no {marker}, so it is not a study directory")
    for d in (layout.out, layout.runs):
        if _non_empty(d):
            shutil.rmtree(d)
    return None


def _config_json(cfg: StudyConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg)))


# --------------------------------------------------------------------------------------------- blind prior


def blind_prior(world: Path, task: str, split: str) -> dict[str, Any]:
    """Score a text-only predictor fit on the world's training split (see module docstring)."""
    from .eval.datasets import load_eval_set
    from .eval.scoring import score_predictions
    from .image import format_box

    train = load_eval_set(task, world, split="train").samples
    test = load_eval_set(task, world, split=split)
    if task == "grounding":
        mean = [sum(s.reference[i] for s in train) / len(train) for i in range(4)]
        preds = [format_box(mean)] * len(test.samples)
        rule = "mean training box " + preds[0]
    elif task == "vqa":
        overall = Counter(Counter(s.reference).most_common(1)[0][0] for s in train)
        by_question: dict[str, Counter[str]] = {}
        for s in train:
            by_question.setdefault(s.prompt, Counter()).update([Counter(s.reference).most_common(1)[0][0]])
        top = overall.most_common(1)[0][0]
        preds = [by_question[s.prompt].most_common(1)[0][0] if s.prompt in by_question else top for s in test.samples]
        rule = f"most frequent training answer to the same question (else {top!r})"
    else:
        caption = Counter(s.reference[0] for s in train).most_common(1)[0][0]
        preds = [caption] * len(test.samples)
        rule = f"most frequent training caption {caption!r}"
    scored = score_predictions(task, test.samples, preds)
    return {"benchmark": test.benchmark, "task": task, "task_group": test.task_group, "metric": scored.metric,
            "score": scored.score, "n": len(test.samples), "rule": rule}


# --------------------------------------------------------------------------------------------- stages


def _train_stage(cfg: StudyConfig, layout: Layout, backbone: str, variant: str, stage: int) -> Callable[..., dict[str, Any]]:
    def run(on_progress: Callable[[int, int], None]) -> dict[str, Any]:
        from .train import train
        from .train_config import VLMTrainConfig

        out = layout.run_dir(backbone, variant, stage)
        summary = out / "summary.json"
        if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished" and (out / "final").is_dir():
            return _train_info(out)  # finished before the study recorded it
        if _non_empty(out) and not (out / "checkpoint" / "state.json").is_file():
            shutil.rmtree(out)  # a stage this study started and that died before its first checkpoint
        tcfg = VLMTrainConfig.build(
            stage=stage, data=str(layout.world), out=str(out), backbone=backbone, encoder=cfg.encoder,
            connector=cfg.connector, task_aware=variant == "aware",
            init_from=str(layout.run_dir(backbone, variant, 1)) if stage == 2 else None,
            max_steps=cfg.stage1_steps if stage == 1 else cfg.stage2_steps, batch_size=cfg.batch_size,
            lr=cfg.stage1_lr if stage == 1 else cfg.stage2_lr, max_length=cfg.max_length, seed=cfg.seed,
            log_every=max(1, (cfg.stage1_steps if stage == 1 else cfg.stage2_steps) // 20),
        )  # fmt: skip
        train(tcfg, show_progress=False)
        return _train_info(out)

    return run


def _train_info(run: Path) -> dict[str, Any]:
    summary = json.loads((run / "summary.json").read_text())
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    env = json.loads((run / "env.json").read_text())
    return {"run": str(run), "steps": summary["steps_done"], "first_loss": lines[0]["loss"] if lines else None,
            "final_loss": summary["final_loss"], "mamba_path": env.get("mamba_path"), "device": env.get("device"),
            "threads": env.get("threads")}


def _eval_stage(cfg: StudyConfig, layout: Layout, backbone: str, variant: str, task: str) -> Callable[..., dict[str, Any]]:
    def run(on_progress: Callable[[int, int], None]) -> dict[str, Any]:
        from .eval.datasets import load_eval_set
        from .eval.runner import evaluate, load_for_eval, resolve_checkpoint

        ckpt = resolve_checkpoint(layout.run_dir(backbone, variant, 2))
        eval_set = load_eval_set(task, layout.world, split=cfg.split)
        vlm = load_for_eval(ckpt)
        total, done = len(eval_set.samples), [0]

        def on_batch(n: int) -> None:
            done[0] += n
            on_progress(done[0], total)

        out = layout.eval_dir(backbone, variant, task)
        scores = evaluate(vlm, eval_set, out, checkpoint=ckpt, batch_size=cfg.eval_batch_size, on_batch=on_batch)
        return {"eval": str(out), "benchmark": scores["benchmark"], "metric": scores["metric"],
                "score": scores["score"], "n": scores["n"]}

    return run


def plan(cfg: StudyConfig, layout: Layout) -> list[Stage]:
    from .data.world import write_world

    def world(on_progress: Callable[[int, int], None]) -> dict[str, Any]:
        m = write_world(layout.world, cfg.n_images, cfg.seed)
        return {"world": str(layout.world), "n_images": m["n_images"]}

    def baseline(on_progress: Callable[[int, int], None]) -> dict[str, Any]:
        return {"blind_prior": [blind_prior(layout.world, t, cfg.split) for t in cfg.tasks]}

    stages = [Stage("world", "world", world), Stage("blind-prior", "baseline", baseline)]
    for b in cfg.backbones:
        for v in cfg.variants:
            for s in (1, 2):
                stages.append(Stage(f"{b}/{v}/stage{s}", "train", _train_stage(cfg, layout, b, v, s)))
            for t in cfg.tasks:
                stages.append(Stage(f"{b}/{v}/eval-{t}", "eval", _eval_stage(cfg, layout, b, v, t)))
    stages.append(Stage("report", "report", lambda on_progress: write_report(cfg, layout)))
    return stages


# --------------------------------------------------------------------------------------------- report


def _pairs(cfg: StudyConfig) -> list[tuple[str, str]] | None:
    """Each Transformer backbone against each Mamba-like one (explicit, so three backbones never clash)."""
    from probes.analysis.vlm_gap import SSM_FAMILIES, TRANSFORMER_FAMILIES
    from probes.models.registry import family_of, load_config

    fam = {b: family_of(load_config(b)) for b in cfg.backbones}
    pairs = [(p, m) for p in cfg.backbones if fam[p] in TRANSFORMER_FAMILIES for m in cfg.backbones if fam[m] in SSM_FAMILIES]
    return pairs or None


def write_report(cfg: StudyConfig, layout: Layout) -> dict[str, Any]:
    from probes.analysis.vlm_gap import build_gap_report, load_scores, write_gap_report

    report = build_gap_report(load_scores([layout.out / "evals"]), _pairs(cfg))
    written = write_gap_report(report, layout.out)
    return {"files": [p.name for p in written]}


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def readme(record: dict[str, Any]) -> str:
    """``README.md`` of the study directory: command, config, environment, stage times, scores vs the prior."""
    from probes.analysis.vlm_gap import build_gap_report, load_scores

    cfg = record["config"]
    env = record["env"]
    stages = record["stages"]
    parts = [
        "# Pythia-VL vs Mamba-VL: small study on the synthetic world",
        "",
        "Written by `probes vlm study` (code: `probes/vlm/study.py`). Reproduce with:",
        "",
        "```bash",
        record["command"],
        "```",
        "",
        f"Status: **{record['status']}**. Total stage wall time {record['total_wall_s']:.0f} s on "
        f"{env['device']} ({env['cpu_count']} CPUs, {env['threads']} torch threads), torch {env['torch']}, "
        f"transformers {env['transformers']}, python {env['python']}, mamba path {env.get('mamba_path')}.",
        "",
        "## Config",
        "",
        _md_table(["option", "value"], [[k, f"`{v}`"] for k, v in cfg.items()]),
    ]
    prior = next((s["info"]["blind_prior"] for s in stages if s["name"] == "blind-prior" and s.get("info")), None)
    evals = Path(record["out"]) / "evals"
    if record["status"] == "finished" and evals.is_dir():
        report = build_gap_report(load_scores([evals]), [tuple(p) for p in record["pairs"]] if record["pairs"] else None)
        header = ["benchmark", "metric"] + (["blind prior"] if prior else []) + [m.label for m in report.models]
        rows = []
        prior_score = {x["benchmark"]: f"{x['score']:.2f}" for x in prior or []}
        for _, b, metric in report.benchmarks:
            row = [b, metric] + ([prior_score.get(b, "–")] if prior else [])
            row += [f"{v:.2f}" if (v := report.score(m, b)) is not None else "–" for m in report.models]
            rows.append(row)
        parts += [
            "",
            f"## Scores on the world's `{cfg['split']}` split",
            "",
            "Accuracy in %, CIDEr × 100; one sample of a benchmark with n samples (see Stages) is 100/n "
            "points of accuracy. *Blind prior*: a text-only predictor fit on the training split and scored "
            "by the same scorer (" + "; ".join(f"{x['task']}: {x['rule']}" for x in prior or []) + "). A model at "
            "or below it has not used the image.",
            "",
            _md_table(header, rows),
            "",
            "Task-group sums, Pythia − Mamba differences and task-aware gains: [report.md](report.md), "
            "[report.csv](report.csv)"
            + (", [gains.png](gains.png)" if (Path(record["out"]) / "gains.png").is_file() else "")
            + ". Per-sample predictions: `evals/<backbone>-<variant>/<task>/predictions.jsonl`; "
            "`probes vlm gap evals --out DIR` rebuilds the report from them.",
        ]
    parts += [
        "",
        "## Stages",
        "",
        _md_table(
            ["stage", "wall s", "details"],
            [[s["name"], f"{s['wall_s']:.1f}" if s.get("wall_s") is not None else "–", _stage_details(s)] for s in stages],
        ),
        "",
        "Stage-2 lr is 1e-3 rather than SPEC's 2e-5 by default: the tiny backbones start from random weights. "
        "Wall times are per stage on a shared machine; several invocations (`--resume`) add up to the total.",
    ]
    return "\n".join(parts) + "\n"


def _stage_details(s: dict[str, Any]) -> str:
    info = s.get("info") or {}
    if s["kind"] == "train" and info:  # the first logged step is log_every = max(1, steps // 20)
        first = max(1, info["steps"] // 20)
        return f"{info['steps']} steps; loss {info['first_loss']:.3f} at step {first} → {info['final_loss']:.3f}"
    if s["kind"] == "eval" and info:
        return f"{info['benchmark']}: {info['metric']} {info['score']:.2f} (n={info['n']})"
    if s["kind"] == "world" and info:
        return f"{info['n_images']} images"
    return s.get("status", "")


# --------------------------------------------------------------------------------------------- driver


def _env() -> dict[str, Any]:
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name(0) if cuda else "cpu", "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads()}


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


def run_study(
    study: OpenStudy,
    *,
    stop_after_s: float | None = None,
    invocation: str | None = None,
    on_stage: Callable[[int, int, str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run (or continue) the study; returns the ``study.json`` record.

    ``stop_after_s``: stop cleanly at the first stage boundary after that many seconds (status
    ``partial``; at least one stage runs per call), so a long study can run in slices; the same command with
    ``resume=True`` continues.
    ``on_stage(index, n_stages, name)`` is called as each stage starts, ``on_progress(done, total)`` inside
    evaluation stages."""
    cfg, layout, saved = study.cfg, study.layout, study.saved
    stages = plan(cfg, layout)
    env = _env()
    ensure_writable_dir(layout.out)
    ensure_writable_dir(layout.runs)
    atomic_write_json(layout.runs / RUNS_MARKER, {"study": str(layout.out)})
    done = {s["name"]: s for s in (saved or {}).get("stages", []) if s.get("status") == "done"}
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": cfg.command(layout.out, layout.runs),
        "invocations": [*(saved or {}).get("invocations", []), {"command": invocation, "started": time.time()}],
        "config": _config_json(cfg),
        "out": str(layout.out),
        "runs": str(layout.runs),
        "pairs": _pairs(cfg),
        "env": env,
        "status": "running",
        "stages": [],
        "total_wall_s": 0.0,
    }

    def save(status: str) -> None:
        record["status"] = status
        record["stages"] = [
            done.get(s.name, {"name": s.name, "kind": s.kind, "status": "pending", "wall_s": None, "info": {}}) for s in stages
        ]
        record["total_wall_s"] = sum(s["wall_s"] or 0.0 for s in record["stages"])
        mamba = {s["info"].get("mamba_path") for s in record["stages"] if s["kind"] == "train" and s.get("info")} - {None}
        record["env"]["mamba_path"] = ",".join(sorted(mamba)) or None
        atomic_write_json(layout.out / "study.json", record)

    t_start = time.perf_counter()
    ran = 0
    save("running")
    for i, stage in enumerate(stages):
        if stage.name in done:
            continue
        if ran and stop_after_s is not None and time.perf_counter() - t_start >= stop_after_s:
            save("partial")
            atomic_write_text(layout.out / "README.md", readme(record))
            return record
        if on_stage is not None:
            on_stage(i, len(stages), stage.name)
        t0 = time.perf_counter()
        try:
            info = stage.run(on_progress or (lambda d, t: None))
        except KeyboardInterrupt:
            save("interrupted")
            raise
        except Exception:
            save("failed")
            raise
        done[stage.name] = {"name": stage.name, "kind": stage.kind, "status": "done",
                            "wall_s": round(time.perf_counter() - t0, 2), "info": info}
        ran += 1
        save("running")
    save("finished")
    atomic_write_text(layout.out / "README.md", readme(record))
    return record
