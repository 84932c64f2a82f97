"""``rdvq eval``: rate-distortion curves of trained codecs from real files, with BD-rates and plots.

Every image is compressed to a real file for every checkpoint and encoder setting (the product of
``--slices``, ``--rdo-lambda`` and ``--top-k``), decoded, and checked to equal the encoder's own
reconstruction bit for bit. Rates come from the file sizes. Each RD point is the mean over the
images; points form curves (one per checkpoint when several settings are given, so one model's
rate-control curve is one command; else one across the checkpoints, e.g. a lambda sweep).

Outputs in ``--out-dir``: one results JSON per curve in CompressAI's layout, ``per_image.csv``,
``points.csv`` (the means), ``bd.csv`` (BD-rate and BD-metric against ``--anchor`` files and
CompressAI's published Kodak curves), ``rd_<metric>.png`` for every metric, and the files.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdvq import __version__
from rdvq.checkpointing import read_checkpoint
from rdvq.codec.image_codec import ImageCodec
from rdvq.coding.engine import ENGINES
from rdvq.encode_options import EncodeOptions
from rdvq.errors import ConfigError
from rdvq.evaluation import CURVE_KEYS, Evaluation, PerceptualMetrics, evaluate
from rdvq.perceptual import DEFAULT_PATCH, patch_count
from rdvq.image_io import find_images
from rdvq.plots import plot_rd
from rdvq.rd_curves import BD_METHODS, DATASETS, DEFAULT_BD_METHOD, DEFAULT_REFERENCES, METRICS, BDResult, RDCurve, bd_table
from rdvq.rd_curves import read_curve, reference_curves, reference_keys, write_curve
from rdvq.sample_photos import sample_photo_paths
from rdvq.sweep_manifest import read_manifest

KODAK = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "kodak"  # ../shared/datasets/kodak of the repo
_MEANS = {  # results key -> Evaluation.summary() key
    **CURVE_KEYS, "encoding_time": "encode_seconds", "decoding_time": "decode_seconds", "estimated_bpp": "estimated_bpp",
}


@dataclass
class Source:
    path: Path
    label: str  # how the checkpoint is named in tables and legends
    group: str  # checkpoints of one group form one curve across checkpoints (a sweep manifest is a group)


@dataclass
class Point:
    source: Source
    options: EncodeOptions
    evaluation: Evaluation
    files: Path

    def setting(self) -> str:
        return self.options.label()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rdvq eval",
        description="rate-distortion evaluation on real files: results JSON (CompressAI layout), CSV, BD-rates, RD plots",
    )
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT",
                        help="checkpoints with an entropy model, or sweep manifests (rd_sweep.json)")
    parser.add_argument("--images", help=f"folder of images (default: {KODAK} when present, else the bundled photographs)")
    parser.add_argument("--max-images", type=int, help="only the first N images (sorted by path)")
    parser.add_argument("--out-dir", help="output folder (default: runs/eval-<time>)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out-dir")
    EncodeOptions.add_arguments(parser, sweep=True)
    parser.add_argument("--curves", choices=["auto", "per-checkpoint", "across-checkpoints"], default="auto",
                        help="how points form curves (auto: per checkpoint when several settings are given)")
    parser.add_argument("--name", help="name of the curve (when the command makes a single curve)")
    parser.add_argument("--anchor", nargs="+", default=[], metavar="JSON", help="results files (CompressAI layout) to compare with")
    parser.add_argument("--references", nargs="+", metavar="KEY",
                        help="published curves to compare with (CompressAI's Kodak results, MS-ILLM, StableCodec, "
                             "RDVQ's figure): keys, 'all' or 'none' (default on Kodak: "
                             f"{' '.join(DEFAULT_REFERENCES)}; on CLIC 2020 and DIV2K all of theirs; elsewhere none)")
    parser.add_argument("--reference-set", choices=DATASETS,
                        help="the set the images are, for --references (default: the image folder's name)")
    parser.add_argument("--bd-method", choices=BD_METHODS, default=DEFAULT_BD_METHOD,
                        help=f"Bjontegaard interpolation (default {DEFAULT_BD_METHOD})")
    parser.add_argument("--estimate", action="store_true", help="also record the model's estimated bpp")
    parser.add_argument("--fid-patch", type=int, default=DEFAULT_PATCH,
                        help=f"FID and KID on patches of this size, HiFiC's protocol (default {DEFAULT_PATCH}; "
                             "64 is usual on Kodak, which gives few 256-px patches; 0: off)")
    parser.add_argument("--lpips-vgg", action="store_true",
                        help="also LPIPS-VGG (the training loss's variant; about 5 s per Kodak image on a 2-core CPU)")
    parser.add_argument("--engine", choices=ENGINES, default="auto", help="probability engine (auto: Triton for CUDA tensors, numba on the CPU)")
    parser.add_argument("--device", default="cpu", help="torch device for the networks (default: cpu)")
    return parser


def _settings(args: argparse.Namespace) -> list[EncodeOptions]:
    return EncodeOptions.sweep(args)  # invalid values: ConfigError


def _label(path: Path) -> str:
    if path.stem != "last":
        return path.stem
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return run.name or path.stem


def _sources(arguments: list[str]) -> list[Source]:
    sources: list[Source] = []
    for argument in arguments:
        path = Path(argument)
        if not path.is_file():
            raise ConfigError(f"not found: {path}")
        if path.suffix == ".json":
            run, points = read_manifest(path)
            sources += [Source(ckpt, point.label, group=run) for ckpt, point in points]
        else:
            sources.append(Source(path, _label(path), group=""))
    for source in sources:
        read_checkpoint(source.path)  # fails fast, before any image is coded, on missing or foreign files
    return sources


def _images(folder: str | None, limit: int | None) -> tuple[str, list[tuple[str, Path]]]:
    if limit is not None and limit < 1:
        raise ConfigError(f"--max-images must be >= 1, got {limit}")
    if folder is None and KODAK.is_dir():
        folder = str(KODAK)
    if folder is None:
        paths, dataset = sample_photo_paths("val"), "bundled photographs"
    else:
        paths, dataset = find_images(folder, role="image folder"), str(folder)
    paths = paths[:limit]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):  # same name in two subfolders: name files by their path
        root = Path(folder)
        stems = [re.sub(r"[^\w.-]", "_", str(p.relative_to(root).with_suffix(""))) for p in paths]
    return dataset, list(zip(stems, paths))


def _out_dir(out_dir: str | None, force: bool) -> Path:
    path = Path(out_dir) if out_dir else Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out-dir {path} is a file")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise ConfigError(f"--out-dir {path} is not empty (use --force to write into it)")
    return path


def _references(keys: list[str] | None, dataset: str, reference_set: str | None) -> list[RDCurve]:
    """The published curves to compare with, on the set the images are (``--reference-set``, else
    the folder's name): by default :data:`DEFAULT_REFERENCES` on Kodak and every curve of the set on
    CLIC 2020 and DIV2K; none on other images unless asked for (then Kodak's)."""
    which = reference_set or (Path(dataset).name.lower() if Path(dataset).name.lower() in DATASETS else None)
    if keys == ["none"] or (keys is None and which is None):
        return []
    which = which or "kodak"
    if keys is None:
        keys = list(DEFAULT_REFERENCES) if which == "kodak" else reference_keys(which)
    elif keys == ["all"]:
        keys = reference_keys(which)
    return reference_curves(keys, which)


def _slug(text: str) -> str:
    return re.sub(r"[^\w.=-]+", "_", text).strip("_") or "curve"


def _curve(name: str, points: list[Point], labels: list[str], dataset: str, asked: set[str]) -> RDCurve:
    """The curve of ``points`` in CompressAI's layout, sorted by rate; a metric that was ``asked``
    for but is missing at any point (no weights, images too small, too few patches) is left out and
    listed as unavailable."""
    order = sorted(range(len(points)), key=lambda i: points[i].evaluation.summary()["bpp"])
    means = [points[i].evaluation.summary() for i in order]
    results: dict[str, list[float]] = {"bpp": [m["bpp"] for m in means]}
    unavailable = []
    for key, field in _MEANS.items():
        values = [m[field] for m in means]
        if all(v is not None for v in values):
            results[key] = values
        elif key in asked:
            unavailable.append(key)
    first = points[0].evaluation
    meta = {"source": f"rdvq eval {__version__}", "dataset": dataset, "images": len(first.images),
            "bpp": "file size x 8 / original pixels, mean over images", "unavailable": unavailable}
    described = [
        {"label": labels[i], "checkpoint": str(points[i].source.path), **points[i].options.columns(),
         "bit_exact": points[i].evaluation.all_exact, "files": str(points[i].files)}
        for i in order
    ]
    return RDCurve(name, f"rdvq real files, {len(first.images)} images", results, meta, described)


def _curve_mode(mode: str, settings: list[EncodeOptions]) -> str:
    return ("per-checkpoint" if len(settings) > 1 else "across-checkpoints") if mode == "auto" else mode


def _curve_key(mode: str, source: Source, options: EncodeOptions) -> tuple:
    return (source.path,) if mode == "per-checkpoint" else (source.group, options)


def _check_name(name: str | None, mode: str, sources: list[Source], settings: list[EncodeOptions]) -> None:
    """Before any coding: ``--name`` needs a command that makes one curve."""
    count = len({_curve_key(mode, s, o) for s in sources for o in settings})
    if name is not None and count != 1:
        raise ConfigError(f"--name names a single curve, this command makes {count}")


def _curves(
    points: list[Point], mode: str, multiple_settings: bool, name: str | None, dataset: str, asked: set[str]
) -> list[RDCurve]:
    groups: dict[tuple, list[Point]] = {}
    for point in points:
        groups.setdefault(_curve_key(mode, point.source, point.options), []).append(point)
    curves = []
    for members in groups.values():
        first = members[0]
        if mode == "per-checkpoint":
            curve_name, labels = first.source.label, [p.setting() for p in members]
        else:
            curve_name = first.source.group or ("rdvq" if len({p.source.path for p in members}) > 1 else first.source.label)
            if multiple_settings:
                curve_name += f" ({first.setting()})"
            labels = [p.source.label for p in members]
        curves.append(_curve(name or curve_name, members, labels, dataset, asked))
    return curves


def _patch_total(images: list[tuple[str, Path]], patch: int) -> int:
    """How many FID patches the images give (their sizes read from the file headers)."""
    from PIL import Image

    total = 0
    for _, path in images:
        with Image.open(path) as image:
            total += patch_count(image.height, image.width, patch)
    return total


def _format(value: float | None, spec: str, unit: str = "") -> str:
    return "unavailable" if value is None else f"{value:{spec}}{unit}"


def _summary_line(point: Point) -> str:
    m = point.evaluation.summary()
    exact = sum(r.exact for r in point.evaluation.images)
    patches = f" ({int(m['fid_patches'])} patches)" if m["fid"] is not None else ""
    return (f"{point.source.label} [{point.setting()}]: {m['bpp']:.4f} bpp  PSNR {m['psnr']:.2f} dB  "
            f"MS-SSIM {_format(m['ms_ssim'], '.4f')} ({_format(m['ms_ssim_db'], '.2f', ' dB')})  "
            f"LPIPS-Alex {_format(m['lpips'], '.4f')}  LPIPS-VGG {_format(m['lpips_vgg'], '.4f')}  "
            f"DISTS {_format(m['dists'], '.4f')}  FID {_format(m['fid'], '.2f')}  KID {_format(m['kid'], '.4f')}{patches}  "
            f"enc {m['encode_seconds']:.3f} s  dec {m['decode_seconds']:.3f} s  "
            f"bit-exact {exact}/{len(point.evaluation.images)}")


def _csv_value(name: str, value: Any, settings: set[str]) -> Any:
    """An encoder setting left at the model's default is an empty cell; a metric that could not be
    computed (no weights, image too small) is "unavailable"."""
    if value is None:
        return "" if name in settings else "unavailable"
    return value


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    settings = set(EncodeOptions().columns())
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: _csv_value(k, v, settings) for k, v in row.items()} for row in rows)


