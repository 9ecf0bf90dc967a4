"""Patch geometry on (N, C, H, W) batches: jittered tile grids (relative patch location, jigsaw),
CPC's overlapping patch grid, and ViT patchify / unpatchify (MAE).

Grids for small images. Doersch et al. 2015 use 96 px patches with 48 px gaps and up to 7 px of
jitter; Noroozi & Favaro 2016 cut a 225 px crop into 3 x 3 cells of 75 px and take a random 64 px
tile in each. At 32-96 px we follow the jigsaw layout for both: the grid of ``3 x cell`` pixels
(``cell = min(H, W) // 3``) sits at a random offset inside the image and each tile of side ``tile
= cell * 27 // 32`` (about 64/75) has its own random position in its cell, so neighbouring tiles
are separated by a random gap of 0 to ``2 (cell - tile)`` pixels. At 32 px: cell 10, tile 8,
jitter 0-2 px per tile, gaps 0-4 px (a larger gap would leave tiles too small to carry texture).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["TileGrid", "default_tile", "grid_tiles", "crop_tiles", "RelativePatches",
           "relative_patches", "NEIGHBOURS", "cpc_grid", "patchify", "unpatchify"]

# Relative-location label k -> cell of the 3 x 3 grid (row-major, centre 4 left out).
NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)


class TileGrid(NamedTuple):
    """Tiles (N, G*G, C, t, t) in row-major cell order and their top-left pixels (N, G*G, 2)
    as (row, column) in image coordinates."""
    tiles: torch.Tensor
    origins: torch.Tensor


def _check_images(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} needs an (N, C, H, W) batch, got shape {tuple(x.shape)}")


def default_tile(size: int, grid: int = 3) -> int:
    """Tile side for an image side ``size``: ``(size // grid) * 27 // 32`` (at least 1)."""
    return max(1, (size // grid) * 27 // 32)


def _grid_origins(n: int, h: int, w: int, grid: int, tile: int, generator) -> torch.Tensor:
    cell = min(h, w) // grid
    if tile > cell or tile < 1:
        raise ValueError(f"tile {tile} does not fit a {grid} x {grid} grid of {cell} px cells "
                         f"in a {h} x {w} image")
    span = grid * cell
    offset = torch.stack([torch.randint(0, h - span + 1, (n,), generator=generator),
                          torch.randint(0, w - span + 1, (n,), generator=generator)], dim=1)
    jitter = torch.randint(0, cell - tile + 1, (n, grid * grid, 2), generator=generator)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    base = torch.stack([rows.flatten(), cols.flatten()], dim=1) * cell
    return offset[:, None, :] + base[None] + jitter


def crop_tiles(x: torch.Tensor, origins: torch.Tensor, tile: int) -> torch.Tensor:
    """Square crops of side ``tile`` at ``origins`` (N, K, 2) (row, col): (N, K, C, tile, tile)."""
    _check_images(x, "crop_tiles")
    origins = origins.to(x.device)
    offsets = torch.arange(tile, device=x.device)
    rows = origins[..., 0, None] + offsets          # (N, K, t)
    cols = origins[..., 1, None] + offsets
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None, None]
    crops = x[batch, :, rows[..., :, None], cols[..., None, :]]   # (N, K, t, t, C)
    return crops.permute(0, 1, 4, 2, 3)


def grid_tiles(x: torch.Tensor, grid: int = 3, tile: int | None = None,
               generator: torch.Generator | None = None) -> TileGrid:
    """All ``grid x grid`` jittered tiles of each image (the layout in the module docstring)."""
    _check_images(x, "grid_tiles")
    n, _, h, w = x.shape
    tile = default_tile(min(h, w), grid) if tile is None else tile
    origins = _grid_origins(n, h, w, grid, tile, generator)
    return TileGrid(crop_tiles(x, origins, tile), origins)


class RelativePatches(NamedTuple):
    """Centre and neighbour tiles (N, C, t, t), label (N,) in 0..7 indexing :data:`NEIGHBOURS`,
    and both tiles' top-left pixels (N, 2, 2) (centre first)."""
    centre: torch.Tensor
    neighbour: torch.Tensor
    label: torch.Tensor
    origins: torch.Tensor


def relative_patches(x: torch.Tensor, tile: int | None = None,
                     generator: torch.Generator | None = None) -> RelativePatches:
    """Relative patch location (Doersch et al. 2015): the centre tile of the jittered 3 x 3 grid
    and one of its 8 neighbours chosen uniformly; the label is the neighbour's index in
    :data:`NEIGHBOURS` (0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5-7 bottom row).
    Chromatic-aberration countermeasures (colour dropping) are the caller's augmentation."""
    _check_images(x, "relative_patches")
    n, _, h, w = x.shape
    tile = default_tile(min(h, w)) if tile is None else tile
    origins = _grid_origins(n, h, w, 3, tile, generator)
    label = torch.randint(0, len(NEIGHBOURS), (n,), generator=generator)
    cells = torch.stack([torch.full((n,), 4), torch.tensor(NEIGHBOURS)[label]], dim=1)
    pair = origins.gather(1, cells[..., None].expand(n, 2, 2))
    crops = crop_tiles(x, pair, tile)
    return RelativePatches(crops[:, 0], crops[:, 1], label.to(x.device), pair)


def cpc_grid(x: torch.Tensor, patch: int | None = None, stride: int | None = None) -> torch.Tensor:
    """CPC's overlapping patch grid (Hénaff et al. 2019): (N, C, H, W) -> (N, G, G, C, p, p).

    CPC cuts an image into a 7 x 7 grid of half-overlapping patches (v1: 64 px patches at stride
    32 of a 256 px image). At small sizes we keep the 7 x 7 half-overlapping layout: ``patch =
    H // 4``, ``stride = patch // 2``, so 32 px -> 8 px patches at stride 4, 64 -> 16 at 8, 96 ->
    24 at 12. Square images only.
    """
    _check_images(x, "cpc_grid")
    h, w = x.shape[-2:]
    if h != w:
        raise ValueError(f"cpc_grid needs square images, got {h} x {w}")
    patch = h // 4 if patch is None else patch
    stride = max(1, patch // 2) if stride is None else stride
    if not 1 <= patch <= h or stride < 1 or (h - patch) % stride:
        raise ValueError(f"patch {patch} at stride {stride} does not tile a {h} px image exactly")
    grid = x.unfold(2, patch, stride).unfold(3, patch, stride)   # (N, C, G, G, p, p)
    return grid.permute(0, 2, 3, 1, 4, 5).contiguous()


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, patch * patch * C), row-major patches, each flattened as (p, p, C)
    like MAE; H and W must be multiples of ``patch``."""
    _check_images(x, "patchify")
    n, c, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"image {h} x {w} is not a multiple of the patch size {patch}")
    gh, gw = h // patch, w // patch
    x = x.reshape(n, c, gh, patch, gw, patch).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, gh * gw, patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, height: int, width: int,
               channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`: (N, L, p*p*C) -> (N, C, height, width)."""
    n, length, dim = patches.shape
    gh, gw = height // patch, width // patch
    if gh * gw != length or dim != patch * patch * channels or height % patch or width % patch:
        raise ValueError(f"patches {tuple(patches.shape)} do not form a {channels} x {height} x "
                         f"{width} image of {patch} px patches")
    x = patches.reshape(n, gh, gw, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(n, channels, height, width)
