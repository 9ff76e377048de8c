"""VL-Mamba VSS connectors: scan orders, shapes, non-causality, gradient flow, and Eqs. 5-6 on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from probes.vlm.vss import (
    VSS_CONNECTORS,
    BidirectionalMambaBlock,
    CrossScanMambaBlock,
    MultiScanMamba,
    build_vss_connector,
    scan_permutation,
)

torch.set_num_threads(1)
KW = {"d_state": 4, "expand": 1}


def test_scan_permutations_on_2x3_grid() -> None:
    # raster:  0 1 2 / 3 4 5
    assert scan_permutation("row", 2, 3).tolist() == [0, 1, 2, 3, 4, 5]
    assert scan_permutation("row_rev", 2, 3).tolist() == [5, 4, 3, 2, 1, 0]
    assert scan_permutation("col", 2, 3).tolist() == [0, 3, 1, 4, 2, 5]
    assert scan_permutation("col_rev", 2, 3).tolist() == [5, 2, 4, 1, 3, 0]


@pytest.mark.parametrize("name", VSS_CONNECTORS)
def test_connector_shapes_and_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    conn = build_vss_connector(name, in_dim=12, out_dim=16, grid=(3, 4), **KW)
    x = torch.randn(2, 12, 12)
    y = conn(x)
    assert y.shape == (2, 12, 16)
    y.square().mean().backward()
    missing = [n for n, p in conn.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_one_mamba_layer_is_shared_by_the_scan_directions() -> None:
    """VL-Mamba §3.2: "the VSS module consists of a 2D vision scan mechanism and one mamba layer"."""
    for name in VSS_CONNECTORS:
        assert len(build_vss_connector(name, 8, 8, 3, **KW).vss.mixers) == 1
    assert len(build_vss_connector("vss-l2-csm", 8, 8, 3, legacy=True, **KW).vss.mixers) == 4
    assert len(build_vss_connector("vss-mlp-bsm", 8, 8, 3, legacy=True, **KW).vss.mixers) == 2


def _bsm(conn: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    m = conn.vss.mixers[0]
    return m(h) + m(h.flip(1)).flip(1)


def test_vss_mlp_follows_eq5_on_a_tiny_tensor() -> None:
    """Eq. 5: V_scan = VSS(V); V_out = MLP(Norm(V_scan + V)) — skip and norm *after* the scan."""
    torch.manual_seed(0)
    conn = build_vss_connector("vss-mlp-bsm", 6, 5, (2, 2), **KW)
    x = torch.randn(2, 4, 6)
    expected = conn.mlp(torch.nn.functional.layer_norm(_bsm(conn, x) + x, (6,), conn.norm.weight, conn.norm.bias))
    torch.testing.assert_close(conn(x), expected)
    assert conn.vss.norm is None  # no norm before the scan


def test_vss_l2_follows_eq6_on_a_tiny_tensor() -> None:
    """Eq. 6: V' = Linear(V); V_scan = VSS(GELU(V')); V_out = Linear(Norm(V_scan + V')) — the skip adds V'."""
    torch.manual_seed(0)
    conn = build_vss_connector("vss-l2-csm", 6, 5, (2, 2), **KW)
    x = torch.randn(2, 4, 6)
    v = x @ conn.proj_in.weight.T + conn.proj_in.bias
    g = torch.nn.functional.gelu(v)
    m = conn.vss.mixers[0]
    perm = torch.tensor([0, 2, 1, 3])  # column-major on a 2x2 grid
    col = torch.empty_like(g)
    col[:, perm] = m(g[:, perm])
    col_rev = torch.empty_like(g)
    col_rev[:, perm.flip(0)] = m(g[:, perm.flip(0)])
    scan = m(g) + m(g.flip(1)).flip(1) + col + col_rev
    expected = conn.proj_out(torch.nn.functional.layer_norm(scan + v, (5,), conn.norm.weight, conn.norm.bias))
    torch.testing.assert_close(conn(x), expected)


def test_legacy_variant_keeps_the_old_prenorm_residual_block() -> None:
    torch.manual_seed(0)
    conn = build_vss_connector("vss-l2-bsm", 6, 5, (2, 2), legacy=True, **KW)
    x = torch.randn(1, 4, 6)
    g = torch.nn.functional.gelu(conn.proj_in(x))
    h = conn.vss.norm(g)
    vss = g + conn.vss.mixers[0](h) + conn.vss.mixers[1](h.flip(1)).flip(1)
    torch.testing.assert_close(conn(x), conn.proj_out(vss))


def _influence(block: torch.nn.Module, n: int, dim: int, src: int, dst: int) -> float:
    x = torch.randn(1, n, dim, requires_grad=True)
    block(x)[0, dst].sum().backward()
    return float(x.grad[0, src].abs().sum())


def test_single_forward_scan_is_causal_but_bidirectional_is_not() -> None:
    torch.manual_seed(0)
    forward_only = MultiScanMamba(8, ("row",), **KW)
    assert _influence(forward_only, 6, 8, src=5, dst=0) == 0.0
    assert _influence(BidirectionalMambaBlock(8, **KW), 6, 8, src=5, dst=0) > 0.0


def test_bidirectional_equals_forward_plus_flipped_backward() -> None:
    torch.manual_seed(0)
    block = BidirectionalMambaBlock(8, **KW)
    x = torch.randn(2, 5, 8)
    h = block.norm(x)
    expected = x + block.mixers[0](h) + block.mixers[1](h.flip(1)).flip(1)
    torch.testing.assert_close(block(x), expected)


def test_cross_scan_column_route_reads_columns() -> None:
    torch.manual_seed(0)
    block = CrossScanMambaBlock(8, (2, 3), **KW)
    x = torch.randn(1, 6, 8)
    h = block.norm(x)
    perm = torch.tensor([0, 3, 1, 4, 2, 5])
    col = torch.empty_like(h)
    col[:, perm] = block.mixers[2](h[:, perm])
    manual = (
        block.mixers[0](h)
        + block.mixers[1](h.flip(1)).flip(1)
        + col
        + block.mixers[3](h[:, perm.flip(0)]).flip(1)[:, perm.argsort()]
    )
    torch.testing.assert_close(block(x), x + manual)


def test_bsm_accepts_pruned_token_count_csm_refuses() -> None:
    bsm = build_vss_connector("vss-mlp-bsm", 8, 8, 4, **KW)
    assert bsm(torch.randn(1, 7, 8)).shape == (1, 7, 8)
    csm = build_vss_connector("vss-mlp-csm", 8, 8, 4, **KW)
    with pytest.raises(ValueError, match="full 4x4 grid"):
        csm(torch.randn(1, 7, 8))


def test_unknown_connector_name() -> None:
    with pytest.raises(ValueError, match="unknown VSS connector"):
        build_vss_connector("vss-mlp-xyz", 8, 8, 4)
