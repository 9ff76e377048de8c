"""Disk and memory of a probe run, measured on a tiny preset on the CPU and scaled by parameter count to the
paper's 1.4B models (README "Disk and memory at paper scale").

``python -m probes.studies.footprint [--out FILE.json]`` trains ``pythia-tiny`` and ``mamba-tiny`` for a few
steps through the real trainer and measures, per model:

- the bytes of one checkpoint (weights, AdamW state, RNG and ``state.json``) and so its bytes per parameter;
- the training state held in memory after a step: parameters, gradients and AdamW's two moments, in bytes
  per parameter (summed over the tensors, not read from the process, whose size is mostly torch itself);
- the activation bytes one training batch saves for backward (counted through
  ``torch.autograd.graph.saved_tensors_hooks``), with and without gradient checkpointing.

The 1.4B figures are a *scaled estimate, not a GPU measurement*: the weights' and AdamW state's bytes per
parameter from the tiny run (plus the checkpoint's fixed files) times the parameter count of the 1.4B configuration (counted on the ``meta`` device, nothing allocated), times the
checkpoints kept and the runs of the grid. Activations do not scale with the parameter count and are not
scaled here.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

PAPER_GRID_RUNS = 108  # 3 lengths x 2 orders x 2 models x 3 lrs x 3 init seeds (README "Training probes")
PAPER_MODELS = {"pythia-1.4b": ("pythia", 2048, 24, 16, 50304), "mamba-1.4b": ("mamba", 2048, 48, None, 50280)}


def count_params_meta(kind: str, hidden: int, layers: int, heads: int | None, vocab: int) -> int:
    """Parameters of a paper-size configuration, built on the meta device (no memory)."""
    from transformers import AutoModelForCausalLM

    from probes.models import presets

    config = presets._pythia(hidden, layers, heads or 16, vocab) if kind == "pythia" else presets._mamba(hidden, layers, vocab)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _saved_activation_bytes(model_name: str, checkpointing: bool, batch: int, length: int) -> int:
    """Bytes of the tensors one forward saves for backward (unique storages), on the CPU in float32."""
    from probes.models.registry import load_backbone
    from probes.synthetic.grounding import GroundingConfig, GroundingTask
    from probes.train.engine import Engine
    from probes.train.forward import TargetLogits, probe_loss
    from probes.train.loop import enable_mamba_fast_path

    backbone = load_backbone(model_name, seed=0)
    model = backbone.model.train()
    enable_mamba_fast_path(model)
    if checkpointing:
        Engine.gradient_checkpointing(model, model_name)
    task = GroundingTask(GroundingConfig(length=length, context_offset=backbone.vocab_size - 4 * length))
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = probe_loss(TargetLogits(model), task.generate("train", torch.arange(batch)))
    loss.backward()
    return sum(seen.values())


def measure(model_name: str, steps: int = 4, batch: int = 16, length: int = 16) -> dict[str, Any]:
    """One tiny run through the trainer: checkpoint bytes, training-state bytes, activations."""
    from safetensors import safe_open

    from probes.train.config import ModelSpec, RunConfig, TaskSpec, TrainConfig
    from probes.train.loop import run

    cfg = RunConfig(ModelSpec(model_name), TaskSpec("grounding", {"length": length}),
                    TrainConfig(lr=1e-3, batch_size=batch, max_steps=steps, eval_every=steps, eval_samples=64,
                                n_train=10 * batch, verify_disjoint=False, early_stop=False, device="cpu"),
                    run_name="footprint")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "r"
        run(cfg, run_dir)
        ckpt = run_dir / "checkpoint"
        files = {p.name: p.stat().st_size for p in ckpt.iterdir() if p.is_file()}
        with safe_open(str(ckpt / "model.safetensors"), "pt") as fh:
            n_params_saved = sum(_numel(fh.get_slice(k).get_shape()) for k in fh.keys())
        optimizer = torch.load(ckpt / "optimizer.bin", weights_only=True)
    moments = sum(v.numel() * v.element_size() for s in optimizer["state"].values() for v in s.values()
                  if torch.is_tensor(v) and v.dim() > 0)
    trainable = sum(v.numel() for s in optimizer["state"].values() for k, v in s.items() if k == "exp_avg")
    total = sum(files.values())
    return {
        "model": model_name,
        "trainable_params": trainable,
        "saved_params": n_params_saved,
        "checkpoint_bytes": total,
        "checkpoint_files": files,
        "checkpoint_bytes_per_param": total / trainable,
        # weights + AdamW state, the part that grows with the model (state.json and the RNG pickle are a
        # fixed ~50 kB, the safetensors / optimizer headers a few bytes per tensor)
        "weights_optimizer_bytes_per_param": (files["model.safetensors"] + files["optimizer.bin"]) / trainable,
        "fixed_bytes": sum(v for k, v in files.items() if k not in ("model.safetensors", "optimizer.bin")),
        # weights (fp32) + gradients (fp32) + AdamW exp_avg and exp_avg_sq (fp32): what a step holds
        "train_state_bytes_per_param": (4 * trainable + 4 * trainable + moments) / trainable,
        "activations_bytes": _saved_activation_bytes(model_name, False, batch, length),
        "activations_bytes_checkpointing": _saved_activation_bytes(model_name, True, batch, length),
        "activation_batch": batch,
        "activation_length": length,
    }


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def scale(tiny: dict[str, Any], params: int, keep: int, runs: int = PAPER_GRID_RUNS // 2) -> dict[str, float]:
    """The 1.4B estimate: bytes per parameter measured on the tiny model times ``params``; ``runs``: this
    model's runs in the paper's grid (half of the 108)."""
    ckpt = tiny["weights_optimizer_bytes_per_param"] * params + tiny["fixed_bytes"]
    return {
        "params": params,
        "checkpoint_GB": ckpt / 1e9,
        "per_run_GB": ckpt * keep / 1e9,
        "runs": runs,
        "runs_TB": ckpt * keep * runs / 1e12,
        "train_state_GB": tiny["train_state_bytes_per_param"] * params / 1e9,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    torch.manual_seed(0)
    tiny = {"pythia": measure("pythia-tiny"), "mamba": measure("mamba-tiny")}
    paper = {}
    for name, (kind, hidden, layers, heads, vocab) in PAPER_MODELS.items():
        params = count_params_meta(kind, hidden, layers, heads, vocab)
        paper[name] = {f"keep{k}": scale(tiny[kind], params, k) for k in (1, 2)}
    grid = {f"keep{k}_TB": sum(m[f"keep{k}"]["runs_TB"] for m in paper.values()) for k in (1, 2)}
    result = {"tiny": tiny, "paper_estimate": paper, "grid_runs": PAPER_GRID_RUNS, "grid": grid,
              "note": "scaled estimate from a CPU run of the tiny presets, not a GPU measurement"}
    text = json.dumps(result, indent=1)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
