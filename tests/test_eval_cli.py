"""``rdvq eval``: real files for every checkpoint and setting, rates from their sizes, results JSON in
CompressAI's layout, CSVs, plots, BD against its own results and CompressAI's, one-line errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fit, kodak_dir
from rdvq.app import eval as eval_app
from rdvq.app.main import main
from rdvq.image_io import read_image, write_png
from rdvq.sample_photos import sample_photo_paths

REPO = Path(__file__).resolve().parents[1]
TINY_TRANSFORMER = ("--model.init_args.entropy_model=TransformerConfig", "--model.init_args.entropy_model.layers", "1",
                    "--model.init_args.entropy_model.width", "16", "--model.init_args.entropy_model.heads", "1")


@pytest.fixture(scope="module")
def transformer_checkpoints(tmp_path_factory, stage_a_checkpoint: Path) -> tuple[Path, Path]:
    """Two stage B checkpoints of a tiny masked-transformer entropy model (rate control by slices),
    after one and after two steps."""
    root = tmp_path_factory.mktemp("transformer")
    common = ("--model.init_from", str(stage_a_checkpoint), *TINY_TRANSFORMER, "--trainer.val_check_interval", "100")
    fit("tiny_stage_b.yaml", root, *common, "--trainer.max_steps", "1")
    first = shutil.copy(root / "checkpoints" / "last.ckpt", root / "step1.ckpt")
    fit("tiny_stage_b.yaml", root, *common, "--trainer.max_steps", "2", "--ckpt_path", "last")
    return Path(first), root / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def small_images(tmp_path_factory) -> Path:
    """Two photographs cropped to 176 x 160, just above MS-SSIM's minimum side."""
    folder = tmp_path_factory.mktemp("images")
    for path in sample_photo_paths("val")[:2]:
        write_png(folder / f"{path.stem}.png", read_image(path)[:, 100:276, 100:260])
    return folder


