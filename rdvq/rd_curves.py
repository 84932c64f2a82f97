"""Rate-distortion curves in CompressAI's results layout, the published curves rdvq ships, and
Bjøntegaard deltas between curves.

A curve is one JSON document ``{"name", "description", "results": {"bpp": [...], "psnr-rgb": [...],
...}}`` with one list entry per RD point, the layout CompressAI writes and reads, so rdvq's results,
CompressAI's published files and any other tool's files in that layout compare with each other.
BD-rate and BD-metric come from the ``bjontegaard`` package; the interpolation method is always
named with the result because different methods give noticeably different numbers on the same
curves. A delta that cannot be computed (too few points, a curve that is not monotone, no overlap)
is reported with its reason, never as a number.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from rdvq.atomic import atomic_write_bytes
from rdvq.errors import ConfigError

BDMethod = Literal["akima", "pchip", "cubic"]
BD_METHODS: tuple[str, ...] = ("akima", "pchip", "cubic")
DEFAULT_BD_METHOD: BDMethod = "akima"  # the bjontegaard authors found it the most accurate and stable
_MIN_POINTS = {"akima": 2, "pchip": 2, "cubic": 4}  # a cubic fit is undetermined below four points


@dataclass(frozen=True)
class Metric:
    key: str  # the key in ``results``
    label: str  # axis label
    higher_is_better: bool


# Quality metrics a curve may carry, in plotting order. MS-SSIM in dB is derived from the mean
# MS-SSIM of each point (-10 log10(1 - mean)), as CompressAI plots it, so it compares with
# published curves that only list ``ms-ssim-rgb``.
METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("psnr-rgb", "PSNR RGB (dB)", True),
        Metric("ms-ssim-db", "MS-SSIM RGB (dB)", True),
        Metric("lpips-alex", "LPIPS-alex", False),
        Metric("lpips-vgg", "LPIPS-VGG", False),
        Metric("dists", "DISTS", False),
        Metric("fid", "FID (patches)", False),
        Metric("kid", "KID (patches)", False),
    )
}
_DERIVED = {"ms-ssim-db": "ms-ssim-rgb"}


@dataclass
class RDCurve:
    name: str
    description: str
    results: dict[str, list[float]]  # "bpp" and metric lists, one entry per RD point
    meta: dict[str, Any] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)  # what made each point (rdvq's own files)

    def __len__(self) -> int:
        return len(self.results["bpp"])

    def values(self, metric: str) -> list[float] | None:
        """The metric's values (derived where :data:`METRICS` says so), or None when the curve lacks it."""
        if metric in self.results:
            return list(self.results[metric])
        source = _DERIVED.get(metric)
        if source in self.results:
            return [-10.0 * math.log10(1.0 - v) if v < 1.0 else math.inf for v in self.results[source]]
        return None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.meta:
            document["meta"] = self.meta
        document["results"] = self.results
        if self.points:
            document["points"] = self.points
        return document

    @classmethod
    def from_json(cls, document: Any, source: str) -> "RDCurve":
        """A curve from a parsed results document, checked for the layout (:class:`ConfigError`)."""
        if not isinstance(document, dict) or not isinstance(document.get("results"), dict):
            raise ConfigError(f"{source} is not a results file in CompressAI's layout (no 'results' object)")
        results = document["results"]
        bpp = results.get("bpp")
        if not isinstance(bpp, list) or not bpp:
            raise ConfigError(f"{source}: results has no 'bpp' list")
        clean: dict[str, list[float]] = {}
        for key, values in results.items():
            if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
                raise ConfigError(f"{source}: results[{key!r}] is not a list of numbers")
            if len(values) != len(bpp):
                raise ConfigError(f"{source}: results[{key!r}] has {len(values)} entries, 'bpp' has {len(bpp)}")
            clean[key] = [float(v) for v in values]
        return cls(
            name=str(document.get("name") or Path(source).stem),
            description=str(document.get("description", "")),
            results=clean,
            meta=dict(document.get("meta") or {}),
            points=list(document.get("points") or []),
        )


