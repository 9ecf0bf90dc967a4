"""Property checks of backend.pretext's tensor operations: Lab conversion, ab bins, tile grids,
jigsaw permutations, relative patch location, CPC grid, patchify, masks."""

from __future__ import annotations


import math

import pytest
import torch
import torch.nn.functional as F

from backend.pretext import colorization as col
from backend.pretext import jigsaw, lab, masks, patches


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=gen(seed), dtype=dtype)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# --------------------------------------------------------------------------------------------
# Lab


def ref_rgb_to_lab(r, g, b):
    """The standard sRGB (D65) -> CIE Lab formulas, one pixel at a time."""
    def linear(c):
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    rl, gl, bl = linear(r), linear(g), linear(b)
    x = (0.412453 * rl + 0.357580 * gl + 0.180423 * bl) / 0.95047
    y = (0.212671 * rl + 0.715160 * gl + 0.072169 * bl) / 1.0
    z = (0.019334 * rl + 0.119193 * gl + 0.950227 * bl) / 1.08883

    def f(t):
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116
    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_rgb_to_lab_matches_the_formulas_pixel_by_pixel():
    x = rand(2, 3, 3, 4, seed=1)
    x[0, :, 0, 0] = torch.tensor([0.01, 0.02, 0.03])      # the linear branches of both curves
    out = lab.rgb_to_lab(x)
    for n in range(2):
        for i in range(3):
            for j in range(4):
                expected = ref_rgb_to_lab(*x[n, :, i, j].tolist())
                assert out[n, :, i, j].tolist() == pytest.approx(expected, abs=1e-9)


def test_rgb_to_lab_published_values():
    prim = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1, 1], [0, 0, 0]],
                        dtype=torch.float64).T.reshape(1, 3, 1, 5)
    out = lab.rgb_to_lab(prim)[0, :, 0].T.tolist()
    published = [(53.24, 80.09, 67.20), (87.73, -86.18, 83.18), (32.30, 79.19, -107.86),
                 (100.0, 0.0, 0.0), (0.0, 0.0, 0.0)]
    for got, want in zip(out, published):
        assert got == pytest.approx(want, abs=0.02)


def test_rgb_to_lab_matches_scikit_image_when_installed():
    skcolor = pytest.importorskip("skimage.color")
    x = rand(1, 3, 8, 8, seed=2)
    expected = torch.from_numpy(skcolor.rgb2lab(x[0].permute(1, 2, 0).numpy())).permute(2, 0, 1)
    assert torch.allclose(lab.rgb_to_lab(x)[0], expected, atol=1e-3)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_lab_round_trip_and_split_merge(dtype, tol):
    x = rand(3, 3, 6, 6, seed=3, dtype=dtype)
    lab_x = lab.rgb_to_lab(x)
    assert lab_x.dtype == dtype
    assert torch.allclose(lab.lab_to_rgb(lab_x), x, atol=tol)
    l_norm, ab = lab.split_lab(lab_x)
    assert l_norm.shape == (3, 1, 6, 6) and ab.shape == (3, 2, 6, 6)
    assert float(l_norm.min()) >= -1 and float(l_norm.max()) <= 1
    assert torch.allclose(lab.merge_lab(l_norm, ab), lab_x, atol=tol)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        lab.rgb_to_lab(x[:, :2])


def test_ab_bins_cover_the_gamut_on_a_grid_of_ten():
    bins = col.ab_bins(dtype=torch.float64)
    assert bins.shape == (262, 2)
    assert torch.equal(bins, torch.round(bins / 10) * 10)
    cells = {tuple(c) for c in bins.long().tolist()}
    assert len(cells) == 262 and (0, 0) in cells
    ab = lab.rgb_to_lab(rand(1, 3, 64, 64, seed=4))[:, 1:]
    observed = torch.floor(ab / 10 + 0.5).long() * 10
    assert {tuple(c) for c in observed.reshape(2, -1).T.tolist()} <= cells


# --------------------------------------------------------------------------------------------
# Tile grids, jigsaw, relative patch location


def check_tile_layout(origins, tile, cell, size):
    """Tiles inside the image, in row-major cells, gaps between neighbours in [0, 2(cell - t)]."""
    o = origins.view(-1, 3, 3, 2)
    assert int(o.min()) >= 0 and int(o.max()) <= size - tile
    for axis, dim in ((0, 1), (1, 2)):    # rows: consecutive grid rows; cols: consecutive columns
        step = o.diff(dim=dim)[..., axis]
        assert int(step.min()) >= tile and int(step.max()) <= tile + 2 * (cell - tile)


def test_grid_tiles_are_the_crops_at_their_origins():
    x = rand(3, 3, 32, 32, seed=5)
    grid = patches.grid_tiles(x, generator=gen(1))
    assert patches.default_tile(32) == 8 and grid.tiles.shape == (3, 9, 3, 8, 8)
    check_tile_layout(grid.origins, 8, 10, 32)
    for n in range(3):
        for k in range(9):
            r, c = grid.origins[n, k].tolist()
            assert torch.equal(grid.tiles[n, k], x[n, :, r:r + 8, c:c + 8])


