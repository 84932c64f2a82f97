"""The ``rdvq`` console script.

Training subcommands (fit, validate, test) go to the Lightning CLI; compress and decompress to
the codec; eval to the rate-distortion evaluation. Errors rdvq raises on purpose print one line and exit with status 1.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import NoReturn

from rdvq.app.commands import CODEC_COMMANDS, TRAINING_COMMANDS
from rdvq.errors import RdvqError

USAGE = """usage: rdvq <command> [options]

training (Lightning CLI, YAML configs in experiments/):
  fit        train a stage:          rdvq fit --config experiments/quickstart.yaml
  validate   run validation once:    rdvq validate --config CONFIG --ckpt_path PATH
  test       run the test loop:      rdvq test --config CONFIG --ckpt_path PATH

codec:
  compress   IMAGE... --ckpt CKPT [-o FILE | --out-dir DIR]   images -> .rdvq files
  decompress FILE...  --ckpt CKPT [-o PNG | --out-dir DIR]    .rdvq files -> PNG

evaluation:
  eval       CKPT... [--images DIR] [--slices T...] [--anchor JSON...]   RD curves from real files:
             results JSON (CompressAI layout), CSV, BD-rates vs CompressAI's Kodak curves, RD plots

run `rdvq <command> --help` for the options of a command."""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command = args[0]
    # compressai still calls torch.jit.script at import time; the deprecation is not ours to fix.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")
    try:
        if command in TRAINING_COMMANDS:
            from rdvq.app.training import run_training_cli

            run_training_cli(None if argv is None else args)
            return 0
        if command in CODEC_COMMANDS:
            from rdvq.app.compress import run

            return run(command, args[1:])
        if command == "eval":
            from rdvq.app.eval import main as run_eval

            return run_eval(args[1:])
        print(f"error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    except RdvqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def console() -> NoReturn:
    """The console script: :func:`main`, then, after compress and decompress, an immediate exit.

    By then those commands have written and closed every file, and tearing down the interpreter with
    torch and numba loaded takes another 0.3-0.45 s on the 2-core development machine, a fifth of a
    one-image command. Training and eval exit normally: their loggers (W&B) finish in exit handlers.
    """
    code = main()
    if sys.argv[1:2] and sys.argv[1] in CODEC_COMMANDS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console()
