"""Every constant that is part of the bitstream format, named in one place.

Changing any value here changes the bytes rdvq writes or how it reads them, so files written
before would no longer decode: that takes a new container :data:`VERSION` (older files are then
refused with ``UnsupportedVersionError``) and new golden streams (``tests/test_golden_streams.py``,
``tests/data/legacy``). ``docs/bitstream.md`` describes what each one governs. The modules that use
them import them from here.
"""

from __future__ import annotations

# ---------------------------------------------------------------- container (rdvq.codec.container)
MAGIC = b"RDVQ"
VERSION = 2
FINGERPRINT_BYTES = 8  # leading bytes of the model's SHA-256 fingerprint
MAX_SIDE = 1 << 20  # largest image side a header may declare
MAX_VARINT_BYTES = 9  # a varint carries at most 63 bits

# ---------------------------------------------------------------- probability engine (rdvq.coding)
PRECISION = 24  # bits of every integer frequency table (constriction's categorical precision)
BUCKETS_PER_NAT = 64  # log-probabilities are bucketed at 1/64 nat ...
NUM_BUCKETS = 2048  # ... into this many buckets of the weight table
WEIGHT_BITS = 30  # the weight table is round(2^30 exp(-q / 64))
CODEBOOK_BITS = 12  # fixed-point codebooks: the largest |component| maps to at most 2^12
DIM_WEIGHT_BITS = 12  # fixed-point per-dimension weights of diagonal Gaussians
CODING_BLOCK_CELLS = 1 << 22  # with the tail floor, positions are coded in blocks of max(1, 2^22 // K)
LEAF_SIZE = 64  # most codewords per cluster of a searched tail floor (the search width's unit)
COMPRESSAI_PRECISION = 16  # CompressAI's tables (hyper-latents, scalar latents) are 16-bit CDFs

# ---------------------------------------------------------------- hyper-synthesis tiles (rdvq.hyper.tiles)
HYPER_TILE = 16  # hyper-latent cells per side of a coding tile (HyperVQ and the scalar codec)
HYPER_HALO = 3  # hyper-latent cells of context around a tile

# ---------------------------------------------------------------- masked transformer (rdvq.entropy.slices)
MAX_TILE_CELLS = 64  # cells of one slice pattern
MAX_GROUP_TOKENS = 16384  # tokens of one group of equally sized windows
MAX_WINDOW = 32  # window side, in tokens of the coarsest branch

# ---------------------------------------------------------------- scalar codec (rdvq.sq)
SQ_STRIDE = 64  # g_a (16) times h_a (4): padded image sides are multiples of this