def test_tiles_reassemble_into_the_image():
    x = rand(2, 3, 40, 40, seed=6)
    grid = patches.grid_tiles(x, tile=10, generator=gen(2))
    canvas = torch.zeros_like(x)
    covered = torch.zeros(2, 1, 40, 40, dtype=torch.bool)
    for n in range(2):
        for k in range(9):
            r, c = grid.origins[n, k].tolist()
            canvas[n, :, r:r + 10, c:c + 10] = grid.tiles[n, k]
            covered[n, :, r:r + 10, c:c + 10] = True
    assert int(covered.sum()) == 2 * 9 * 100     # disjoint tiles
    assert torch.equal(canvas * covered, x * covered)


def test_grid_tiles_reject_a_tile_larger_than_its_cell():
    with pytest.raises(ValueError, match="does not fit"):
        patches.grid_tiles(rand(1, 3, 32, 32), tile=11)


def brute_hamming(perms):
    rows = perms.tolist()
    d = [sum(a != b for a, b in zip(rows[i], rows[j]))
         for i in range(len(rows)) for j in range(i + 1, len(rows))]
    return min(d), sum(d) / len(d)


@pytest.mark.parametrize("criterion", ["mean", "min"])
def test_permutation_set_is_distinct_deterministic_and_reports_its_hamming_distance(criterion):
    perms = jigsaw.permutation_set(24, seed=3, criterion=criterion)
    assert perms.shape == (24, 9)
    assert all(sorted(p) == list(range(9)) for p in perms.tolist())
    assert len({tuple(p) for p in perms.tolist()}) == 24
    assert torch.equal(perms, jigsaw.permutation_set(24, seed=3, criterion=criterion))
    low, mean = jigsaw.hamming_stats(perms)
    b_low, b_mean = brute_hamming(perms)
    assert low == b_low and mean == pytest.approx(b_mean)
    assert sum(a != b for a, b in zip(perms[0].tolist(), perms[1].tolist())) == 9  # greedy step 1
    if criterion == "min":
        assert low >= 7


def test_greedy_picks_maximise_the_average_distance():
    perms = jigsaw.permutation_set(6, seed=0)
    rows = perms.tolist()
    # Step 3 picked a permutation at the largest possible summed distance to the first two (18).
    assert sum(sum(a != b for a, b in zip(rows[2], rows[i])) for i in range(2)) == 18
    with pytest.raises(ValueError, match="criterion"):
        jigsaw.permutation_set(5, criterion="max")


def test_shuffle_unshuffle_round_trip():
    perms = jigsaw.permutation_set(10, seed=2)
    tiles = rand(4, 9, 3, 2, 2, seed=7)
    labels = torch.tensor([0, 3, 9, 3])
    shuffled = jigsaw.shuffle_tiles(tiles, perms, labels)
    for n in range(4):
        for i in range(9):
            assert torch.equal(shuffled[n, i], tiles[n, perms[labels[n], i]])
    assert torch.equal(jigsaw.unshuffle(shuffled, perms, labels), tiles)
    normed = jigsaw.normalise_tiles(shuffled)
    assert torch.allclose(normed.mean(dim=(-3, -2, -1)), torch.zeros(4, 9, dtype=torch.float64),
                          atol=1e-9)


def test_relative_patch_labels_match_the_geometry():
    x = rand(64, 3, 32, 32, seed=8)
    out = patches.relative_patches(x, generator=gen(3))
    assert out.centre.shape == out.neighbour.shape == (64, 3, 8, 8)
    assert set(out.label.tolist()) == set(range(8))
    for n in range(64):
        (cr, cc), (nr, nc) = out.origins[n].tolist()
        assert torch.equal(out.centre[n], x[n, :, cr:cr + 8, cc:cc + 8])
        assert torch.equal(out.neighbour[n], x[n, :, nr:nr + 8, nc:nc + 8])
        cell = patches.NEIGHBOURS[int(out.label[n])]
        dr, dc = cell // 3 - 1, cell % 3 - 1
        # Same row/column: off by the jitter only (<= 2 px); adjacent: a tile and a gap (8-12 px).
        for delta, d in ((nr - cr, dr), (nc - cc, dc)):
            assert (abs(delta) <= 2) if d == 0 else (8 <= d * delta <= 12)


@pytest.mark.parametrize("device", DEVICES)
def test_random_ops_depend_only_on_the_generator(device):
    x = rand(5, 3, 32, 32, seed=9)
    perms = jigsaw.permutation_set(8, seed=1)
    ref_tiles, ref_labels = jigsaw.jigsaw_batch(x, perms, generator=gen(4))
    tiles, labels = jigsaw.jigsaw_batch(x.to(device), perms, generator=gen(4))
    assert torch.equal(tiles.cpu(), ref_tiles) and torch.equal(labels.cpu(), ref_labels)
    a = patches.relative_patches(x, generator=gen(5))
    b = patches.relative_patches(x.to(device), generator=gen(5))
    assert torch.equal(a.label, b.label.cpu()) and torch.equal(a.neighbour, b.neighbour.cpu())
    m1 = masks.random_patch_mask(5, 64, generator=gen(6))
    m2 = masks.random_patch_mask(5, 64, generator=gen(6), device=device)
    assert torch.equal(m1.mask, m2.mask.cpu()) and torch.equal(m1.ids_keep, m2.ids_keep.cpu())


