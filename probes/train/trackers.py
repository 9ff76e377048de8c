"""Experiment trackers (``--report-to tensorboard,wandb,csv``) through accelerate's tracker classes.

``metrics.jsonl`` stays the canonical record of a run; trackers *mirror* it. :class:`RunMirror` reads the
complete lines a run appended since the last sync and logs them under the ``metrics.jsonl`` names
(docs/CONTRACTS.md, "One vocabulary"): ``train_loss``, ``lr``, ``heldout_acc``, ``heldout_loss``, per-position
accuracy as ``per_position_acc/P`` with 1-based target positions P (``per_position_acc[P-1]`` of the line)
and, for TensorBoard and W&B, the per-position matrix so far (target position × evaluation, the paper's
Fig. 7 heatmap) as the image ``per_position_acc``. TensorBoard: one TensorBoard run per probe run
(``RUN/tracking/tensorboard/``) with the run config in its HParams tab. CSV (``RUN/tracking/metrics.csv``):
long format, one row per logged scalar ``step,key,value`` (pivot with
``pandas.read_csv(f).pivot_table(index="step", columns="key", values="value")`` for one row per step). Because
the mirror only reads the run directory, it works the same for a fresh run, a resumed one (a resumed run
re-logs its earlier lines; TensorBoard overlays equal steps) and after the fact.

W&B runs offline unless ``WANDB_MODE`` says otherwise or ``WANDB_API_KEY`` is set (``wandb sync`` uploads
later); its files go to the run directory's ``tracking/`` folder, like TensorBoard's event files.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from probes.errors import UserError
from probes.runfiles import CONFIG, METRICS, TRACKING

TRACKERS = ("tensorboard", "wandb", "csv")
TRACKING_DIR = TRACKING


def parse_report_to(text: str | None) -> list[str]:
    """``"tensorboard,csv"`` → ``["tensorboard", "csv"]``; ``none`` or empty → ``[]``; unknown names are errors."""
    names = [t.strip().lower() for t in (text or "").split(",") if t.strip()]
    if names in (["none"], []):
        return []
    bad = [n for n in names if n not in TRACKERS]
    if bad:
        raise UserError(f"unknown tracker {bad[0]!r} in --report-to: use {', '.join(TRACKERS)} or none")
    missing = [n for n in names if n != "csv" and not _importable(n)]
    if missing:
        raise UserError(f"--report-to {missing[0]} needs the {missing[0]} package: pip install {missing[0]}")
    return list(dict.fromkeys(names))


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class CSVTracker:
    """A long CSV (step, key, value), one row per logged scalar: it can be appended to on resume without
    rewriting, is readable by any tool and needs no dependency (a pivot gives one row per step)."""

    name = "csv"

    def __init__(self, logging_dir: Path) -> None:
        logging_dir.mkdir(parents=True, exist_ok=True)
        self.path = logging_dir / "metrics.csv"
        new = not self.path.exists()
        self._fh = self.path.open("a", newline="")
        self._csv = csv.writer(self._fh)
        if new:
            self._csv.writerow(["step", "key", "value"])

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        (self.path.parent / CONFIG).write_text(json.dumps(values, indent=1, default=str))

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self._csv.writerow([step, key, value])
        self._fh.flush()

    def log_images(self, values: dict[str, np.ndarray], step: int) -> None:  # images have no CSV form
        del values, step

    def finish(self) -> None:
        self._fh.close()


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → ``{"train/lr": 1e-4, …}`` with scalar values (TensorBoard's hparams need scalars)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flat(value, name + "/")
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def _tensorboard_tracker(root: Path) -> Any:
    """accelerate's TensorBoard tracker, but the hyperparameters go into the run's own event file (its
    ``add_hparams`` writes them as a second, empty run plus a folder holding only ``hparams.yml``), with the
    held-out metrics named so that TensorBoard's HParams tab shows them beside the config."""
    from accelerate.tracking import TensorBoardTracker

    class RunTensorBoard(TensorBoardTracker):
        def store_init_configuration(self, values: dict[str, Any]) -> None:
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(values, {"heldout_acc": 0.0, "heldout_loss": 0.0}):
                self.writer.file_writer.add_summary(summary)
            self.writer.flush()

    tracker = RunTensorBoard("tensorboard", str(root))
    tracker.start()
    return tracker


