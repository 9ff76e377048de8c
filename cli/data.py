"""`probes data`: export a task's samples as JSON Lines with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from probes.synthetic.export import export_jsonl, manifest_path
from probes.synthetic.registry import build_task, task_names

from probes.errors import UserError
from probes.io import check_writable_file

from .app import app
from .common import console, parse_params, progress_bar

MAX_INDEX = 2**63 - 1


@app.command("data")
def data(
    out: Annotated[Path, typer.Option("--out", help="Output .jsonl file (manifest written beside it).")],
    task: Annotated[str, typer.Option(help=f"Task: {', '.join(task_names())}.")] = "grounding",
    length: Annotated[int, typer.Option("--len", help="Sequence length L (context size).")] = 200,
    order: Annotated[str, typer.Option(help="suffix (query last) or prefix (query first).")] = "suffix",
    split: Annotated[str, typer.Option(help="train or heldout.")] = "heldout",
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 100_000,
    start: Annotated[int, typer.Option(help="Index of the first sample.")] = 0,
    pool: Annotated[int | None, typer.Option(help="Context pool size P (default 2·L).")] = None,
    seed: Annotated[int, typer.Option(help="Data seed.")] = 0,
    pos_offset: Annotated[int, typer.Option(help="Position k is vocabulary id pos_offset + k.")] = 2,
    base_vocab: Annotated[
        int, typer.Option(help="Id of the first new token (<s_0>); Pythia/Mamba tokenizers: 50277.")
    ] = 50277,
    param: Annotated[list[str] | None, typer.Option(help="Extra task parameter key=value (repeatable).")] = None,
) -> None:
    """Export samples of a probe task as JSON Lines plus FILE.manifest.json.

    Example: probes data --task grounding --len 200 --order suffix --split heldout --n 100000 --out heldout.jsonl
    """
    if n < 0:
        raise UserError(f"--n must be >= 0 (got {n})")
    if start < 0:
        raise UserError(f"--start must be >= 0 (got {start})")
    if start + n > MAX_INDEX:
        raise UserError(f"--start + --n must be at most {MAX_INDEX} (sample indices are 64-bit); got {start + n}")
    if split not in ("train", "heldout"):
        raise UserError(f"unknown split {split!r}; choose train or heldout")
    params = {"length": length, "order": order, "seed": seed, **parse_params(param)}
    params["context_offset"] = base_vocab
    if task == "grounding":
        params |= {"pool": pool, "pos_offset": pos_offset}
    elif pool is not None:
        params["pool"] = pool
    t = build_task(task, params)
    for path in (out, manifest_path(out)):  # fail before any progress output: devices, links, /proc …
        check_writable_file(path)
    with progress_bar() as bar:
        job = bar.add_task(f"{task} {split}", total=n)
        export_jsonl(t, split, n, out, start=start, progress=lambda k: bar.advance(job, k))  # type: ignore[arg-type]
    console.print(f"wrote {n} samples to {out} and {manifest_path(out)}")
