"""RD curves: CompressAI's results layout, the shipped reference curves, BD deltas and RD plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rdvq.errors import ConfigError
from rdvq.plots import plot_rd
from rdvq.rd_curves import BD_METHODS, RDCurve, bd, bd_table, read_curve, reference_curves, reference_data, write_curve

HYPERPRIOR, MBT_MEAN, CHENG, VTM = reference_curves(
    ("bmshj2018-hyperprior_mse", "mbt2018-mean_mse", "cheng2020-anchor_mse", "vtm"))


def test_reference_data_cites_its_source_and_holds_the_published_numbers() -> None:
    data = reference_data()
    assert "InterDigitalInc/CompressAI" in data["source"]["repository"] and len(data["source"]["commit"]) == 40
    assert "license" in data["source"] and data["dataset"] == "kodak"
    for key, entry in data["curves"].items():
        assert entry["file"].startswith("results/image/kodak/"), key
        results = entry["results"]
        assert len({len(v) for v in results.values()}) == 1 and results["bpp"] == sorted(results["bpp"]), key
    # CompressAI's bmshj2018-hyperprior on Kodak, q1 and q8 (DESIGN.md 4)
    assert HYPERPRIOR.results["bpp"][0] == pytest.approx(0.1313, abs=1e-4)
    assert HYPERPRIOR.results["psnr-rgb"][-1] == pytest.approx(40.56, abs=1e-2)
    assert HYPERPRIOR.meta["source"].endswith("compressai-bmshj2018-hyperprior_mse_cuda.json")


@pytest.mark.parametrize("method", BD_METHODS)
def test_a_curve_against_itself_is_zero(method: str) -> None:
    for metric in ("psnr-rgb", "ms-ssim-db"):
        result = bd(HYPERPRIOR, HYPERPRIOR, metric, method)
        assert result.bd_rate == pytest.approx(0.0, abs=1e-9) and result.bd_metric == pytest.approx(0.0, abs=1e-9)
        assert result.overlap == 1.0 and result.note == "" and result.method == method


def test_bd_rate_matches_the_published_comparisons() -> None:
    """The numbers computed from these same files with this package (reference notes): mbt2018-mean
    -6.8 % and cheng2020-anchor -22.6 % against the hyperprior (Akima); the hyperprior +30.5 % against
    VTM (PCHIP), where the curves have 8 and 6 points."""
    assert bd(MBT_MEAN, HYPERPRIOR, "psnr-rgb").bd_rate == pytest.approx(-6.8, abs=0.05)
    cheng = bd(CHENG, HYPERPRIOR, "psnr-rgb")
    assert len(CHENG) == 6 and len(HYPERPRIOR) == 8
    assert cheng.bd_rate == pytest.approx(-22.6, abs=0.05) and cheng.bd_metric > 0
    assert "share only" in cheng.note  # cheng2020 stops at 36.7 dB: the overlap is reported
    assert bd(HYPERPRIOR, VTM, "psnr-rgb", "pchip").bd_rate == pytest.approx(30.5, abs=0.05)


def test_a_lower_is_better_metric_keeps_its_sign_convention() -> None:
    anchor = RDCurve("anchor", "", {"bpp": [0.1, 0.2, 0.4, 0.8], "lpips-alex": [0.30, 0.20, 0.12, 0.07]})
    better = RDCurve("better", "", {"bpp": [0.1, 0.2, 0.4, 0.8], "lpips-alex": [0.25, 0.16, 0.10, 0.06]})
    result = bd(better, anchor, "lpips-alex")
    assert result.bd_rate < 0  # fewer bits for the same LPIPS
    assert result.bd_metric < 0  # lower LPIPS at the same rate


def test_what_cannot_be_computed_says_why() -> None:
    one = RDCurve("one", "", {"bpp": [0.3], "psnr-rgb": [30.0]})
    assert "at least 2 points" in bd(one, HYPERPRIOR, "psnr-rgb").note
    three = RDCurve("three", "", {"bpp": [0.2, 0.3, 0.5], "psnr-rgb": [29, 30, 31]})
    cubic = bd(three, HYPERPRIOR, "psnr-rgb", "cubic")
    assert cubic.bd_rate is None and "at least 4 points" in cubic.note
    wiggly = RDCurve("wiggly", "", {"bpp": [0.2, 0.3, 0.5], "psnr-rgb": [29, 31, 30]})
    assert bd(wiggly, HYPERPRIOR, "psnr-rgb").bd_rate is None and "not monotone" in bd(wiggly, HYPERPRIOR, "psnr-rgb").note
    far = RDCurve("far", "", {"bpp": [4.0, 5.0], "psnr-rgb": [10.0, 11.0]})
    result = bd(far, HYPERPRIOR, "psnr-rgb")
    assert result.bd_rate is None and result.bd_metric is None and result.note == "the curves do not overlap"
    assert "has no lpips-alex" in bd(HYPERPRIOR, HYPERPRIOR, "lpips-alex").note
    with pytest.raises(ConfigError, match="akima, pchip, cubic"):
        bd(HYPERPRIOR, HYPERPRIOR, "psnr-rgb", "linear")
    # bd_table compares only the metrics both curves carry
    assert {r.metric for r in bd_table([three], [HYPERPRIOR])} == {"psnr-rgb"}


def test_results_files_round_trip_and_bad_ones_are_one_line_errors(tmp_path: Path) -> None:
    curve = RDCurve("mine", "desc", {"bpp": [0.1, 0.2], "psnr-rgb": [28.0, 30.0], "ms-ssim-rgb": [0.9, 0.99]},
                    {"dataset": "x"}, [{"label": "a"}, {"label": "b"}])
    write_curve(tmp_path / "mine.json", curve)
    assert read_curve(tmp_path / "mine.json") == curve
    assert read_curve(tmp_path / "mine.json").values("ms-ssim-db") == pytest.approx([10.0, 20.0])
    with pytest.raises(ConfigError, match="results file not found"):
        read_curve(tmp_path / "absent.json")
    cases = {"not json": "cannot read results file", json.dumps({"name": "x"}): "no 'results' object",
             json.dumps({"results": {"psnr-rgb": [1]}}): "no 'bpp' list",
             json.dumps({"results": {"bpp": [0.1, 0.2], "psnr-rgb": [1]}}): "has 1 entries",
             json.dumps({"results": {"bpp": [0.1], "psnr-rgb": ["x"]}}): "not a list of numbers"}
    for text, message in cases.items():
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ConfigError, match=message) as info:
            read_curve(tmp_path / "bad.json")
        assert "\n" not in str(info.value)


def test_rd_plot_is_a_png_and_skips_a_metric_no_curve_has(tmp_path: Path) -> None:
    curve = RDCurve("mine", "", {"bpp": [0.1, 0.2, 0.4], "psnr-rgb": [27.0, 29.0, 30.5]},
                    points=[{"label": "T=4"}, {"label": "T=8"}, {"label": "T=28"}])
    assert plot_rd(tmp_path / "psnr.png", [curve], "psnr-rgb", references=[HYPERPRIOR, VTM], title="t")
    data = (tmp_path / "psnr.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not plot_rd(tmp_path / "lpips.png", [curve], "lpips-alex")
    assert not (tmp_path / "lpips.png").exists()
    assert math.isinf(RDCurve("x", "", {"bpp": [1.0], "ms-ssim-rgb": [1.0]}).values("ms-ssim-db")[0])


def test_generative_anchors_hold_their_published_numbers_and_say_how_exact_they_are() -> None:
    from rdvq.rd_curves import reference_keys

    assert set(reference_keys("div2k")) == {"ms-illm", "ms-illm-nogan", "rdvq-paper", "stablecodec"}
    assert {"bmshj2018-hyperprior_mse", "ms-illm", "stablecodec", "rdvq-paper"} <= set(reference_keys("kodak"))
    illm, stable, paper = reference_curves(("ms-illm", "stablecodec", "rdvq-paper"), "kodak")
    # projects/illm/results.csv of facebookresearch/NeuralCompression, first Kodak row
    assert illm.results["bpp"][0] == 0.0443454347550869 and illm.results["lpips-alex"][0] == 0.15762092173099518
    assert illm.results["dists"][0] == 0.13461525738239288 and "fid" not in illm.results  # not given for Kodak
    # results/results.txt of LuizScarlet/StableCodec, Kodak at 0.01707 bpp
    assert stable.results["bpp"][4] == 0.01707 and stable.results["psnr-rgb"][4] == 22.05493
    assert illm.meta["exact"] and stable.meta["exact"] and "results.csv" in illm.meta["source"]
    assert not paper.meta["exact"] and "approximate" in paper.name and "RD_curves.jpg" in paper.meta["source"]
    (clic,) = reference_curves(("ms-illm",), "clic2020")
    assert clic.results["fid"][0] == 6.272188186645508 and clic.results["kid"][0] == 0.0010435933945700526
    with pytest.raises(ConfigError, match="unknown reference curve 'vtm' on div2k"):
        reference_curves(("vtm",), "div2k")


def test_lower_is_better_metrics_give_bd_rates_at_equal_quality() -> None:
    """At equal LPIPS / DISTS / FID a codec needing fewer bits has a negative BD-rate."""
    (illm,) = reference_curves(("ms-illm",), "div2k")
    cheaper = RDCurve("cheaper", "", {**illm.results, "bpp": [0.8 * r for r in illm.results["bpp"]]})
    for metric in ("lpips-alex", "dists", "fid"):
        assert bd(cheaper, illm, metric).bd_rate == pytest.approx(-20.0, abs=0.5), metric
