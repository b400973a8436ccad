"""Sparse-block VDFs: Vlasiator's conventions and agreement with the dense sparsity rule."""

import numpy as np
import pytest

from faiser.data.sparse_blocks import (
    SparseBlocks,
    VelocityMesh,
    dense_to_sparse,
    kept_blocks,
    sparse_moments,
    sparse_to_dense,
)
from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.diagnostics import velocity_moments
from faiser.vlasov.sparsity import apply_threshold


def _dense_threshold(f: np.ndarray, mesh: VelocityMesh, f_min: float) -> np.ndarray:
    n = f.shape[0]
    grid = PhaseSpaceGrid(x_min=0, x_max=1, nx=(n, 1, 1), v_min=mesh.vmin, v_max=mesh.vmax, nv=mesh.nv)
    out, _ = apply_threshold(f.reshape(n, 1, 1, *mesh.nv), f_min, grid)
    return np.asarray(out).reshape(f.shape)


@pytest.mark.parametrize("nv", [(8, 8, 8), (12, 8, 4), (10, 7, 1), (3, 5, 9), (1, 1, 16), (16, 4, 20)])
@pytest.mark.parametrize("f_min", [0.0, 0.3, 0.9, 0.999, 2.0])
def test_roundtrip_equals_dense_threshold_rule(nv, f_min):
    rng = np.random.default_rng(abs(hash((nv, f_min))) % 2**32)
    f = (rng.random((4, *nv)) ** 6).astype(np.float32)
    mesh = VelocityMesh(nv, (-1.0, -2.0, -3.0), (1.0, 2.0, 3.0))
    sb = dense_to_sparse(f, mesh, f_min)
    back = sparse_to_dense(sb)
    assert back.dtype == np.float32 and back.shape == f.shape
    np.testing.assert_array_equal(back, _dense_threshold(f, mesh, f_min))
    if f_min <= 0:
        assert sb.nblocks_total == 4 * mesh.num_blocks  # every block kept


def test_block_id_and_cell_in_block_conventions():
    mesh = VelocityMesh((12, 8, 16), -1.0, 1.0)  # 3 x 2 x 4 blocks
    f = np.zeros((1, 12, 8, 16))
    i, j, k = 9, 6, 13  # block (2, 1, 3), local (1, 2, 1)
    f[0, i, j, k] = 1.0
    sb = dense_to_sparse(f, mesh, f_min=0.5)
    ids, vals = sb.cell(0)
    centre = 2 + 1 * 3 + 3 * 3 * 2
    row = int(np.flatnonzero(ids == centre)[0])
    assert vals[row].argmax() == 1 + 4 * 2 + 16 * 1
    assert np.count_nonzero(sb.values) == 1
    # one content block in a corner region: kept = the block and its in-box neighbours (2 x 2 x 2 here)
    assert sorted(ids.tolist()) == sorted(bi + bj * 3 + bk * 6 for bi in (1, 2) for bj in (0, 1) for bk in (2, 3))
    assert np.all(np.diff(ids.astype(np.int64)) > 0)  # ascending within a cell


def test_neighbour_layer_is_the_26_neighbourhood():
    mesh = VelocityMesh((20, 20, 20), -1.0, 1.0)  # 5^3 blocks
    f = np.zeros((2, 20, 20, 20))
    f[0, 10, 10, 10] = 1.0  # block (2, 2, 2): interior -> 27 blocks
    f[1, 0, 0, 0] = 1.0  # block (0, 0, 0): corner -> 8 blocks
    kept = kept_blocks(f, mesh, 0.5)
    assert kept[0].sum() == 27 and kept[0, 1:4, 1:4, 1:4].all()
    assert kept[1].sum() == 8 and kept[1, :2, :2, :2].all()
    assert kept_blocks(f, mesh, 0.0).all()


def test_cells_keep_values_below_threshold_in_kept_blocks():
    mesh = VelocityMesh((8, 8, 8), -1.0, 1.0)
    f = np.full((1, 8, 8, 8), 1e-3)
    f[0, 0, 0, 0] = 1.0
    back = sparse_to_dense(dense_to_sparse(f, mesh, 0.5))
    np.testing.assert_array_equal(back, f)  # 2^3 blocks, all neighbours of the content block


