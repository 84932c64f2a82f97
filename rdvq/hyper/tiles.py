"""The coding tiles of a hyper-synthesis, shared by HyperVQ and the scalar codec.

Both predict the distribution of their latents from a decoded hyper-latent, four latent positions
per hyper-latent cell along each side. They do it tile by tile: :data:`TILE` x :data:`TILE`
hyper-latent cells, each synthesized together with :data:`HALO` cells of context on every side
(the synthesis sees 2), tiles in raster order. The encoder and the decoder use the same tiles, so
the decoder's memory is bounded by one tile whatever size a file declares, and a stream that cannot
hold the declared size stops at its first tile. The tiles are part of the bitstream format
(``docs/bitstream.md``): another tiling codes the same symbols in another order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rdvq.coding.format import HYPER_HALO as HALO
from rdvq.coding.format import HYPER_TILE as TILE

UPSCALE = 4  # latent positions per hyper-latent cell along each side (two stride-2 layers)


def tile_spans(length: int) -> list[tuple[int, int]]:
    """[start, end) hyper-latent cells of the coding tiles along one axis."""
    return [(start, min(start + TILE, length)) for start in range(0, length, TILE)]


@dataclass(frozen=True)
class HyperTile:
    """One coding tile. ``context``: the hyper-latent cells to synthesize (the tile and its halo);
    ``latents``: the latent positions the tile covers; ``crop``: where those positions sit in the
    synthesis of ``context``, whose size is ``synthesis_size``."""

    context: tuple[slice, slice]
    latents: tuple[slice, slice]
    crop: tuple[slice, slice]
    synthesis_size: tuple[int, int]


def hyper_tiles(hyper_size: tuple[int, int], latent_size: tuple[int, int]) -> list[HyperTile]:
    """The tiles of a hyper-latent of ``hyper_size`` cells predicting latents of ``latent_size``
    (at most :data:`UPSCALE` times the hyper-latent per side), in raster order."""
    rows, cols = hyper_size
    tiles = []
    for r0, r1 in tile_spans(rows):
        for c0, c1 in tile_spans(cols):
            top, bottom = max(0, r0 - HALO), min(rows, r1 + HALO)
            left, right = max(0, c0 - HALO), min(cols, c1 + HALO)
            latent_rows = (UPSCALE * r0, min(UPSCALE * r1, latent_size[0]))
            latent_cols = (UPSCALE * c0, min(UPSCALE * c1, latent_size[1]))
            tiles.append(HyperTile(
                context=(slice(top, bottom), slice(left, right)),
                latents=(slice(*latent_rows), slice(*latent_cols)),
                crop=(slice(latent_rows[0] - UPSCALE * top, latent_rows[1] - UPSCALE * top),
                      slice(latent_cols[0] - UPSCALE * left, latent_cols[1] - UPSCALE * left)),
                synthesis_size=(UPSCALE * (bottom - top), UPSCALE * (right - left)),
            ))
    return tiles


def join_tiles(tiles: list[torch.Tensor], hyper_cols: int) -> torch.Tensor:
    """One tensor from per-tile tensors in raster order (joined on the last two dimensions), for a
    hyper-latent ``hyper_cols`` cells wide."""
    columns = len(tile_spans(hyper_cols))
    rows = [torch.cat(tiles[start : start + columns], -1) for start in range(0, len(tiles), columns)]
    return torch.cat(rows, -2)