# --------------------------------------------------------------------------------------------
# CPC grid, patchify


@pytest.mark.parametrize("size,patch", [(32, 8), (64, 16), (96, 24)])
def test_cpc_grid_is_seven_by_seven_half_overlapping(size, patch):
    x = rand(2, 3, size, size, seed=10)
    grid = patches.cpc_grid(x)
    assert grid.shape == (2, 7, 7, 3, patch, patch)
    stride = patch // 2
    for i, j in ((0, 0), (3, 5), (6, 6)):
        window = x[:, :, i * stride:i * stride + patch, j * stride:j * stride + patch]
        assert torch.equal(grid[:, i, j], window)
    with pytest.raises(ValueError, match="square"):
        patches.cpc_grid(x[:, :, :, :-1])


def test_patchify_round_trip_and_layout():
    x = rand(2, 3, 8, 12, seed=11)
    p = patches.patchify(x, 4)
    assert p.shape == (2, 6, 48)
    # patch 4 is grid row 1, column 1; flattened as (row, column, channel).
    assert torch.equal(p[:, 4], x[:, :, 4:8, 4:8].permute(0, 2, 3, 1).reshape(2, 48))
    assert torch.equal(patches.unpatchify(p, 4, 8, 12), x)
    with pytest.raises(ValueError, match="multiple"):
        patches.patchify(x, 5)


# --------------------------------------------------------------------------------------------
# Masks


def test_central_block_mask():
    m = masks.central_block_mask(2, 32, 32)
    assert m.shape == (2, 1, 32, 32) and m.dtype == torch.bool
    assert int(m[0].sum()) == 256 and bool(m[:, :, 8:24, 8:24].all())


def test_random_block_mask_counts():
    m = masks.random_block_mask(200, 32, 32, generator=gen(7))
    area = m.sum(dim=(1, 2, 3))
    assert int(area.min()) >= 64 and int(area.max()) <= 256       # 4 blocks of 8 x 8, may overlap
    assert int(area.max()) == 256                                  # some sample has no overlap
    assert torch.equal(m, masks.random_block_mask(200, 32, 32, generator=gen(7)))
    for n in range(5):                                              # a union of 8 x 8 squares
        rows = torch.nonzero(m[n, 0].any(dim=1)).flatten()
        assert len(rows) >= 8


@pytest.mark.parametrize("length,ratio", [(64, 0.75), (49, 0.75), (16, 0.5)])
def test_random_patch_mask_matches_mae(length, ratio):
    pm = masks.random_patch_mask(6, length, ratio, generator=gen(8))
    masked = round(ratio * length)
    assert torch.equal(pm.mask.sum(dim=1), torch.full((6,), float(masked)))
    assert pm.ids_keep.shape == (6, length - masked)
    assert torch.equal(pm.mask.gather(1, pm.ids_keep), torch.zeros(6, length - masked))
    tokens = rand(6, length, 5, seed=12)
    visible = masks.keep_tokens(tokens, pm.ids_keep)
    # MAE's decoder: append mask tokens, unshuffle with ids_restore -> visible ones in place.
    filled = torch.cat([visible, torch.zeros(6, masked, 5, dtype=tokens.dtype)], dim=1)
    restored = filled.gather(1, pm.ids_restore[..., None].expand(-1, -1, 5))
    keep = (pm.mask == 0)[..., None]
    assert torch.equal(restored * keep, tokens * keep)
    assert len({tuple(r) for r in pm.mask.tolist()}) > 1               # per-sample masks
    with pytest.raises(ValueError, match="ratio"):
        masks.random_patch_mask(1, 4, 1.0)


# --------------------------------------------------------------------------------------------
# Jigsaw: cross entropy over the permutation index


def test_jigsaw_cross_entropy_over_permutation_index_by_hand():
    perms = jigsaw.permutation_set(12, seed=1)
    x = rand(4, 3, 32, 32, seed=12)
    shuffled, labels = jigsaw.jigsaw_batch(x, perms, generator=torch.Generator().manual_seed(2))
    logits = rand(4, 12, seed=13)
    expected = sum(math.log(sum(math.exp(float(v)) for v in logits[n]))
                   - float(logits[n, labels[n]]) for n in range(4)) / 4
    assert float(F.cross_entropy(logits, labels)) == pytest.approx(expected, abs=1e-12)
    tiles = patches.grid_tiles(x, generator=torch.Generator().manual_seed(2)).tiles
    for n in range(4):   # the label names the permutation that was applied
        order = perms[labels[n]].tolist()
        for i in range(9):
            assert torch.equal(shuffled[n, i], tiles[n, order[i]])
