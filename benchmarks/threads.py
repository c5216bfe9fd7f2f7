"""Threads: how long pre-training and the scouts take with 1, 2 or torch's default threads.

On the README's Quickstart (the embedded default corpus, pbmc68k_reduced: 391 cells x 765
genes), each setting runs in a fresh process: ``GTL.train()`` without the guide (100 epochs, the
default for this corpus), then ``compute_guide()`` with the default 60 scouts. Each is measured
on a quiet machine and again beside a competing job: another process doing torch work with
torch's default threads (what a second notebook or pipeline step does).

    python benchmarks/threads.py --out benchmarks/results/threads

Run it alone (no other heavy job on the machine): it makes its own competing load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: One measurement, run in a fresh interpreter: argv = n_threads ("default" or an integer),
#: max_epochs. Prints a JSON line with the seconds of each step.
MEASURE = """
import json, logging, sys, time, warnings
warnings.filterwarnings("ignore")
for name in ("lightning.pytorch", "lightning.fabric", "scvi"):
    logging.getLogger(name).setLevel(logging.ERROR)
import torch
import scgtl
from scgtl.benchmark import default_task
n_threads, max_epochs = sys.argv[1], int(sys.argv[2])
scgtl.settings.n_threads = None if n_threads == "default" else int(n_threads)
corpus, _ = default_task()
scgtl.GTL.setup_anndata(corpus, units="log1p")
model = scgtl.GTL(corpus)
start = time.perf_counter()
model.train(max_epochs=max_epochs, compute_guide=False, enable_progress_bar=False)
train = time.perf_counter() - start
start = time.perf_counter()
model.compute_guide(progress=False)
guide = time.perf_counter() - start
print(json.dumps({"train_seconds": train, "guide_seconds": guide,
                  "torch_threads_default": torch.get_num_threads()}))
"""

#: The competing job: the same kind of torch work, with torch's default threads, until killed.
LOAD = """
import torch
x = torch.randn(2048, 2048)
while True:
    x = torch.tanh(x @ x.T / 2048)
"""


def measure(n_threads: str, max_epochs: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, n_threads, str(max_epochs)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", default=["1", "2", "default"])
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "threads")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for load in ("quiet", "competing torch job"):
        competitor = None
        if load != "quiet":
            competitor = subprocess.Popen([sys.executable, "-c", LOAD])
            time.sleep(3)
        try:
            for n_threads in args.threads:
                row = {"load": load, "n_threads": n_threads, **measure(n_threads, args.max_epochs)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
    (args.out / "threads.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        f"| load | n_threads | train ({args.max_epochs} epochs) s | compute_guide (60 scouts) s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['load']} | {r['n_threads']} | {r['train_seconds']:.1f} | {r['guide_seconds']:.1f} |"
        for r in rows
    ]
    (args.out / "threads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
