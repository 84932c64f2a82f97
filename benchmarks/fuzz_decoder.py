"""Decoder fuzzing behind BENCHMARKS.md: mutated files must end in typed errors, never in a crash,
an untyped exception, a hang or a memory blow-up.

For every checkpoint given (VQ: one entropy model each, and a uniform-coding codec over the first
VQ checkpoint's tokenizer is added; scalar codec: one quantizer each), valid files are made from a
small crop and from a Kodak-sized image, then N cases per codec are drawn: one mutation each (bit flips, truncation, insertion,
deletion, header edit with boundary values), the payload CRC recomputed for most cases so the
mutation reaches the entropy decoders. Each case is decoded in a worker process with a time limit:
a signal is a crash, a timeout a hang. Reports counts per outcome, the slowest case and the
largest growth of resident memory during one case.

    python benchmarks/fuzz_decoder.py --cases 10000 --ckpt runs/bench/hypervq/checkpoints/last.ckpt \
        runs/bench/static/checkpoints/last.ckpt runs/bench/sq/tcq_l0.0015/checkpoints/last.ckpt \
        --json benchmarks/results/fuzz_decoder.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _kind(codec) -> str:
    """The row name of a codec: its index entropy model (VQ), or family and quantizer (scalar codec)."""
    latent = codec.latent
    return latent.entropy_model.kind if latent.family == "vq" else f"{latent.family}-{latent.config.quantizer}"


def _codecs(checkpoints: list[str]) -> dict:
    from rdvq.codec import ImageCodec, VQCodec
    from rdvq.entropy import UniformConfig, UniformModel

    codecs = {}
    for path in checkpoints:
        codec = ImageCodec.from_checkpoint(path)
        codecs[_kind(codec)] = codec
    tokenizers = [c.latent.tokenizer for c in codecs.values() if c.latent.family == "vq"]
    if tokenizers:
        codecs.setdefault("uniform", ImageCodec(VQCodec(tokenizers[0], UniformModel(), UniformConfig())))
    return codecs


def _worker(checkpoints: list[str], threads: int, connection) -> None:
    """Decode whatever arrives; answer (outcome, seconds, peak resident memory growth in MiB)."""
    warnings.filterwarnings("ignore")
    import torch

    from rdvq.errors import BitstreamError

    torch.set_num_threads(threads)
    codecs = _codecs(checkpoints)
    connection.send("ready")
    while True:
        message = connection.recv()
        if message is None:
            return
        kind, data = message
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter for this case
        baseline = _status_mib("VmRSS")
        start = time.perf_counter()
        try:
            codecs[kind].decompress(data)
            outcome = "decoded"
        except BitstreamError as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - exactly what this benchmark looks for
            outcome = f"UNTYPED {type(exc).__name__}: {exc}"
        connection.send((outcome, time.perf_counter() - start, _status_mib("VmHWM") - baseline))


class Worker:
    def __init__(self, checkpoints: list[str], threads: int) -> None:
        self.args = (checkpoints, threads)
        self.start()

    def start(self) -> None:
        self.connection, child = mp.Pipe()
        self.process = mp.get_context("spawn").Process(target=_worker, args=(*self.args, child), daemon=True)
        self.process.start()
        if not self.connection.poll(600) or self.connection.recv() != "ready":
            raise SystemExit("fuzz worker did not start")

    def decode(self, kind: str, data: bytes, timeout: float) -> tuple[str, float, float]:
        self.connection.send((kind, data))
        if self.connection.poll(timeout):
            try:
                return self.connection.recv()
            except EOFError:
                pass
        alive = self.process.is_alive()
        self.process.kill()
        self.process.join()
        code = self.process.exitcode
        self.start()
        return ("HANG" if alive else f"CRASH (exit code {code})"), timeout, float("nan")

    def close(self) -> None:
        self.connection.send(None)
        self.process.join(10)


def _valid_files(codecs: dict, kodak: Path | None) -> dict[str, list[tuple[str, bytes]]]:
    from rdvq.image_io import read_image
    from rdvq.sample_photos import sample_photo_paths

    photo = read_image(sample_photo_paths("val")[1])
    images = [("small 48x40", photo[:, 100:148, 200:240])]
    if kodak is not None and (kodak / "kodim23.png").is_file():
        images.append(("kodak 768x512", read_image(kodak / "kodim23.png")))
    else:
        images.append(("photo 512x512", read_image(sample_photo_paths("val")[0])))
    return {kind: [(label, codec.compress(image)) for label, image in images] for kind, codec in codecs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="codec checkpoints (one entropy model or quantizer each)")
    parser.add_argument("--cases", type=int, default=10_000, help="mutated files per codec")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a case counts as a hang")
    parser.add_argument("--no-crc-share", type=float, default=0.1, help="share of cases whose CRC is not recomputed")
    parser.add_argument("--kodak", default="../shared/datasets/kodak")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT / "tests"))  # the mutations are test code, outside the package
    from mutations import mutate

    kodak = Path(args.kodak) if Path(args.kodak).is_dir() else None
    files = _valid_files(_codecs(args.ckpt), kodak)
    worker = Worker(args.ckpt, args.threads)
    rng = random.Random(args.seed)
    results: dict = {"cases_per_model": args.cases, "timeout_s": args.timeout, "models": {}}
    for kind, sources in files.items():
        outcomes: Counter = Counter()
        slowest = (0.0, "")
        peak = (0.0, "")
        for case in tqdm(range(args.cases), desc=f"fuzz {kind}", unit="file"):
            label, valid = sources[case % len(sources)]
            crc = rng.random() >= args.no_crc_share
            data = mutate(valid, rng, crc=crc)
            outcome, seconds, peak_mib = worker.decode(kind, data, args.timeout)
            outcomes[outcome] += 1
            if peak_mib > peak[0]:
                peak = (peak_mib, f"{label}, {outcome}")
            if seconds > slowest[0]:
                slowest = (seconds, f"{label}, {outcome}")
        results["models"][kind] = {
            "outcomes": dict(outcomes.most_common()),
            "slowest_s": slowest[0],
            "slowest_case": slowest[1],
            "peak_growth_mib": peak[0],
            "peak_case": peak[1],
        }
    worker.close()
    print(markdown(results, "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


def markdown(results: dict, command: str) -> str:
    lines = [f"Command: `{command}`", "", "| codec | cases | outcomes | crashes / untyped / hangs | slowest case | largest memory growth of a case |",
             "| --- | --- | --- | --- | --- | --- |"]
    for kind, r in results["models"].items():
        bad = sum(n for name, n in r["outcomes"].items() if name.startswith(("CRASH", "UNTYPED", "HANG")))
        outcomes = ", ".join(f"{name} {n}" for name, n in r["outcomes"].items())
        lines.append(f"| {kind} | {results['cases_per_model']} | {outcomes} | {bad} | {1e3 * r['slowest_s']:.0f} ms ({r['slowest_case']}) "
                     f"| {r['peak_growth_mib']:.0f} MiB ({r['peak_case']}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