def read_curve(path: str | os.PathLike) -> RDCurve:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"results file not found: {path}")
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read results file {path}: {type(exc).__name__}") from None
    return RDCurve.from_json(document, str(path))


def write_curve(path: str | os.PathLike, curve: RDCurve) -> None:
    atomic_write_bytes(Path(path), (json.dumps(curve.to_json(), indent=2) + "\n").encode())


# ---------------------------------------------------------------------- published reference curves
_REFERENCE_FILE = "compressai_kodak.json"
_PERCEPTUAL_FILE = "perceptual_anchors.json"
DATASETS = ("kodak", "clic2020", "div2k")  # the sets published curves report
# The curves plotted and used as anchors by default on Kodak: CompressAI's MSE-optimized zoo from
# the hyperprior to cheng2020, the VTM intra anchor of the field, and the generative codecs the
# seeds compare with (MS-ILLM, StableCodec, RDVQ's own curve, read off its figure).
DEFAULT_REFERENCES = (
    "bmshj2018-hyperprior_mse", "mbt2018-mean_mse", "mbt2018_mse", "cheng2020-anchor_mse", "vtm",
    "ms-illm", "stablecodec", "rdvq-paper",
)


def reference_data() -> dict[str, Any]:
    """The shipped data file of CompressAI's published Kodak results, with its citation."""
    return json.loads(files("rdvq.data").joinpath(_REFERENCE_FILE).read_text())


def perceptual_anchor_data() -> dict[str, Any]:
    """The shipped curves of generative codecs (``rdvq/data/perceptual_anchors.json``), keyed
    ``<codec>/<dataset>``, each with its source and whether it is exact or read off a figure."""
    return json.loads(files("rdvq.data").joinpath(_PERCEPTUAL_FILE).read_text())


def reference_keys(dataset: str = "kodak") -> list[str]:
    """Every reference key with a curve on ``dataset``."""
    perceptual = sorted({key.split("/")[0] for key in perceptual_anchor_data()["curves"] if key.endswith("/" + dataset)})
    return (list(reference_data()["curves"]) if dataset == "kodak" else []) + perceptual


def reference_curves(keys: list[str] | tuple[str, ...] = DEFAULT_REFERENCES, dataset: str = "kodak") -> list[RDCurve]:
    """Published curves by key on ``dataset``: CompressAI's Kodak results
    (``rdvq/data/compressai_kodak.json``) and the generative codecs' curves; a curve read off a
    figure says "approximate" in its name, so every plot and table shows it."""
    available = reference_keys(dataset)
    unknown = [key for key in keys if key not in available]
    if unknown:
        raise ConfigError(f"unknown reference curve {unknown[0]!r} on {dataset}; available: {', '.join(available)}")
    compressai, perceptual = reference_data(), perceptual_anchor_data()["curves"]
    curves = []
    for key in keys:
        if f"{key}/{dataset}" in perceptual:
            entry = perceptual[f"{key}/{dataset}"]
            source = entry["source"]
            where = f"{source['repository']}/blob/{source.get('commit', 'main')}/{source['file']}"
            meta = {"source": where, "dataset": dataset, "exact": entry["exact"], "note": source["note"]}
            curves.append(RDCurve(entry["name"], f"{entry['name']} on {dataset}, published", entry["results"], meta))
            continue
        entry, source = compressai["curves"][key], compressai["source"]
        label = f"CompressAI {entry['name']}" if entry["optimized_for"] else f"{entry['name']} (CompressAI)"
        if entry["optimized_for"] == "ms-ssim":
            label += " [MS-SSIM]"
        meta = {"source": f"{source['repository']}/blob/{source['commit']}/{entry['file']}", "dataset": compressai["dataset"]}
        curves.append(RDCurve(label, entry["description"], entry["results"], meta))
    return curves