def make_trackers(kinds: list[str], run_dir: Path, run_name: str, config: dict[str, Any]) -> list[Any]:
    """Started trackers for one run, their files under ``run_dir/tracking/``."""
    trackers: list[Any] = []
    root = run_dir / TRACKING_DIR
    for kind in kinds:
        if kind == "csv":
            tracker: Any = CSVTracker(root)
        elif kind == "tensorboard":
            tracker = _tensorboard_tracker(root)
        else:
            from accelerate.tracking import WandBTracker

            mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
            root.mkdir(parents=True, exist_ok=True)
            tracker = WandBTracker(os.environ.get("WANDB_PROJECT", "probes"), name=run_name, dir=str(root),
                                   mode=mode, group=run_dir.parent.name, reinit="finish_previous")
            tracker.start()
        tracker.store_init_configuration(_flat(config))
        trackers.append(tracker)
    return trackers


def per_position_image(rows: list[list[float | None]]) -> np.ndarray:
    """Accuracy rows (one per evaluation) → an RGB uint8 image, position 1 at the bottom, evaluations left to
    right (the paper's Fig. 7 layout), viridis colours, unmeasured positions grey."""
    from matplotlib import colormaps

    acc = np.array([[np.nan if v is None else float(v) for v in r] for r in rows], dtype=np.float64).T[::-1]
    rgba = colormaps["viridis"](np.nan_to_num(acc, nan=0.0))
    rgba[np.isnan(acc)] = (0.6, 0.6, 0.6, 1.0)
    scale = max(1, 256 // max(acc.shape))  # small grids are scaled up so that they can be seen
    img = np.kron((rgba[..., :3] * 255).astype(np.uint8), np.ones((scale, scale, 1), dtype=np.uint8))
    return img


class RunMirror:
    """Mirrors one run directory's ``metrics.jsonl`` into trackers; call :meth:`sync` as often as you like."""

    def __init__(self, run_dir: Path, kinds: list[str]) -> None:
        self.run_dir, self.kinds = run_dir, kinds
        self.trackers: list[Any] | None = None
        self.offset = 0
        self.rows: list[list[float | None]] = []

    def _start(self) -> bool:
        config_path = self.run_dir / CONFIG
        if not config_path.is_file():
            return False
        try:
            config = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        self.trackers = make_trackers(self.kinds, self.run_dir, str(config.get("run_name") or self.run_dir.name),
                                      config)
        return True

    def sync(self) -> int:
        """Log the complete lines appended since the last call; return how many were logged."""
        if not self.kinds:
            return 0
        metrics = self.run_dir / METRICS
        try:
            size = metrics.stat().st_size
        except OSError:
            return 0
        if size < self.offset:  # cut back by a resume: start over
            self.offset, self.rows = 0, []
        if size == self.offset or (self.trackers is None and not self._start()):
            return 0
        with metrics.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        end = chunk.rfind(b"\n")
        if end < 0:
            return 0
        self.offset += end + 1
        n = 0
        for line in chunk[: end + 1].decode().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            self._log(record)
            n += 1
        return n

    def _log(self, record: dict[str, Any]) -> None:
        step = int(record.get("step", 0))
        if record.get("kind") == "train":
            values = {"train_loss": record.get("loss"), "lr": record.get("lr")}
        elif record.get("kind") == "eval":
            values = {"heldout_acc": record.get("heldout_acc"), "heldout_loss": record.get("heldout_loss")}
            per_pos = record.get("per_position_acc") or []
            values |= {f"per_position_acc/{k + 1}": v for k, v in enumerate(per_pos)}  # 1-based positions
            self.rows.append(list(per_pos))
        else:
            return
        clean = {k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}
        for tracker in self.trackers or []:
            tracker.log(clean, step=step)
        if record.get("kind") == "eval" and self.rows:
            image = per_position_image(self.rows)
            for tracker in self.trackers or []:
                if tracker.name == "tensorboard":  # accelerate calls add_images: a batch of one
                    tracker.log_images({"per_position_acc": image[None]}, step=step, dataformats="NHWC")
                elif tracker.name == "wandb":
                    tracker.log_images({"per_position_acc": [image]}, step=step)

    def finish(self) -> None:
        self.sync()
        for tracker in self.trackers or []:
            tracker.finish()
        self.trackers = None
