"""Stage B's rate and auxiliary loss under a policy for the bottleneck's auxiliary parameters.

Trains the quickstart's HyperVQ stage B (``experiments/quickstart_rate.yaml``) on a given tokenizer
and records, from the run's CSV log, the training rate (bpp), the auxiliary (quantile) loss and the
validation rates (estimated and real files). Run it from two trees to compare policies, e.g. the
commit before the change from a worktree and this one:

    PYTHONPATH=/tmp/old python benchmarks/aux_policy.py --tokenizer TOKENIZER.ckpt --label before \
        --json benchmarks/results/aux_policy.json
    python benchmarks/aux_policy.py --tokenizer TOKENIZER.ckpt --label after --json benchmarks/results/aux_policy.json

Each label's entry is (re)written in the JSON with its provenance; other labels are kept, and
``--plot PNG`` draws every label's training rate and auxiliary loss against the step.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from provenance import provenance  # noqa: E402


def _metrics(log: Path) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    with log.open() as handle:
        for row in csv.DictReader(handle):
            for name, value in row.items():
                if name not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(name, []).append((int(row["step"]), float(value)))
    return series


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=110)
    for column, (name, label) in enumerate((("train/bpp", "training rate (bpp)"), ("train/aux_loss", "auxiliary loss"))):
        axes = figure.add_subplot(1, 2, column + 1)
        for run, entry in results.items():
            steps, values = zip(*entry["series"][name])
            axes.plot(steps, values, label=f"{run} ({entry['provenance']['commit']})")
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", help="stage A checkpoint (the quickstart tokenizer)")
    parser.add_argument("--label")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--plot", type=Path, help="draw the JSON's curves into this PNG (no training)")
    args = parser.parse_args()
    if args.plot is not None:
        plot(json.loads(args.json.read_text()), args.plot)
        return

    from rdvq.app.training import run_training_cli
    import rdvq

    with tempfile.TemporaryDirectory() as tmp:
        run_training_cli([
            "fit", "--config", str(ROOT / "experiments" / "quickstart_rate.yaml"), "--model.init_from", args.tokenizer,
            "--trainer.default_root_dir", tmp, "--trainer.max_steps", str(args.steps),
            "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "10",
        ])
        series = _metrics(next(Path(tmp).rglob("metrics.csv")))
    keep = ("train/bpp", "train/aux_loss", "val/bpp_estimated", "val/bpp_real")
    entry = {
        "provenance": provenance({"tokenizer": args.tokenizer}, code=Path(rdvq.__file__).resolve().parents[1]),
        "steps": args.steps,
        "series": {name: series.get(name, []) for name in keep},
        "last": {name: series[name][-1][1] if series.get(name) else None for name in keep},
    }
    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    results[args.label] = entry
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({args.label: entry["last"]}, indent=1))


if __name__ == "__main__":
    main()