def _point_columns(point: Point) -> dict[str, Any]:
    return {"checkpoint": str(point.source.path), "label": point.source.label, **point.options.columns()}


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    sources = _sources(args.checkpoints)
    dataset, images = _images(args.images, args.max_images)
    anchors = [read_curve(path) for path in args.anchor]
    references = _references(args.references, dataset, args.reference_set)
    mode = _curve_mode(args.curves, settings)
    _check_name(args.name, mode, sources, settings)
    out = _out_dir(args.out_dir, args.force)
    if args.fid_patch < 0 or args.fid_patch == 1:
        raise ConfigError(f"--fid-patch must be 0 (off) or at least 2, got {args.fid_patch}")
    metrics = PerceptualMetrics.installed(fid_patch=args.fid_patch or None, lpips_vgg=args.lpips_vgg)
    patches = f" ({_patch_total(images, metrics.fid_patch)} patches from these images)" if metrics.fid_patch else ""
    print(f"{len(images)} images from {dataset}; {len(sources)} checkpoints x {len(settings)} settings; "
          f"{metrics.describe()}{patches}; reference curves: "
          + (", ".join(c.name for c in references) if references else
             "none (published curves are for Kodak, CLIC 2020 and DIV2K: --reference-set, --references KEY... or all)"))
    points: list[Point] = []
    failures = 0
    for source in sources:
        codec = ImageCodec.from_checkpoint(source.path, engine=args.engine, device=args.device)
        for options in settings:
            label = f"{source.label} [{options.label()}]"
            files = out / "files" / _slug(f"p{len(points) + failures:02d}_{label}")
            try:
                evaluation = evaluate(codec, images, options=options, metrics=metrics, files=files,
                                      estimate=args.estimate, progress=label)
            except ConfigError as exc:  # e.g. a setting this checkpoint's model does not implement
                failures += 1
                print(f"error: {source.path}: {exc}", file=sys.stderr)
                continue
            points.append(Point(source, options, evaluation, files))
            print(_summary_line(points[-1]), flush=True)
    if not points:
        raise ConfigError("no RD point could be evaluated")
    asked = {"psnr-rgb", "ms-ssim-rgb", "lpips-alex", "dists", "encoding_time", "decoding_time"}
    asked |= {"lpips-vgg"} if args.lpips_vgg else set()
    asked |= {"fid", "kid"} if args.fid_patch else set()
    asked |= {"estimated_bpp"} if args.estimate else set()
    curves = _curves(points, mode, len(settings) > 1, args.name, dataset, asked)
    written = _write_outputs(out, points, curves, anchors + references, args.bd_method, dataset, len(images))
    inexact = sum(not r.exact for p in points for r in p.evaluation.images)
    print("wrote " + ", ".join(str(p) for p in written))
    if inexact:
        print(f"error: {inexact} decodes differ from the encoder's reconstruction (see {out / 'per_image.csv'})", file=sys.stderr)
    return 1 if failures or inexact else 0


