"""The MFU numerator (`train_flops`) against torch's FLOP counter on a real fwd+bwd step.

No GPU is needed to check the FLOP accounting that `probes bench step` divides by the device peak: torch's
`FlopCounterMode` counts every matmul of the step independently. Attention runs eagerly here so that its
QKᵀ and AV products are plain matmuls the counter sees (it has no formula for the CPU SDPA kernel); the
selective scan's elementwise work is counted by neither side.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from probes.bench.probe import Stepper, build_probe, train_batch, train_flops


@pytest.mark.parametrize("preset", ["pythia-tiny", "mamba-tiny", "hybrid-tiny"])
def test_train_flops_matches_counted_matmul_flops(preset: str) -> None:
    length, batch = 32, 4
    probe = build_probe(preset, length, torch.device("cpu"))
    probe.model.set_attn_implementation("eager")
    stepper = Stepper(probe, train_batch(probe, length, batch))
    with FlopCounterMode(display=False) as counter:
        stepper.forward_backward()
    counted = counter.get_total_flops()
    estimated = train_flops(probe, batch, length + 2)
    assert counted > 0
    assert estimated == pytest.approx(counted, rel=0.03)
