"""`probes doctor`: the versions, the device, the Mamba scan paths and the GPU fast paths this machine runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from probes.io import atomic_write_text

from .app import app
from .common import stdout_console


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


@app.command("doctor")
def doctor(
    device: str = typer.Option("auto", "--device", help="auto (cuda if available), cpu or cuda"),
    json_path: Path | None = typer.Option(None, "--json", help="also save the report to this JSON file"),
) -> None:
    """Check what this machine will run (versions, device, Mamba paths, GPU fast paths).

    Prints which Mamba scan paths exist and pass their self-check, the path a run would use, and whether
    bf16, fused AdamW and SDPA kernels work here. Run it first on a new GPU, and paste its output into a bug
    report.

    Example: probes doctor --json doctor.json
    """
    from rich.table import Table

    from probes.doctor import diagnose
    from probes.train.engine import resolve_device

    report: dict[str, Any] = diagnose(resolve_device(device))
    out = stdout_console()
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    absent = ", ".join(k for k, v in report["versions"].items() if not v)
    out.print(f"python {report['python']}; {versions}")
    out.print(f"not installed: {absent or 'nothing'}")
    out.print(f"torch CUDA build: {report['torch_cuda'] or 'none'}; CUDA device visible: "
              f"{_yes(report['cuda_available'])}; transformers reaches Mamba kernels through "
              f"{report['transformers_mamba_hook']}")
    dev = report["device"]
    out.print("device: " + ", ".join(f"{k} {v}" for k, v in dev.items()))

    table = Table(title="Mamba-1 scan paths", title_justify="left")
    for column in ("path", "available", "self-check", "note"):
        table.add_column(column, overflow="fold")
    for row in report["mamba"]["rows"]:
        check = row.get("self_check", "-")
        if "check_seconds" in row:
            check = f"{check} ({row['check_seconds']:.2f} s)"
        table.add_row(row["path"], _yes(row["available"]), check, row["note"] or "")
    out.print(table)
    chosen = report["mamba"]["run_would_use"]
    forced = f" (forced by --mamba-path/PROBES_MAMBA_PATH={chosen['forced']})" if chosen["forced"] else ""
    out.print(f"a run here would use: {chosen['path'] or 'nothing (error)'}{forced}"
              + (f"; {chosen['note']}" if chosen["note"] else ""))

    table = Table(title="engine fast paths", title_justify="left")
    for column in ("fast path", "works", "note"):
        table.add_column(column, overflow="fold")
    for name, row in report["fast_paths"].items():
        table.add_row(name, _yes(row["ok"]), row["note"] or "")
    out.print(table)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
        out.print(f"wrote {json_path}")