def _write_outputs(out: Path, points: list[Point], curves: list[RDCurve], anchors: list[RDCurve], method: str,
                   dataset: str, count: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    names: set[str] = set()
    for curve in curves:
        stem = _slug(curve.name)
        while stem in names:
            stem += "_"
        names.add(stem)
        write_curve(out / f"{stem}.json", curve)
        written.append(out / f"{stem}.json")
    rows = [{**_point_columns(p), **{k: v for k, v in r.items()}} for p in points for r in p.evaluation.rows()]
    _write_csv(out / "per_image.csv", rows)
    means = [{**_point_columns(p), **p.evaluation.summary()} for p in points]
    _write_csv(out / "points.csv", means)
    written += [out / "per_image.csv", out / "points.csv"]
    table = bd_table(curves, anchors, method)
    if table:
        _write_csv(out / "bd.csv", [r.row() for r in table])
        written.append(out / "bd.csv")
        _print_bd(table, method)
    title = f"{Path(dataset).name} ({count} images), real files"
    for metric in METRICS:
        path = out / f"rd_{metric}.png"
        if plot_rd(path, curves, metric, references=anchors, title=title):
            written.append(path)
    return written


def _print_bd(table: list[BDResult], method: str) -> None:
    """One row per (curve, anchor), two columns per metric; each distinct reason for a missing value once."""
    metrics = [m for m in METRICS if any(r.metric == m for r in table)]
    rows: dict[tuple[str, str], dict[str, BDResult]] = {}
    for result in table:
        rows.setdefault((result.test, result.anchor), {})[result.metric] = result
    notes: list[str] = []

    def cell(result: BDResult | None, value: str) -> str:
        if result is None:
            return "-"
        number = getattr(result, value)
        if result.note and result.note not in notes:
            notes.append(result.note)
        mark = f" [{notes.index(result.note) + 1}]" if result.note else ""
        if number is None:
            return "n/a" + mark
        return (f"{number:+.2f}%" if value == "bd_rate" else f"{number:+.4f}") + mark

    header = ["curve", "anchor"] + [f"{label} {m}" for m in metrics for label in ("BD-rate", "BD")]
    body = [[test, anchor] + [cell(cells.get(m), v) for m in metrics for v in ("bd_rate", "bd_metric")]
            for (test, anchor), cells in rows.items()]
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    print(f"\nBjontegaard deltas ({method} interpolation, bjontegaard package): BD-rate < 0 means fewer bits at "
          "equal quality; BD is the mean quality difference at equal rate, in the metric's units")
    for line in [header] + body:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(line, widths)))
    for number, note in enumerate(notes, 1):
        print(f"  [{number}] {note}")


def main(argv: list[str]) -> int:
    """Entry from :mod:`rdvq.app.main`; errors rdvq raises on purpose are one line there."""
    try:
        return run(argv)
    except OSError as exc:
        raise ConfigError(f"{exc.filename or ''}: {exc.strerror or exc}") from None
