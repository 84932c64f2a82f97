"""The candidate search (searched tail floor): the CPU kernel gives the reference's integers, the
reference visits what its specification says, a width of K is the exact tail floor, and files
made with a search width round trip, record it, and are checked on the way in."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rdvq.codec import container
from rdvq.coding import IndexDecoder, IndexEncoder, ProbabilityEngine
from rdvq.coding import cpu_kernel as C
from rdvq.coding import probability as P
from rdvq.coding.candidate_search import LEAF_SIZE, CodebookClusters, box_distances, searched_table, visited_mask
from rdvq.encode_options import EncodeOptions
from rdvq.errors import ConfigError, InvalidHeaderError
from rdvq.sample_photos import sample_photo_paths
from test_codec import assert_round_trip, make_codec, rdvq
from test_cpu_kernel import _gaussian


def _kernel(params: P.GaussianParameters, clusters: CodebookClusters, keep: int, width: int):
    weights = None if params.dim_weights is None else params.dim_weights.double().numpy()
    return C.gaussian_compact_searched(params.mean.double().numpy(), params.scale.numpy(), weights, clusters, keep, width)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(2, 400),
    dim=st.sampled_from([1, 3, 8]),
    rows=st.integers(1, 6),
    diagonal=st.booleans(),
    sharpness=st.sampled_from([1e-4, 0.05, 0.5, 10.0]),
    cluster_size=st.sampled_from([1, 7, LEAF_SIZE]),
    keep=st.integers(1, 60),
    extra=st.integers(0, 300),
    seed=st.integers(0, 2**31 - 1),
)
def test_the_kernel_gives_the_reference_table(size, dim, rows, diagonal, sharpness, cluster_size, keep, extra, seed) -> None:
    params, codebook = _gaussian(rows, size, dim, diagonal, sharpness, clustered=seed % 2 == 0, seed=seed)
    keep = min(keep, size - 1) if size > 1 else 1
    width = min(keep + extra, size)
    clusters = CodebookClusters(codebook.values.numpy(), cluster_size)
    reference = searched_table(params, codebook, clusters, keep, width)
    candidates, freqs = _kernel(params, clusters, keep, width)
    assert np.array_equal(candidates, reference.candidates.numpy())
    assert np.array_equal(freqs, reference.freqs.numpy())
    assert torch.equal(reference.full().sum(-1), torch.full((rows,), P.TOTAL))
    assert (reference.candidates.diff(dim=-1) > 0).all()


def test_the_visited_codewords_are_the_shortest_prefix_of_the_box_ranking() -> None:
    params, codebook = _gaussian(20, 300, 4, False, 0.5, clustered=True, seed=3)
    clusters = CodebookClusters(codebook.values.numpy(), 16)
    width = 70
    visited = visited_mask(params, clusters, width)
    bounds = box_distances(params, clusters)
    sizes = np.diff(clusters.offsets)
    for row in range(20):  # naive: rank by (bound, cluster number), add clusters until width is reached
        expected, held = np.zeros(codebook.size, dtype=bool), 0
        for c in sorted(range(clusters.num_clusters), key=lambda c: (float(bounds[row, c]), c)):
            if held >= width:
                break
            expected[clusters.order[clusters.offsets[c] : clusters.offsets[c + 1]]] = True
            held += sizes[c]
        assert np.array_equal(visited[row].numpy(), expected)
    # the box distance is a lower bound of every member's distance
    distances = P.integer_distances(params, codebook).double()
    for c in range(clusters.num_clusters):
        members = torch.from_numpy(clusters.order[clusters.offsets[c] : clusters.offsets[c + 1]])
        assert (bounds[:, c : c + 1] <= distances[:, members]).all()


def test_equal_box_bounds_in_different_groups_rank_by_cluster_number() -> None:
    # 64 distinct 2-D codewords, each repeated four times at indices 64 apart: with one codeword per
    # cluster, every bound is shared by four clusters in different groups of the kernel's ranking,
    # and the width cuts through such ties, so only the cluster numbers decide what is visited.
    g = torch.Generator().manual_seed(5)
    distinct = torch.randn(64, 2, generator=g)
    codebook = P.FixedPointCodebook.from_codewords(distinct.repeat(4, 1))
    mean = distinct[torch.randint(0, 64, (12,), generator=g)] + 0.3 * torch.randn(12, 2, generator=g)
    params = P.GaussianParameters.from_float(mean, torch.full((12,), 0.4), codebook)
    clusters = CodebookClusters(codebook.values.numpy(), 1)
    for keep, width in ((1, 2), (3, 5), (6, 10), (20, 33)):
        reference = searched_table(params, codebook, clusters, keep, width)
        candidates, freqs = _kernel(params, clusters, keep, width)
        assert np.array_equal(candidates, reference.candidates.numpy())
        assert np.array_equal(freqs, reference.freqs.numpy())


def test_a_width_of_the_whole_codebook_is_the_exact_tail_floor() -> None:
    params, codebook = _gaussian(30, 500, 8, True, 0.05, clustered=True, seed=4)
    exact = P.frequency_table(P.gaussian_buckets(params, codebook), 40)
    clusters = CodebookClusters.of(codebook)
    searched = searched_table(params, codebook, clusters, 40, 500)
    assert torch.equal(searched.candidates, exact.candidates) and torch.equal(searched.freqs, exact.freqs)
    assert np.array_equal(_kernel(params, clusters, 40, 500)[1], exact.freqs.numpy())


def test_engines_write_the_same_searched_stream_and_decode_it() -> None:
    params, codebook = _gaussian(700, 5000, 8, False, 0.05, clustered=True, seed=6)
    symbols = torch.randint(0, 5000, (700,), generator=torch.Generator().manual_seed(7))
    streams = {}
    for name in ("torch", "numba"):
        engine = ProbabilityEngine(name, top_k=32, search_width=256)
        encoder = IndexEncoder()
        engine.encode_gaussian(encoder, symbols, params, codebook)
        streams[name] = encoder.finish()
        assert torch.equal(engine.decode_gaussian(IndexDecoder(streams[name]), params, codebook), symbols)
    assert streams["numba"] == streams["torch"]
    exact = IndexEncoder()
    ProbabilityEngine("numba", top_k=32).encode_gaussian(exact, symbols, params, codebook)
    assert exact.finish() != streams["numba"]  # the width is part of the format: it changes the tables


def test_search_width_needs_the_tail_floor_and_enough_codewords() -> None:
    with pytest.raises(ConfigError, match="top_k"):
        EncodeOptions(search_width=64)
    with pytest.raises(ConfigError, match="at least top_k"):
        EncodeOptions(top_k=64, search_width=32)
    with pytest.raises(ConfigError, match="--search-width"):
        make_codec("single", "transformer").compress(torch.rand(3, 16, 16), EncodeOptions(top_k=4, search_width=8))


def test_a_hypervq_file_with_a_search_width_round_trips_and_records_it() -> None:
    codec = make_codec("multi", "hypervq")
    image = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(8))
    data = assert_round_trip(codec, image, EncodeOptions(top_k=4, search_width=12))
    assert container.unpack(data).parameters == (4, 12)
    # a width of at least the codebook size is the exact tail floor, written as before
    exact = assert_round_trip(codec, image, EncodeOptions(top_k=4))
    assert codec.compress(image, EncodeOptions(top_k=4, search_width=48)) == exact
    assert container.unpack(exact).parameters == (4,)


@pytest.mark.parametrize("parameters", [(0, 12), (4, 3), (4, 48), (4, 1 << 40)])
def test_crafted_search_widths_are_refused(parameters) -> None:
    codec = make_codec("multi", "hypervq")
    valid = codec.compress(torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(9)), EncodeOptions(top_k=4, search_width=12))
    crafted = container.pack(dataclasses.replace(container.unpack(valid), parameters=parameters))
    with pytest.raises(InvalidHeaderError, match="search width"):
        codec.decompress(crafted)


def test_the_cli_codes_with_a_search_width(stage_b_checkpoint: Path, tmp_path: Path) -> None:
    source = str(sample_photo_paths("val")[0])
    ckpt = str(stage_b_checkpoint)
    done = rdvq("compress", source, "--ckpt", ckpt, "--out-dir", str(tmp_path / "files"), "--recon-dir", str(tmp_path / "encoder"),
                "--top-k", "4", "--search-width", "12")
    assert done.returncode == 0, done.stderr
    file = next((tmp_path / "files").glob("*.rdvq"))
    assert container.unpack(file.read_bytes()).parameters == (4, 12)
    done = rdvq("decompress", str(file), "--ckpt", ckpt, "--out-dir", str(tmp_path / "decoder"))
    assert done.returncode == 0, done.stderr
    name = Path(source).with_suffix(".png").name
    assert (tmp_path / "decoder" / name).read_bytes() == (tmp_path / "encoder" / name).read_bytes()
    done = rdvq("compress", source, "--ckpt", ckpt, "--out-dir", str(tmp_path / "bad"), "--search-width", "12")
    assert done.returncode != 0 and "Traceback" not in done.stderr and "top_k" in done.stderr
