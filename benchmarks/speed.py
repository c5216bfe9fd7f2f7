"""Speed and memory of pre-training, scouts and fine-tuning against the machine and scvi-tools.

Issue 14, part 3. On synthetic corpora of sparse negative-binomial counts
(``scout_speed.synthetic_counts``, about 11 % non-zero, ten cell types), written to disk once
per size (``--data``), this measures, each run in a fresh process:

- per corpus size and gene count: one pre-training epoch from a backed ``.h5ad``
  (``setup_anndata(n_top_genes=None)``, ``train(max_epochs=1, compute_guide=False)``, batch
  128): samples/s and peak resident memory (``VmHWM``); with ``--files N`` also from the
  same rows split over N files (``scgtl.data.read_collection``);
- on the smallest corpus in memory: samples/s of scgtl's epoch and of scvi-tools' ``SCVI``
  (same data, batch size and threads) and their ratio; ``compute_guide()`` and fine-tuning
  (k = 5, ``transductive=False``) + ``predict`` on a 10,000-cell study, and the adaptation to
  that study that the plain ``fine_tune`` runs once per study (``adapted_to``), each in epochs
  of that corpus;
- the machine's dense float32 matrix-product FLOP/s on as many threads (the physical limit),
  and pre-training's achieved FLOP/s as a fraction of it. Pre-training's FLOPs per sample are
  counted as 6 x its multiply-adds (forward 2, backward 4): encoder ``n_genes x n_hidden +
  n_hidden x n_latent``, decoder ``n_latent x n_genes``.

``--max-batches`` stops each epoch after that many batches (samples/s and memory are then of
that many batches; say so when quoting). ``--ddp N`` also times 1..N Lightning DDP processes
(``strategy="ddp"``, gloo on CPU, one thread each) on the smallest corpus from disk: the second
of two epochs, so that the processes' start is left out. ``--skip-in-memory`` leaves out the
in-memory part, for a run at scale:

    python benchmarks/speed.py --sizes 20000 60000 200000 --genes 2000 20000 --files 4 \
        --out benchmarks/results/speed
    python benchmarks/speed.py --sizes 100000 1000000 --genes 2000 --files 4 --skip-in-memory \
        --ddp 2 --out benchmarks/results/speed_1m

Run it alone on the machine: it is a timing. Writes ``speed.json``, ``table.md`` (the tables
for ``docs/scaling.md``) and ``speed.png``;
``--combine A/speed.json B/speed.json --out DIR`` plots the rows of several runs together.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
BATCH_SIZE = 128


# ---------------------------------------------------------------------------- the corpora
def corpus_files(n_obs: int, n_genes: int, n_files: int, folder: Path) -> dict[str, list[Path]]:
    """The corpus as one file and, with ``n_files`` > 1, split over that many; reused."""
    sys.path.insert(0, str(HERE))
    from scout_speed import synthetic_counts

    one = folder / f"{n_obs}x{n_genes}.h5ad"
    parts = [folder / f"{n_obs}x{n_genes}_part{i}of{n_files}.h5ad" for i in range(n_files)]
    layouts = {"one file": [one]}
    if n_files > 1:
        layouts[f"{n_files} files"] = parts
    if all(p.exists() for paths in layouts.values() for p in paths):
        return layouts
    corpus = synthetic_counts(n_obs, n_genes)
    corpus.write_h5ad(one)
    if n_files > 1:
        bounds = [round(i * n_obs / n_files) for i in range(n_files + 1)]
        for i, path in enumerate(parts):
            corpus[bounds[i] : bounds[i + 1]].copy().write_h5ad(path)
    return layouts


# ---------------------------------------------------------------------------- child processes
def _quiet(threads: int):
    import logging

    import scgtl

    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    scgtl.settings.n_threads = threads
    scgtl.settings.progress_bar = False
    return scgtl


def _peak_rss_mb() -> int:
    """``VmHWM``, not ``ru_maxrss`` (see ``corpus_memory.peak_rss_mb``: a child inherits that)."""
    sys.path.insert(0, str(HERE))
    from corpus_memory import peak_rss_mb

    return round(peak_rss_mb())


def _epoch(model, max_batches: int | None) -> float:
    kwargs = {} if max_batches is None else {"limit_train_batches": max_batches}
    start = time.perf_counter()
    model.train(max_epochs=1, batch_size=BATCH_SIZE, compute_guide=False, train_size=1.0, **kwargs)
    return time.perf_counter() - start


def _samples(n_obs: int, max_batches: int | None) -> int:
    return n_obs if max_batches is None else min(n_obs, max_batches * BATCH_SIZE)


def child_disk_epoch(paths: list[str], threads: int, max_batches: int | None) -> dict:
    """One epoch from disk: samples/s and peak RSS."""
    import anndata as ad

    scgtl = _quiet(threads)
    if len(paths) == 1:
        corpus = ad.read_h5ad(paths[0], backed="r")
    else:
        corpus = scgtl.data.read_collection(paths)
    scgtl.GTL.setup_anndata(corpus, units="counts", n_top_genes=None)
    seconds = _epoch(scgtl.GTL(corpus), max_batches)
    samples = _samples(corpus.n_obs, max_batches)
    return {
        "samples_per_s": round(samples / seconds),
        "seconds": round(seconds, 1),
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_in_memory(path: str, threads: int, max_batches: int | None) -> dict:
    """In memory: scgtl's epoch, compute_guide, fine-tune + predict on 10k cells."""
    import anndata as ad
    import torch

    sys.path.insert(0, str(HERE))
    from scout_speed import synthetic_counts

    scgtl = _quiet(threads)
    corpus = ad.read_h5ad(path)
    scgtl.GTL.setup_anndata(corpus, units="counts", n_top_genes=None)
    torch.manual_seed(0)
    model = scgtl.GTL(corpus)
    epoch = _epoch(model, max_batches)
    full_epoch = epoch * corpus.n_obs / _samples(corpus.n_obs, max_batches)
    start = time.perf_counter()
    model.compute_guide()
    guide = time.perf_counter() - start
    study = synthetic_counts(10_000, corpus.n_vars, seed=1)
    start = time.perf_counter()
    # The fine-tuning alone: the adaptation the default also runs is timed on its own.
    clf = model.fine_tune(study, labels_key="cell_type", k_shot=5, seed=0, transductive=False)
    clf.predict(study)
    fine_tune = time.perf_counter() - start
    start = time.perf_counter()
    model.adapted_to(study)  # what the plain fine_tune runs once per study (corpus replayed)
    adapt = time.perf_counter() - start
    return {
        "samples_per_s": round(_samples(corpus.n_obs, max_batches) / epoch),
        "epoch_s": round(full_epoch, 1),
        "compute_guide_s": round(guide, 1),
        "compute_guide_epochs": round(guide / full_epoch, 2),
        "fine_tune_predict_10k_s": round(fine_tune, 1),
        "fine_tune_predict_10k_epochs": round(fine_tune / full_epoch, 2),
        "adapt_10k_s": round(adapt, 1),
        "adapt_10k_epochs": round(adapt / full_epoch, 2),
    }