def test_sparse_moments_match_dense_moments():
    rng = np.random.default_rng(1)
    mesh = VelocityMesh((16, 12, 8), (-3.0, -2.0, -1.0), (5.0, 2.0, 3.0))
    vx, vy, vz = np.meshgrid(*(mesh.v_centers(a) for a in range(3)), indexing="ij")
    f = np.stack(
        [np.exp(-((vx - u) ** 2 + 2 * (vy - 0.3) ** 2 + (vz + 0.2) ** 2) / 0.8) for u in (0.0, 1.0, 2.5)]
    ) * rng.uniform(0.5, 2.0, (3, 1, 1, 1))
    sb = dense_to_sparse(f, mesh, 1e-4)
    m = sparse_moments(sb, mass=2.0, max_blocks=7)  # several batches, cells straddling them
    g = sparse_to_dense(sb)
    n = g.sum(axis=(1, 2, 3)) * mesh.dv3
    V = np.stack([(g * c).sum(axis=(1, 2, 3)) for c in (vx, vy, vz)], 1) * mesh.dv3 / n[:, None]
    d = [c[None] - V[:, a, None, None, None] for a, c in enumerate((vx, vy, vz))]
    P = lambda a, b: 2.0 * (g * d[a] * d[b]).sum(axis=(1, 2, 3)) * mesh.dv3  # noqa: E731
    np.testing.assert_allclose(m["density"], n, rtol=1e-12)
    np.testing.assert_allclose(m["bulk_velocity"], V, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m["ptensor_diagonal"], np.stack([P(0, 0), P(1, 1), P(2, 2)], 1), rtol=1e-9)
    np.testing.assert_allclose(
        m["ptensor_offdiagonal"], np.stack([P(1, 2), P(0, 2), P(0, 1)], 1), rtol=1e-7, atol=1e-9 * np.abs(P(0, 0)).max()
    )
    ref = velocity_moments(g, [mesh.v_centers(a) for a in range(3)], mesh.dv3, mass=2.0)  # the one definition
    np.testing.assert_allclose(m["density"], ref["density"], rtol=1e-12)
    np.testing.assert_allclose(m["bulk_velocity"], ref["bulk_velocity"], rtol=1e-10, atol=1e-12)
    Pref = ref["pressure"]
    np.testing.assert_allclose(m["ptensor_diagonal"], np.stack([Pref[:, a, a] for a in range(3)], 1), rtol=1e-9)
    off = np.stack([Pref[:, 1, 2], Pref[:, 0, 2], Pref[:, 0, 1]], 1)
    np.testing.assert_allclose(m["ptensor_offdiagonal"], off, rtol=1e-7, atol=1e-9 * np.abs(Pref[:, 0, 0]).max())


def test_select_and_empty_cells():
    mesh = VelocityMesh((8, 8, 8), -1.0, 1.0)
    f = np.zeros((3, 8, 8, 8), np.float32)
    f[2, 3, 3, 3] = 5.0
    sb = dense_to_sparse(f, mesh, 0.1, cellids=[7, 8, 9])
    assert sb.blocks_per_cell.tolist() == [0, 0, 8]
    sub = sb.select([2, 0])
    assert sub.cellids.tolist() == [9, 7]
    np.testing.assert_array_equal(sub.to_dense(), f[[2, 0]])
    np.testing.assert_array_equal(sparse_to_dense(sb)[:2], 0)
    assert sparse_moments(sb)["bulk_velocity"][0].tolist() == [0.0, 0.0, 0.0]


def test_large_sparse_mesh_is_vectorized():
    mesh = VelocityMesh((200, 200, 200), -1e6, 1e6)
    f = np.zeros((3, 200, 200, 200), np.float32)
    f[:, 80:120, 82:118, 82:118] = 1.0  # about 1% of the mesh (with the neighbour layer)
    sb = dense_to_sparse(f, mesh, 0.5)
    assert 0.005 < sb.nblocks_total / (3 * mesh.num_blocks) < 0.03
    np.testing.assert_array_equal(sparse_to_dense(sb), f)


def test_validation_errors():
    with pytest.raises(ConfigError):
        VelocityMesh((8, 8, 0), -1.0, 1.0)
    with pytest.raises(ConfigError):
        VelocityMesh((8, 8, 8), 1.0, -1.0)
    mesh = VelocityMesh((8, 8, 8), -1.0, 1.0)
    with pytest.raises(ConfigError):
        dense_to_sparse(np.zeros((2, 8, 8, 4)), mesh)
    with pytest.raises(ConfigError):
        SparseBlocks(mesh, np.ones(1, np.uint64), np.array([2]), np.zeros(1, np.uint32), np.zeros((1, 64)))
    assert VelocityMesh((10, 7, 1), -1.0, 1.0).padded and not mesh.padded
