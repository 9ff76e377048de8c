"""JSON Lines export of any task (README "The grounding task and its generator" for the format) with a manifest beside it.

Samples are generated in chunks and serialised with orjson straight from numpy rows, so an export is bound
by the disk, not by a Python loop over tokens. Output goes to a temporary file renamed on success.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import torch

from probes.io import atomic_path, atomic_write_json

from .base import ProbeTask, Split

EXPORT_CHUNK = 8192


def manifest_path(out: Path) -> Path:
    name = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(name + ".manifest.json")


def export_jsonl(
    task: ProbeTask, split: Split, n: int, out: Path, start: int = 0, progress: Any = None
) -> dict[str, Any]:
    """Write samples ``start … start+n-1`` of ``split`` to ``out`` and the manifest; return the manifest."""
    manifest = {
        **task.manifest(),
        "split": split,
        "n": n,
        "first_index": start,
        "format": "jsonl: one sample per line",
        "data_file": out.name,
    }
    opt = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    mpath = manifest_path(out)
    with atomic_path(out) as tmp, tmp.open("wb") as fh:
        for lo in range(start, start + n, EXPORT_CHUNK):
            hi = min(lo + EXPORT_CHUNK, start + n)
            batch = task.generate(split, torch.arange(lo, hi, dtype=torch.int64))
            fh.write(b"".join(orjson.dumps(rec, option=opt) for rec in task.records(batch)))
            if progress is not None:
                progress(hi - lo)
        fh.flush()
        atomic_write_json(mpath, manifest)
    return manifest