def child_scvi(path: str, threads: int, max_batches: int | None) -> dict:
    """scvi-tools' SCVI, one epoch on the same in-memory data and batch size."""
    import anndata as ad
    import scvi
    import torch

    _quiet(threads)
    torch.set_num_threads(threads)
    corpus = ad.read_h5ad(path)
    scvi.model.SCVI.setup_anndata(corpus)
    model = scvi.model.SCVI(corpus)
    kwargs = {} if max_batches is None else {"limit_train_batches": max_batches}
    start = time.perf_counter()
    model.train(
        max_epochs=1,
        batch_size=BATCH_SIZE,
        train_size=1.0,
        enable_progress_bar=False,
        accelerator="cpu",
        **kwargs,
    )
    seconds = time.perf_counter() - start
    return {"samples_per_s": round(_samples(corpus.n_obs, max_batches) / seconds)}


def epoch_timer():
    """A Lightning callback recording each training epoch's wall time (process start excluded)."""
    from lightning.pytorch import Callback

    class EpochTimer(Callback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def child_ddp(path: str, threads: int, max_batches: int | None, devices: int) -> dict | None:
    """Two epochs from a backed file on ``devices`` CPU processes (gloo): the second's samples/s.

    The first epoch is left out: it holds the processes' start and the first reads. Only
    process 0 reports (Lightning's "ddp" runs this script again for the others).
    """
    import anndata as ad

    scgtl = _quiet(threads)
    corpus = ad.read_h5ad(path, backed="r")
    scgtl.GTL.setup_anndata(corpus, units="counts", n_top_genes=None)
    model = scgtl.GTL(corpus)
    timer = epoch_timer()
    kwargs = {} if max_batches is None else {"limit_train_batches": max_batches}
    distributed = {"devices": devices, "strategy": "ddp"} if devices > 1 else {"devices": 1}
    model.train(
        max_epochs=2,
        batch_size=BATCH_SIZE,
        compute_guide=False,
        train_size=1.0,
        accelerator="cpu",
        callbacks=[timer],
        **distributed,
        **kwargs,
    )
    if not model.trainer.is_global_zero:
        return None
    per_process = _samples(-(-corpus.n_obs // devices), max_batches)
    return {
        "devices": devices,
        "samples_per_s": round(per_process * devices / timer.seconds[-1]),
        "epoch_s": round(timer.seconds[-1], 1),
    }


def child_matmul(threads: int) -> dict:
    """The machine's dense float32 matrix-product FLOP/s on ``threads`` threads (best of 20)."""
    import torch

    torch.set_num_threads(threads)
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return {"matmul_gflops": round(2 * n**3 / best / 1e9, 1)}


CHILDREN = {
    "disk": child_disk_epoch,
    "memory": child_in_memory,
    "scvi": child_scvi,
    "matmul": child_matmul,
    "ddp": child_ddp,
}


def run_child(kind: str, args, paths: list[Path] | None = None, devices: int = 1) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
    command += ["--threads", str(args.threads)]
    if args.max_batches is not None:
        command += ["--max-batches", str(args.max_batches)]
    command += ["--devices", str(devices), *(str(Path(p).resolve()) for p in paths or [])]
    # The threads of every library, also in the processes that DDP starts anew.
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    env = {k: v for k, v in env.items() if not k.startswith(("LOCAL_RANK", "SLURM_"))}
    # In the data folder: Lightning's logs of the DDP runs land there, not in the repository.
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=args.data)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- report
def flops_per_sample(n_genes: int) -> int:
    """6 x the multiply-adds of one sample through the default model (encoder and decoder)."""
    import inspect

    import scgtl

    defaults = inspect.signature(scgtl.GTL).parameters
    n_hidden, n_latent = defaults["n_hidden"].default, defaults["n_latent"].default
    return 6 * (n_genes * n_hidden + n_hidden * n_latent + n_latent * n_genes)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    for key in dict.fromkeys((r["n_genes"], r["layout"]) for r in rows):
        mine = [r for r in rows if (r["n_genes"], r["layout"]) == key]
        sizes = [r["n_obs"] for r in mine]
        label = f"{key[0]:,} genes, {key[1]}"
        time_ax.plot(sizes, [r["n_obs"] / r["samples_per_s"] for r in mine], "o-", label=label)
        memory_ax.plot(sizes, [r["peak_rss_mb"] for r in mine], "o-", label=label)
    sizes = sorted({r["n_obs"] for r in rows})
    time_ax.set(xscale="log", yscale="log", xlabel="corpus size (samples)", ylabel="s per epoch")
    memory_ax.set(xscale="log", xlabel="corpus size (samples)", ylabel="peak RSS (MB)")
    for ax in (time_ax, memory_ax):
        ax.set_xticks(sizes, [f"{n // 1000}k" for n in sizes])
        ax.minorticks_off()
    memory_ax.set_ylim(bottom=0)
    time_ax.legend(fontsize=8)
    fig.suptitle("One pre-training epoch from disk")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 60_000, 200_000])
    parser.add_argument("--genes", type=int, nargs="+", default=[2_000, 20_000])
    parser.add_argument("--files", type=int, default=4, help="also split over this many files")
    parser.add_argument("--max-batches", type=int, help="stop each epoch after this many")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=Path("/tmp/scgtl_speed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed"))
    parser.add_argument(
        "--combine", type=Path, nargs="+", help="only plot the rows of these speed.json files"
    )
    parser.add_argument(
        "--skip-in-memory",
        action="store_true",
        help="time only the epochs from disk (e.g. --sizes 100000 1000000)",
    )
    parser.add_argument(
        "--ddp",
        type=int,
        default=1,
        help="also time 1..N DDP processes (gloo) on the smallest size",
    )
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        function = CHILDREN[args.child]
        needs_paths = args.child in ("disk", "memory", "scvi", "ddp")
        paths = args.paths if args.child == "disk" else (args.paths or [None])[0]
        call = (paths, args.threads, args.max_batches) if needs_paths else (args.threads,)
        if args.child == "ddp":
            call += (args.devices,)
        report = function(*call)
        if report is not None:  # DDP's other processes say nothing
            print(json.dumps(report))
        return

    args.out.mkdir(parents=True, exist_ok=True)
    if args.combine:
        rows = [row for path in args.combine for row in json.loads(path.read_text())["disk"]]
        plot(rows, args.out / "speed.png")
        print(f"wrote {args.out / 'speed.png'}")
        return
    args.data.mkdir(parents=True, exist_ok=True)
    result = {"threads": args.threads, "max_batches": args.max_batches, **run_child("matmul", args)}
    print(json.dumps(result), flush=True)
    rows = []
    for n_genes in args.genes:
        for n_obs in args.sizes:
            files = args.files if n_genes == min(args.genes) else 1
            for layout, paths in corpus_files(n_obs, n_genes, files, args.data).items():
                row = {"n_obs": n_obs, "n_genes": n_genes, "layout": layout}
                row.update(run_child("disk", args, paths))
                flops = flops_per_sample(n_genes) * row["samples_per_s"]
                row["flops_fraction"] = round(flops / (result["matmul_gflops"] * 1e9), 3)
                rows.append(row)
                print(json.dumps(row), flush=True)
    smallest = corpus_files(min(args.sizes), min(args.genes), 1, args.data)["one file"]
    if not args.skip_in_memory:
        result["in_memory"] = in_memory(args, smallest, result["matmul_gflops"])
    if args.ddp > 1:
        result["ddp"] = [
            run_child("ddp", args, smallest, devices=n) for n in range(1, args.ddp + 1)
        ]
        for row in result["ddp"]:
            row["speed_up"] = round(row["samples_per_s"] / result["ddp"][0]["samples_per_s"], 2)
            print(json.dumps(row), flush=True)
    for key in dict.fromkeys((r["n_genes"], r["layout"]) for r in rows):
        mine = [r for r in rows if (r["n_genes"], r["layout"]) == key]
        if len(mine) > 1:
            ratio = mine[-1]["peak_rss_mb"] / mine[0]["peak_rss_mb"]
            print(f"{key}: peak RSS {mine[-1]['n_obs']} / {mine[0]['n_obs']} = {ratio:.2f}")
    result["disk"] = rows
    (args.out / "speed.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "table.md").write_text(markdown(result))
    plot(rows, args.out / "speed.png")
    print(markdown(result))
    print(f"wrote {args.out / 'speed.json'}, table.md and speed.png")


def in_memory(args, paths: list[Path], matmul_gflops: float) -> dict:
    """The in-memory epoch, guide, fine-tuning and adaptation, beside scvi-tools' SCVI."""
    timed = run_child("memory", args, paths)
    timed["scvi_samples_per_s"] = run_child("scvi", args, paths)["samples_per_s"]
    timed["ratio_to_scvi"] = round(timed["samples_per_s"] / timed["scvi_samples_per_s"], 2)
    flops = flops_per_sample(min(args.genes)) * timed["samples_per_s"]
    timed["flops_fraction"] = round(flops / (matmul_gflops * 1e9), 3)
    print(json.dumps(timed), flush=True)
    return timed


def markdown(result: dict) -> str:
    """The tables of a run: epochs from disk with their memory, DDP scaling, the ratios."""
    lines = [
        "| cells | genes | layout | samples/s | epoch (s) | peak memory (MB) | memory / smallest |",
        "|---|---|---|---|---|---|---|",
    ]
    first: dict[tuple, float] = {}
    for row in result["disk"]:
        key = (row["n_genes"], row["layout"])
        first.setdefault(key, row["peak_rss_mb"])
        lines.append(
            f"| {row['n_obs']:,} | {row['n_genes']:,} | {row['layout']} | "
            f"{row['samples_per_s']:,} | {row['seconds']} | {row['peak_rss_mb']:,} | "
            f"{row['peak_rss_mb'] / first[key]:.2f} |"
        )
    if "ddp" in result:
        lines += ["", "| DDP processes (gloo, CPU) | samples/s | epoch (s) | speed-up |"]
        lines.append("|---|---|---|---|")
        lines += [
            f"| {r['devices']} | {r['samples_per_s']:,} | {r['epoch_s']} | {r['speed_up']:.2f} |"
            for r in result["ddp"]
        ]
    if "in_memory" in result:
        m = result["in_memory"]
        lines += [
            "",
            "| in memory | measured | goal |",
            "|---|---|---|",
            f"| samples/s, ratio to SCVI | {m['samples_per_s']:,}, {m['ratio_to_scvi']}x "
            "| >= 1.5x |",
            f"| compute_guide | {m['compute_guide_s']} s = {m['compute_guide_epochs']} epochs "
            "| <= 1 |",
            f"| fine-tune + predict, 10k cells | {m['fine_tune_predict_10k_s']} s = "
            f"{m['fine_tune_predict_10k_epochs']} epochs | <= 0.5 |",
            f"| adaptation, 10k cells | {m['adapt_10k_s']} s = {m['adapt_10k_epochs']} epochs "
            "| <= 1 |",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
