"""How fast the ``scgtl`` command answers ``--help``, for itself and each subcommand.

Each ``scgtl ... --help`` runs as a fresh process (the installed ``scgtl`` entry point, or
``python -c "from scgtl._cli import main; ..."`` with ``--module``), ``--runs`` times; the table
gives the median and the range of the wall times. The heavy libraries (torch, scvi-tools, scanpy,
anndata) load only inside the commands, so every line should stay far below 2 s.

    python benchmarks/cli_startup.py
    python benchmarks/cli_startup.py --runs 9 --module
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = [[], ["pretrain"], ["fine-tune"], ["predict"], ["benchmark"]]


def wall_times(argv: list[str], runs: int) -> list[float]:
    """Wall time of ``argv`` (which must succeed), ``runs`` times."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def command_line(args: list[str], *, module: bool) -> list[str]:
    if module:
        code = "import sys; from scgtl._cli import main; sys.exit(main(sys.argv[1:]))"
        return [sys.executable, "-c", code, *args]
    executable = shutil.which("scgtl")
    if executable is None:
        sys.exit("No `scgtl` on PATH: install the package (pip install -e .) or pass --module.")
    return [executable, *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument(
        "--module", action="store_true", help="run through python -c instead of the entry point"
    )
    args = parser.parse_args()
    print(f"| command | median (s) | min-max (s), {args.runs} runs |")
    print("|---|---|---|")
    for command in COMMANDS:
        argv = command_line([*command, "--help"], module=args.module)
        times = wall_times(argv, args.runs)
        name = " ".join(["scgtl", *command, "--help"])
        print(
            f"| `{name}` | {statistics.median(times):.2f} | {min(times):.2f}-{max(times):.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
