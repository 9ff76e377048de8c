"""Grow a model's vocabulary for the probe's new tokens, with three declared initialisations (README "Training probes").

Old rows stay bit-identical. New rows of the input embedding, and of the output embedding when it is not
tied, are set by one strategy from a seeded generator, so three init seeds give three distinct, reproducible
starting points:

- ``mean``: mean of the existing rows plus small Gaussian noise (std = 0.02 · std of the existing rows),
  the choice of Hewitt (2021) that keeps the initial output distribution close to the pretrained one;
- ``gaussian``: a draw from N(μ, diag σ²) of the existing rows (Hewitt's sampled variant): centred like
  ``mean`` but as spread as the existing rows, so different seeds start measurably apart;
- ``normal``: N(0, initializer_range²), the model's own init scale;
- ``sample``: copies of uniformly drawn existing rows.

How far apart the seeds of one strategy start is :func:`init_spread` (README "Initialisations"): under ``mean``
the rows of two seeds differ by about 0.03 of the existing rows' spread, i.e. three ``mean`` seeds are three
nearly identical starting points; ``gaussian``, ``normal`` and ``sample`` seeds differ by about 1.4 of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from probes.errors import UserError

if TYPE_CHECKING:  # transformers costs seconds to import; the CLI imports this module for STRATEGIES
    from transformers import PreTrainedModel

Strategy = Literal["mean", "gaussian", "normal", "sample"]
STRATEGIES: tuple[str, ...] = ("mean", "gaussian", "normal", "sample")


def _new_rows(old: torch.Tensor, n_new: int, strategy: str, gen: torch.Generator, std: float) -> torch.Tensor:
    old32 = old.detach().float().cpu()
    if strategy == "mean":
        noise = torch.randn(n_new, old32.shape[1], generator=gen) * (0.02 * float(old32.std()))
        rows = old32.mean(dim=0, keepdim=True) + noise
    elif strategy == "gaussian":
        noise = torch.randn(n_new, old32.shape[1], generator=gen) * old32.std(dim=0, keepdim=True)
        rows = old32.mean(dim=0, keepdim=True) + noise
    elif strategy == "normal":
        rows = torch.randn(n_new, old32.shape[1], generator=gen) * std
    elif strategy == "sample":
        rows = old32[torch.randint(0, old32.shape[0], (n_new,), generator=gen)]
    else:
        raise UserError(f"unknown init strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    return rows.to(old.dtype)


def outputs_tied(model: PreTrainedModel) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def add_tokens(model: PreTrainedModel, n_new: int, strategy: str = "mean", seed: int = 0) -> int:
    """Append ``n_new`` rows; return the id of the first new token (the old number of input rows)."""
    if strategy not in STRATEGIES:
        raise UserError(f"unknown init strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    emb = model.get_input_embeddings()
    first = int(emb.weight.shape[0])
    if n_new <= 0:
        return first
    tied = outputs_tied(model)
    out_emb = model.get_output_embeddings()
    old_in = emb.weight.detach().clone()
    old_out = None if (tied or out_emb is None) else out_emb.weight.detach().clone()
    model.resize_token_embeddings(first + n_new, mean_resizing=False)
    gen = torch.Generator().manual_seed(seed)
    std = float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        emb = model.get_input_embeddings()
        emb.weight[:first] = old_in
        emb.weight[first:] = _new_rows(old_in, n_new, strategy, gen, std).to(emb.weight.device)
        if old_out is not None:
            out = model.get_output_embeddings()
            out.weight[:first] = old_out
            out.weight[first:] = _new_rows(old_out, n_new, strategy, gen, std).to(out.weight.device)
            if getattr(out, "bias", None) is not None and out.bias.shape[0] == first + n_new:
                out.bias[first:] = 0.0
    return first


def init_spread(old: torch.Tensor, n_new: int, strategy: str, seeds: tuple[int, ...], std: float = 0.02) -> float:
    """Mean distance between the new rows of two different seeds, in units of the existing rows' typical
    distance from their mean (0: every seed starts at the same rows; about 1.4 for two independent draws of
    the existing rows' own spread). The same generator use as :func:`add_tokens` for the input rows; ``std``
    is ``normal``'s scale (the model's ``initializer_range``)."""
    if len(seeds) < 2:
        raise UserError("init_spread needs at least two seeds")
    old32 = old.detach().float().cpu()
    scale = float((old32 - old32.mean(dim=0)).norm(dim=1).mean())
    rows = [_new_rows(old32, n_new, strategy, torch.Generator().manual_seed(s), std) for s in seeds]
    dists = [float((rows[i] - rows[j]).norm(dim=1).mean()) for i in range(len(rows)) for j in range(i + 1, len(rows))]
    return sum(dists) / len(dists) / scale