def _eval(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["eval", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_kodak_two_checkpoints_and_a_slice_list(transformer_checkpoints, tmp_path: Path, capsys) -> None:
    kodak = kodak_dir()
    out = tmp_path / "eval"
    code, stdout, stderr = _eval(capsys, *transformer_checkpoints, "--images", kodak, "--slices", 1, 3,
                                 "--max-images", 1, "--out-dir", out)
    assert code == 0, stderr
    # Two settings: one rate-control curve per checkpoint, in CompressAI's results layout.
    curves = {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert len(curves) == 2 and "step1.json" in curves
    for curve in curves.values():
        assert {"name", "description", "results"} <= curve.keys()
        results = curve["results"]
        assert {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"} <= results.keys()
        assert {len(v) for v in results.values()} == {2} and results["bpp"] == sorted(results["bpp"])
        # make install brings every perceptual network; FID/KID on the 8 patches of 256 px of one image
        assert {"lpips-alex", "dists", "fid", "kid"} <= results.keys() and curve["meta"]["unavailable"] == []
        assert "lpips-vgg" not in results  # not asked for (--lpips-vgg)
        assert [p["slices"] for p in curve["points"]] == [1, 3] and all(p["bit_exact"] for p in curve["points"])
    # Every image of every point is a real file; its bpp is its size over the original pixels.
    rows = _rows(out / "per_image.csv")
    assert len(rows) == 4
    for row in rows:
        files = [p for p in out.glob("files/*/*.rdvq") if p.stem == row["name"]]
        sizes = {p.stat().st_size for p in files}
        assert int(row["bytes"]) in sizes and row["exact"] == "True"
        assert float(row["bpp"]) == pytest.approx(int(row["bytes"]) * 8 / (768 * 512))
    assert len(list(out.glob("files/*/*.rdvq"))) == 4
    assert len(_rows(out / "points.csv")) == 4
    # BD against CompressAI's published Kodak curves, the interpolation named; plots of every metric.
    bd_rows = _rows(out / "bd.csv")
    assert {r["anchor"] for r in bd_rows} >= {"CompressAI bmshj2018-hyperprior", "VTM (CompressAI)"}
    assert {r["method"] for r in bd_rows} == {"akima"} and "akima interpolation" in stdout
    assert (out / "rd_psnr-rgb.png").stat().st_size > 10_000 and (out / "rd_ms-ssim-db.png").is_file()


def test_bd_against_its_own_results_is_zero(transformer_checkpoints, small_images: Path, tmp_path: Path, capsys) -> None:
    ckpt = transformer_checkpoints[1]
    args = (ckpt, "--images", small_images, "--max-images", 1, "--slices", 1, 4)
    assert _eval(capsys, *args, "--out-dir", tmp_path / "first")[0] == 0
    (anchor,) = (tmp_path / "first").glob("*.json")  # named after the run folder of last.ckpt
    code, stdout, stderr = _eval(capsys, *args, "--out-dir", tmp_path / "second", "--anchor", anchor, "--bd-method", "pchip")
    assert code == 0, stderr
    row = next(r for r in _rows(tmp_path / "second" / "bd.csv") if r["metric"] == "psnr-rgb")
    assert row["anchor"] == json.loads(anchor.read_text())["name"] and row["method"] == "pchip"
    assert float(row["bd_rate_percent"]) == pytest.approx(0.0, abs=1e-9)
    assert float(row["bd_metric"]) == pytest.approx(0.0, abs=1e-9)
    # Not Kodak: CompressAI's Kodak curves are left out unless asked for.
    assert "CompressAI" not in (tmp_path / "second" / "bd.csv").read_text()


def test_a_setting_a_model_does_not_implement_is_an_error_for_that_checkpoint_only(
    transformer_checkpoints, stage_b_checkpoint: Path, small_images: Path, tmp_path: Path, capsys
) -> None:
    code, stdout, stderr = _eval(capsys, stage_b_checkpoint, transformer_checkpoints[0], "--images", small_images,
                                 "--max-images", 1, "--slices", 2, "--out-dir", tmp_path)
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]  # the rest is progress bars
    assert errors == [f"error: {stage_b_checkpoint}: entropy model hypervq does not support --slices"]
    assert "step1 [T=2]" in stdout  # the other checkpoint was evaluated and written
    assert [r["label"] for r in _rows(tmp_path / "points.csv")] == ["step1"]


def test_bad_inputs_are_one_line_errors(
    stage_a_checkpoint: Path, stage_b_checkpoint: Path, small_images: Path, tmp_path: Path, capsys
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    cases = [
        ((tmp_path / "absent.ckpt",), "error: not found:"),
        ((bogus,), "error: cannot read checkpoint"),
        ((stage_b_checkpoint, "--images", empty), "contains no images"),
        ((stage_b_checkpoint, "--images", tmp_path / "nowhere"), "image folder"),
        ((stage_b_checkpoint, "--slices", 0), "slices must be >= 1"),
        ((stage_b_checkpoint, "--anchor", tmp_path / "absent.json"), "results file not found"),
        ((stage_b_checkpoint, "--references", "nonsense"), "unknown reference curve 'nonsense'"),
        ((stage_a_checkpoint, stage_b_checkpoint, "--slices", 1, 2, "--name", "x"), "--name names a single curve, this command makes 2"),
    ]
    for args, message in cases:
        code, _, stderr = _eval(capsys, *args, "--out-dir", tmp_path / "out")
        lines = stderr.strip().splitlines()
        assert code == 1 and len(lines) == 1 and message in lines[0], (args, stderr)
    code, _, stderr = _eval(capsys, stage_a_checkpoint, "--images", small_images, "--out-dir", tmp_path / "out")
    assert code == 1 and "has no entropy model" in stderr
    # The installed command: one line, no traceback.
    result = subprocess.run([sys.executable, "-m", "rdvq", "eval", str(bogus)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot read checkpoint {bogus}: not a readable PyTorch checkpoint")


def test_default_images_are_kodak_when_present_else_the_bundled_photographs(monkeypatch, tmp_path: Path) -> None:
    """Both branches, whether or not this machine has ../shared/datasets/kodak: KODAK points at a
    stand-in folder of three images, then at a folder that does not exist."""
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    pixels = read_image(sample_photo_paths("val")[0])[:, :4, :6]
    for name in ("kodim03", "kodim01", "kodim02"):
        write_png(kodak / f"{name}.png", pixels)
    monkeypatch.setattr(eval_app, "KODAK", kodak)
    dataset, images = eval_app._images(None, 2)
    assert dataset == str(kodak) and images == [("kodim01", kodak / "kodim01.png"), ("kodim02", kodak / "kodim02.png")]
    monkeypatch.setattr(eval_app, "KODAK", tmp_path / "absent")
    dataset, images = eval_app._images(None, None)
    assert dataset == "bundled photographs" and [p for _, p in images] == sample_photo_paths("val")


def test_published_curves_follow_the_set_the_images_are(tmp_path: Path) -> None:
    """Kodak by default; CLIC 2020 and DIV2K by folder name or --reference-set; other images none
    unless asked for."""
    names = lambda curves: [c.name for c in curves]  # noqa: E731
    kodak = names(eval_app._references(None, "/data/kodak", None))
    assert "MS-ILLM" in kodak and "StableCodec" in kodak and "RDVQ (paper, approximate)" in kodak
    assert any(n.startswith("CompressAI bmshj2018-hyperprior") for n in kodak)
    assert eval_app._references(None, str(tmp_path), None) == []
    div2k = eval_app._references(None, str(tmp_path), "div2k")
    assert all(c.meta["dataset"] == "div2k" for c in div2k) and "StableCodec" in names(div2k)
    assert names(eval_app._references(["ms-illm"], "/x/clic2020", None)) == ["MS-ILLM"]
    assert eval_app._references(["none"], "/data/kodak", None) == []


def test_bad_fid_patch_is_a_one_line_error(capsys, stage_b_checkpoint: Path) -> None:
    code, _, stderr = _eval(capsys, stage_b_checkpoint, "--fid-patch", "1")
    assert code == 1 and stderr.strip().startswith("error: --fid-patch must be 0 (off) or at least 2")
