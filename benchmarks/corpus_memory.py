"""Peak memory of pre-training from disk: one backed file and several files (issue 14, part 1).

Writes synthetic corpora of sparse negative-binomial counts (``scout_speed.synthetic_counts``:
2,000 genes, about 11 % non-zero) of each size, as one ``.h5ad`` file and split over
``--files`` files, then runs one pre-training epoch on each in a fresh process
(``read_h5ad(backed="r")`` or ``scgtl.data.read_collection``, ``setup_anndata(n_top_genes=None)``,
``train(max_epochs=1, compute_guide=False)``) and records its peak resident memory
(``VmHWM`` of ``/proc/self/status``) and samples/s. The target: peak memory at the largest
size / at the smallest <= 1.2 for both layouts.

    python benchmarks/corpus_memory.py --sizes 20000 200000 --out benchmarks/results/corpus_memory

Run it alone on the machine (samples/s is a timing).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_corpora(n_obs: int, n_genes: int, n_files: int, folder: Path) -> dict[str, list[Path]]:
    """The corpus as one file and as ``n_files`` files (rows split evenly); reused if present."""
    sys.path.insert(0, str(HERE))
    from scout_speed import synthetic_counts

    one = folder / f"{n_obs}x{n_genes}.h5ad"
    parts = [folder / f"{n_obs}x{n_genes}_part{i}.h5ad" for i in range(n_files)]
    if not (one.exists() and all(p.exists() for p in parts)):
        corpus = synthetic_counts(n_obs, n_genes)
        corpus.write_h5ad(one)
        bounds = [round(i * n_obs / n_files) for i in range(n_files + 1)]
        for i, path in enumerate(parts):
            corpus[bounds[i] : bounds[i + 1]].copy().write_h5ad(path)
        del corpus
    return {"one file": [one], f"{n_files} files": parts}


def peak_rss_mb() -> float:
    """Peak resident memory of this process's own address space, in MiB.

    Not ``ru_maxrss``: on Linux a child started by ``subprocess`` (vfork + exec) inherits its
    parent's peak there, so every child would report at least the parent's peak from writing
    the largest corpus (that made 200k rows read as 1,231 MB where the epoch itself peaks at
    about 680 MB). ``VmHWM`` starts afresh at ``exec``.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: kB as well


def run_epoch(paths: list[str], threads: int) -> dict:
    """One pre-training epoch on the files (in this process); peak RSS and samples/s."""
    import anndata as ad

    import scgtl

    warnings.filterwarnings("ignore")
    scgtl.settings.n_threads = threads
    scgtl.settings.progress_bar = False
    if len(paths) == 1:
        corpus = ad.read_h5ad(paths[0], backed="r")
    else:
        corpus = scgtl.data.read_collection(paths)
    scgtl.GTL.setup_anndata(corpus, units="counts", n_top_genes=None)
    model = scgtl.GTL(corpus)
    start = time.perf_counter()
    model.train(max_epochs=1, compute_guide=False, train_size=1.0)
    seconds = time.perf_counter() - start
    return {
        "n_obs": corpus.n_obs,
        "seconds": round(seconds, 1),
        "samples_per_s": round(corpus.n_obs / seconds),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--files", type=int, default=4, help="files of the multi-file layout")
    parser.add_argument("--data", type=Path, default=Path("/tmp/scgtl_corpus_memory"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/corpus_memory"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run", nargs="+", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_epoch(args.run, args.threads)))
        return
    args.data.mkdir(parents=True, exist_ok=True)
    rows = []
    for n_obs in args.sizes:
        for layout, paths in write_corpora(n_obs, args.genes, args.files, args.data).items():
            command = [sys.executable, __file__, "--threads", str(args.threads), "--run"]
            done = subprocess.run(
                command + [str(p) for p in paths], capture_output=True, text=True, check=True
            )
            row = {"layout": layout, **json.loads(done.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for layout in dict.fromkeys(r["layout"] for r in rows):
        mine = [r for r in rows if r["layout"] == layout]
        ratio = mine[-1]["peak_rss_mb"] / mine[0]["peak_rss_mb"]
        print(f"{layout}: peak RSS {mine[-1]['n_obs']} / {mine[0]['n_obs']} = {ratio:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "corpus_memory.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