# ---------------------------------------------------------------------- Bjøntegaard deltas
@dataclass
class BDResult:
    test: str
    anchor: str
    metric: str
    method: str
    bd_rate: float | None  # percent at equal quality; negative: the test needs fewer bits
    bd_metric: float | None  # mean metric difference (test - anchor) at equal rate, in the metric's units
    overlap: float | None  # shared fraction of the quality range (BD-rate's integration interval)
    note: str = ""  # why a value is missing, or a warning about little overlap

    def row(self) -> dict[str, Any]:
        return {
            "test": self.test, "anchor": self.anchor, "metric": self.metric, "method": self.method,
            "bd_rate_percent": self.bd_rate, "bd_metric": self.bd_metric, "overlap": self.overlap, "note": self.note,
        }


def _sorted_monotone(curve: RDCurve, metric: Metric) -> tuple[list[float], list[float]] | str:
    """(bpp, signed quality) sorted by rate, quality signed so higher is better; or why not usable."""
    values = curve.values(metric.key)
    if values is None:
        return f"{curve.name} has no {metric.key}"
    pairs = sorted(zip(curve.results["bpp"], values))
    if any(not (math.isfinite(r) and math.isfinite(q)) or r <= 0 for r, q in pairs):
        return f"{curve.name} has a non-finite value or a rate <= 0"
    rates = [r for r, _ in pairs]
    quality = [q if metric.higher_is_better else -q for _, q in pairs]
    if any(b <= a for a, b in zip(rates, rates[1:])) or any(b <= a for a, b in zip(quality, quality[1:])):
        return f"{curve.name} is not monotone in bpp and {metric.key}"
    return rates, quality


def _overlap(a: list[float], b: list[float]) -> float:
    union = max(max(a), max(b)) - min(min(a), min(b))
    shared = min(max(a), max(b)) - max(min(a), min(b))
    return max(shared, 0.0) / union if union > 0 else 0.0


def bd(test: RDCurve, anchor: RDCurve, metric: str, method: BDMethod = DEFAULT_BD_METHOD) -> BDResult:
    """BD-rate and BD-metric of ``test`` against ``anchor`` (unequal point counts allowed)."""
    if method not in BD_METHODS:
        raise ConfigError(f"BD interpolation method must be one of {', '.join(BD_METHODS)}, got {method!r}")
    spec = METRICS[metric]
    result = BDResult(test.name, anchor.name, metric, method, None, None, None)
    curves = [_sorted_monotone(c, spec) for c in (test, anchor)]
    reason = next((c for c in curves if isinstance(c, str)), None)
    if reason is None and min(len(test), len(anchor)) < _MIN_POINTS[method]:
        reason = f"{method} interpolation needs at least {_MIN_POINTS[method]} points per curve"
    if reason is not None:
        result.note = reason
        return result
    (rate_t, quality_t), (rate_a, quality_a) = curves
    result.overlap = _overlap(quality_t, quality_a)
    log_rate_overlap = _overlap([math.log10(r) for r in rate_t], [math.log10(r) for r in rate_a])
    import bjontegaard  # imports matplotlib: only when a delta is computed

    with warnings.catch_warnings():  # overlap is reported in the result instead of warned about
        warnings.simplefilter("ignore")
        if result.overlap > 0:
            result.bd_rate = float(bjontegaard.bd_rate(
                rate_a, quality_a, rate_t, quality_t, method, require_matching_points=False, min_overlap=0))
        if log_rate_overlap > 0:
            delta = float(bjontegaard.bd_psnr(
                rate_a, quality_a, rate_t, quality_t, method, require_matching_points=False, min_overlap=0))
            result.bd_metric = delta if spec.higher_is_better else -delta
    if result.bd_rate is None and result.bd_metric is None:
        result.note = "the curves do not overlap"
    elif result.bd_rate is None:
        result.note = f"no shared {metric} range: BD-rate undefined"
    elif result.overlap < 0.75:
        result.note = f"curves share only {100 * result.overlap:.0f}% of their {metric} range"
    return result


def bd_table(tests: list[RDCurve], anchors: list[RDCurve], method: BDMethod = DEFAULT_BD_METHOD) -> list[BDResult]:
    """Every test curve against every anchor, for each metric both carry."""
    results = []
    for test in tests:
        for anchor in anchors:
            for metric in METRICS:
                if test.values(metric) is not None and anchor.values(metric) is not None:
                    results.append(bd(test, anchor, metric, method))
    return results
