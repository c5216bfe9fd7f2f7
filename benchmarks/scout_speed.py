"""Scouts in seconds (issue 14): ``compute_guide`` against one pre-training epoch.

On a synthetic corpus of sparse negative-binomial counts (seeded; 20,000 cells x 2,000 genes by
default, ten cell types, about 11 % non-zero like highly variable genes of droplet data), or on
a corpus file (``--corpus``, raw counts, its 2,000 most variable genes), this times one
pre-training epoch (``model.train(max_epochs=1, compute_guide=False)``), then
``compute_guide()`` with the scouts run one after another (``batched=False``, the reference)
and batched (the default), and reports each as a multiple of the epoch. To say what "the same
guide" means it compares the batched guide with the reference, beside the reference run again
on 2 threads instead of 1 (rounding alone).

    python benchmarks/scout_speed.py --threads 1 --out benchmarks/results/scout_speed

``--settings 60x30 20x100`` also times other ``<n_scouts>x<n_steps>`` settings (issue 26, item
1) and compares each guide with the default's, beside the default's own spread (its scouts'
next seed).

Run it alone on the machine: it is a timing (the 2-thread reference is not timed).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import torch
from scipy import sparse

import scgtl


def synthetic_counts(n_obs: int, n_genes: int, *, n_types: int = 10, seed: int = 0) -> ad.AnnData:
    """Negative-binomial (gamma-Poisson) counts with cell types and library-size variation."""
    rng = np.random.default_rng(seed)
    types = rng.integers(n_types, size=n_obs)
    gene_mean = rng.lognormal(-3.0, 1.5, size=n_genes)
    type_effect = rng.lognormal(0.0, 0.8, size=(n_types, n_genes))
    library = rng.lognormal(0.0, 0.4, size=(n_obs, 1))
    dispersion = 1.0
    rows = []
    for start in range(0, n_obs, 2000):  # bounds the dense intermediate
        stop = min(start + 2000, n_obs)
        mean = gene_mean * type_effect[types[start:stop]] * library[start:stop]
        counts = rng.poisson(rng.gamma(dispersion, mean / dispersion))
        rows.append(sparse.csr_matrix(counts.astype(np.float32)))
    adata = ad.AnnData(sparse.vstack(rows).tocsr())
    adata.obs_names = [f"cell{i}" for i in range(n_obs)]
    adata.obs["cell_type"] = [f"type{t}" for t in types]
    adata.var_names = [f"gene{j}" for j in range(n_genes)]
    return adata


def agreement(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict:
    """Max and mean absolute difference and correlation of two guides (all values pooled)."""
    a = torch.cat([reference[name].flatten() for name in reference])
    b = torch.cat([other[name].flatten() for name in reference])
    return {
        "max_abs_difference": round(float((a - b).abs().max()), 4),
        "mean_abs_difference": round(float((a - b).abs().mean()), 5),
        "correlation": round(float(torch.corrcoef(torch.stack([a, b]))[0, 1]), 5),
    }


def timed_guide(
    model, args, *, batched: bool, n_scouts: int | None = None, n_steps: int = 100, seed=None
) -> tuple[dict[str, torch.Tensor], float]:
    start = time.perf_counter()
    guide = model.compute_guide(
        n_scouts=args.n_scouts if n_scouts is None else n_scouts,
        n_steps=n_steps,
        seed=args.seed if seed is None else seed,
        batched=batched,
    )
    return guide, time.perf_counter() - start


def cheaper_settings(model, args, reference: dict[str, torch.Tensor], epoch: float) -> list:
    """``--settings``: time other scout settings and compare their guides with the default's.

    The yardstick is the default's own spread: the same settings with the scouts' next seed.
    """
    rows = []
    for setting in ["60x100", *args.settings]:
        n_scouts, n_steps = (int(part) for part in setting.split("x"))
        seeds = (args.seed + 1,) if setting == "60x100" else (args.seed, args.seed + 1)
        for seed in seeds:
            guide, took = timed_guide(
                model, args, batched=True, n_scouts=n_scouts, n_steps=n_steps, seed=seed
            )
            row = {"setting": setting, "seed": seed, "seconds": round(took, 2)}
            row |= {"epochs": round(took / epoch, 2)} | agreement(reference, guide)
            print(row, flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="an .h5ad of raw counts instead of synthetic")
    parser.add_argument("--n-obs", type=int, default=20_000)
    parser.add_argument("--n-genes", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-scouts", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-sequential", action="store_true", help="skip the reference runs")
    parser.add_argument(
        "--settings",
        nargs="*",
        default=[],
        help="other '<n_scouts>x<n_steps>' to time against the default 60x100",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scout_speed"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    scgtl.settings.n_threads = args.threads
    scgtl.settings.progress_bar = False

    if args.corpus is None:
        corpus = synthetic_counts(args.n_obs, args.n_genes, seed=args.seed)
        scgtl.GTL.setup_anndata(corpus, units="counts", n_top_genes=None)
    else:
        corpus = ad.read_h5ad(args.corpus)
        scgtl.GTL.setup_anndata(corpus, units="counts")
    density = corpus.X.nnz / (corpus.n_obs * corpus.n_vars)
    torch.manual_seed(args.seed)
    model = scgtl.GTL(corpus)
    start = time.perf_counter()
    model.train(max_epochs=1, batch_size=args.batch_size, compute_guide=False)
    epoch = time.perf_counter() - start
    result = {
        "corpus": str(args.corpus or "synthetic"),
        "shape": [corpus.n_obs, corpus.n_vars],
        "model_genes": len(model.gene_names),
        "density": round(density, 4),
        "batch_size": args.batch_size,
        "n_scouts": args.n_scouts,
        "threads": args.threads,
        "epoch_seconds": round(epoch, 2),
    }
    guides = {}
    for batched in [True] if args.no_sequential else [False, True]:
        label = "batched" if batched else "sequential"
        guides[label], took = timed_guide(model, args, batched=batched)
        result[f"guide_{label}_seconds"] = round(took, 2)
        result[f"guide_{label}_epochs"] = round(took / epoch, 2)
        print(f"compute_guide ({label}): {took:.1f} s = {took / epoch:.2f} epochs", flush=True)
    if not args.no_sequential:
        result["speed_up"] = round(
            result["guide_sequential_seconds"] / result["guide_batched_seconds"], 1
        )
        result["batched_vs_sequential"] = agreement(guides["sequential"], guides["batched"])
        scgtl.settings.n_threads = 2
        reference_2, _ = timed_guide(model, args, batched=False)
        result["sequential_2_threads_vs_1"] = agreement(guides["sequential"], reference_2)
    if args.settings:
        result["settings_vs_default"] = cheaper_settings(model, args, guides["batched"], epoch)
    print(f"one epoch: {epoch:.1f} s")
    print(json.dumps(result, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    name = "scout_speed" if args.corpus is None else f"scout_speed_{args.corpus.stem}"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
