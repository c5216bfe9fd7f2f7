"""Per-gene plasticity of the PBMC model, and one picture of each scgtl.pl plot (issue 16).

Loads (or pre-trains, as benchmarks/do_no_harm.py does) the model pre-trained on the PBMC corpus
(mudan_pbmcA + kang_stim, raw UMI counts, 2,000 HVGs, seed 0), computes
scgtl.tl.gene_plasticity and asks what the plastic and rigid genes are:

- the 20 most and least plastic genes;
- Spearman correlation of plasticity with each gene's mean, variance and detection rate in the
  corpus (log-normalised as the model reads it: library size over all corpus genes, 1e4, log1p);
- where known PBMC markers, housekeeping, ribosomal (RPL/RPS) and mitochondrial (MT-) genes
  rank, and the cell-type markers scanpy's rank_genes_groups finds on mudan_ref (Wilcoxon, top
  20 per sorted population), against the other genes, also within bins of equal mean expression.

Writes <out>/plasticity.csv and <out>/summary.md, and the figures of docs/research/plasticity.md to
<figures>/: guide.png, gene_plasticity.png, confusion_matrix.png (the model fine-tuned on
mudan_ref, k = 5 per class, seed 0, predicting the rest of mudan_ref) and accuracy_vs_k.png
(from --results, the results.csv of a saved benchmark; without one, a small benchmark on
mudan_ref: gtl, logreg, pca_logreg, k = 1, 3, 5, 5 episodes).

    python benchmarks/gene_plasticity.py --models /work/explore/cache \
        --results benchmarks/results/do_no_harm/mudan_ref/results.csv

29 s with a cached model on the 2-core machine, one thread (pre-training, without one, adds to it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import common
import matplotlib
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from scipy import sparse, stats
from sklearn.metrics import balanced_accuracy_score

import scgtl
from scgtl import benchmark, datasets
from scgtl.data import align_genes, read_log_expression
from scgtl.guide import cluster_groups

matplotlib.use("Agg")

#: Canonical PBMC cell-type markers (T, B, NK, monocytes, DCs, platelets).
PBMC_MARKERS = (
    "CD3D", "CD3E", "IL7R", "CCR7", "CD8A", "CD8B", "CD4", "CD79A", "CD79B", "MS4A1", "CD19",
    "LYZ", "CD14", "S100A8", "S100A9", "FCGR3A", "MS4A7", "NKG7", "GNLY", "GZMB", "PRF1",
    "FCER1A", "CST3", "PPBP", "PF4", "FOXP3",
)  # fmt: skip
#: Classic housekeeping genes.
HOUSEKEEPING = ("ACTB", "GAPDH", "B2M", "TMSB4X", "EEF1A1", "TPT1", "MALAT1", "UBC", "PPIA")
#: Ribosomal protein genes (RPL10A, RPS4X, RPLP0, RPSA...; not kinases such as RPS6KA4).
RIBOSOMAL = r"^(RP[LS]\d+[A-Z]?\d*|RPLP\d|RPSA)$"
#: Bins of the number of scouts whose cells express a gene.
SCOUT_BINS = [-1, 0, 5, 10, 20, 40, 60]
#: Where each figure goes in docs/_static/pl/.
FIGURES = ("guide", "gene_plasticity", "confusion_matrix", "accuracy_vs_k")


def corpus_statistics(corpus: ad.AnnData, genes: pd.Index) -> pd.DataFrame:
    """Mean, variance and detection rate of each gene, log-normalised as the model reads it."""
    counts = sparse.csr_matrix(corpus.X, dtype=np.float64)
    library = np.asarray(counts.sum(axis=1)).ravel()
    columns = corpus.var_names.get_indexer(genes)
    if (columns < 0).any():
        raise ValueError("The corpus lacks some of the model's genes.")
    x = sparse.diags(1e4 / library) @ counts[:, columns]
    x.data = np.log1p(x.data)
    mean = np.asarray(x.mean(axis=0)).ravel()
    mean_square = np.asarray(x.multiply(x).mean(axis=0)).ravel()
    detected = np.asarray((counts[:, columns] > 0).mean(axis=0)).ravel()
    return pd.DataFrame(
        {"mean_log_expression": mean, "variance": mean_square - mean**2, "detected": detected},
        index=genes,
    )


def scout_detection(model) -> pd.Series:
    """In how many scouts each gene is non-zero in at least one of the scout's cells.

    Redraws the scouts' cells as ``compute_guide`` drew them, from the settings the model
    stored (the same seeded pool, groups and tasks), with public steps only: the pool's rows
    read as the model reads its corpus (:func:`pool_expression`), their groups
    (:func:`pool_groups`). A gene that is zero in all of a scout's cells gives its first-layer
    weights no gradient in that scout, so they do not move there.
    """
    settings = model.guide_settings_
    corpus, seed = model.adata, settings["seed"]
    rng = np.random.default_rng(seed)
    size = min(settings["max_cells"], corpus.n_obs)
    pool = np.sort(rng.choice(corpus.n_obs, size=size, replace=False))
    x = pool_expression(model, corpus, pool)
    groups = pool_groups(model, corpus, pool, x, n_clusters=settings["n_clusters"], seed=seed)
    tasks = scgtl.guide.sample_scout_tasks(
        groups,
        n_scouts=settings["n_scouts"],
        n_way=settings["n_way"],
        k_shot=settings["k_shot"],
        seed=seed,
    )
    expressed = sum((x[task.indices] != 0).any(dim=0).numpy().astype(int) for task in tasks)
    return pd.Series(expressed, index=model.gene_names, name="scouts_expressing")


def pool_expression(model, corpus: ad.AnnData, pool: np.ndarray) -> torch.Tensor:
    """The ``pool`` rows of the model's corpus as log expression over its genes.

    As ``compute_guide`` reads them: the model's layer and units, library sizes from the
    corpus column the model registered (``library_size_key``; ``None``: row sums), no warning
    for corpus genes the model does not keep.
    """
    key = model.library_size_key
    library = None
    if key is not None and model.units != "log1p" and key in corpus.obs:
        # setup_anndata checked the column (finite, positive totals).
        library = np.asarray(corpus.obs[key], dtype=np.float64)
    return read_log_expression(
        corpus,
        layer=model.layer,
        units=model.units,
        alignment=align_genes(corpus.var_names, model.gene_names, warn=False),
        indices=pool,
        batch_size=4096,
        device=model.module.device,
        library_size=library,
    )


def pool_groups(
    model, corpus: ad.AnnData, pool: np.ndarray, x: torch.Tensor, *, n_clusters: int, seed: int
) -> np.ndarray:
    """The scouts' classes of the ``pool`` rows, as ``compute_guide`` without ``groups_key``.

    The model's labels where it has a labels column (unlabelled rows: ``"cluster <c>"``);
    elsewhere K-means clusters (:func:`scgtl.guide.cluster_groups`) of the pool's latent codes.
    """
    if model.labels_key is None:
        return _clusters(model, x, n_clusters=n_clusters, seed=seed)
    labels = corpus.obs[model.labels_key].iloc[pool]
    unlabelled = labels.isna().to_numpy()
    groups = labels.astype(str).to_numpy().astype(object)
    if unlabelled.any():
        clusters = _clusters(model, x[unlabelled], n_clusters=n_clusters, seed=seed)
        groups[unlabelled] = [f"cluster {c}" for c in clusters]
    return groups.astype(str)


def _clusters(model, x: torch.Tensor, *, n_clusters: int, seed: int) -> np.ndarray:
    """K-means clusters of the latent codes of ``x``, embedded in chunks as the model does."""
    model.module.eval()
    latent = torch.cat([model.module.embed(chunk) for chunk in x.split(4096)])
    return cluster_groups(latent.cpu().numpy(), n_clusters=n_clusters, seed=seed)


def mudan_markers(folder: Path, genes: pd.Index, n_per_type: int = 20) -> dict[str, list[str]]:
    """Top ``n_per_type`` Wilcoxon markers of each sorted population of mudan_ref, model genes."""
    ref = datasets.mudan_ref(data_dir=folder, download=False)
    ref = ref[:, ref.var_names.isin(genes)].copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    sc.tl.rank_genes_groups(ref, "cell_type", method="wilcoxon", n_genes=n_per_type)
    names = pd.DataFrame(ref.uns["rank_genes_groups"]["names"])
    return {group: list(names[group]) for group in names.columns}


def percentile(frame: pd.DataFrame, genes) -> pd.DataFrame:
    """Plasticity, rank and percentile (100: most plastic) of the ``genes`` the model has."""
    present = [g for g in genes if g in frame.index]
    out = frame.loc[present, ["plasticity", "rank"]].copy()
    out["percentile"] = 100 * (1 - (out["rank"] - 1) / len(frame))
    return out


def group_line(name: str, frame: pd.DataFrame, genes, within: pd.Series) -> str:
    """A Markdown table row: how a gene group ranks, overall and within expression bins.

    ``within``: each gene's plasticity percentile among the genes of its expression bin. The
    p-values are Mann-Whitney U tests of the group against the other genes, on plasticity and
    on ``within``.
    """
    rows = percentile(frame, genes)
    if rows.empty:
        return f"| {name} | 0 | | | | | |"
    others = frame.index.difference(rows.index)
    overall = stats.mannwhitneyu(
        frame.loc[rows.index, "plasticity"], frame.loc[others, "plasticity"]
    )
    in_bin = stats.mannwhitneyu(within[rows.index], within[others])
    return (
        f"| {name} | {len(rows)} | {rows['percentile'].median():.0f} | {overall.pvalue:.1g} | "
        f"{within[rows.index].median():.0f} | {in_bin.pvalue:.1g} | "
        f"{', '.join(rows.sort_values('rank').index[:8])} |"
    )


def analyse(model, folder: Path, out: Path) -> pd.DataFrame:
    """The plasticity table with corpus statistics, and the Markdown summary."""
    frame = scgtl.tl.gene_plasticity(model)
    corpus = common.load_corpus(folder)
    corpus_genes = corpus.var_names.to_series()
    corpus_mt = int(corpus_genes.str.startswith("MT-").sum())
    corpus_ribo = int(corpus_genes.str.match(RIBOSOMAL).sum())
    frame = frame.join(corpus_statistics(corpus, model.gene_names))
    frame["scouts_expressing"] = scout_detection(model)
    frame.to_csv(out / "plasticity.csv")
    ranked = frame.sort_values("rank")
    bins = pd.qcut(frame["mean_log_expression"].rank(method="first"), 10, labels=False)
    within = frame.groupby(bins)["plasticity"].rank(pct=True) * 100
    markers = mudan_markers(folder, model.gene_names)
    all_markers = sorted({g for genes in markers.values() for g in genes})
    genes = frame.index.to_series()
    lines = [
        "# Per-gene plasticity of the PBMC model",
        "",
        f"{len(frame)} genes; guide settings: {model.guide_settings_}",
        "",
        "## The guide per encoder tensor",
        "",
        pd.DataFrame(scgtl.guide.summarize_guide(model.guide))
        .T.assign(max=[float(g.max()) for g in model.guide.values()])
        .round(4)
        .to_markdown(),
        "",
        "## Spearman correlation of plasticity with corpus statistics",
        "",
        "| statistic | rho (mean plasticity) | p | rho (max plasticity) |",
        "|---|---|---|---|",
    ]
    for column in ("mean_log_expression", "variance", "detected", "scouts_expressing"):
        rho, p = stats.spearmanr(frame["mean"], frame[column])
        rho_max, _ = stats.spearmanr(frame["max"], frame[column])
        lines.append(f"| {column} | {rho:.3f} | {p:.1g} | {rho_max:.3f} |")
    detected = frame[frame["detected"] >= frame["detected"].median()]
    rho, p = stats.spearmanr(detected["mean"], detected["detected"])
    lines += [
        "",
        f"Among the {len(detected)} genes detected in at least the median fraction of cells "
        f"({frame['detected'].median():.3f}): rho(mean plasticity, detected) = {rho:.3f} "
        f"(p = {p:.1g}).",
        "",
        f"{(frame['max'] == 0).sum()} genes have plasticity exactly 0; the most detected of "
        f"them is in {frame.loc[frame['max'] == 0, 'detected'].max():.4f} of the corpus cells. "
        f"{(frame['scouts_expressing'] == 0).sum()} genes are zero in every scout's cells; "
        "genes with plasticity 0 among them: "
        f"{((frame['scouts_expressing'] == 0) & (frame['max'] == 0)).sum()}.",
        "",
        "Mean plasticity by the number of scouts whose cells express the gene:",
        "",
        frame.groupby(pd.cut(frame["scouts_expressing"], SCOUT_BINS), observed=True)["mean"]
        .agg(["count", "median", "min", "max"])
        .round(4)
        .to_markdown(),
    ]
    lines += ["", "## Most and least plastic genes", ""]
    columns = ["rank", "plasticity", "max", "mean_log_expression", "detected", "scouts_expressing"]
    for title, part in (("20 most plastic", ranked.head(20)), ("20 least", ranked.tail(20))):
        lines += [f"### {title}", "", part[columns].round(4).to_markdown(), ""]
    lines += [
        "## Gene groups",
        "",
        "Percentile: 100 = most plastic. 'Within bin': percentile among the genes of the same "
        "mean-expression decile (200 genes each). p: Mann-Whitney U, group against the other "
        f"genes. The corpus has {corpus_mt} MT- genes and {corpus_ribo} ribosomal protein genes; "
        "the model keeps those of its 2,000 HVGs.",
        "",
        "| group | genes in model | median percentile | p | median within bin | p within bin "
        "| most plastic |",
        "|---|---|---|---|---|---|---|",
        group_line("known PBMC markers", frame, PBMC_MARKERS, within),
        group_line("mudan_ref markers (top 20 per type)", frame, all_markers, within),
        group_line("housekeeping", frame, HOUSEKEEPING, within),
        group_line("ribosomal proteins", frame, genes[genes.str.match(RIBOSOMAL)], within),
        group_line("mitochondrial MT-", frame, genes[genes.str.startswith("MT-")], within),
        "",
        "### Known PBMC markers",
        "",
        percentile(frame, PBMC_MARKERS)
        .assign(within_bin=within, detected=frame["detected"])
        .dropna()
        .sort_values("rank")
        .round(4)
        .to_markdown(),
        "",
        "### mudan_ref markers per sorted population",
        "",
        "| population | genes in model | median percentile | median within bin |",
        "|---|---|---|---|",
    ]
    for group, group_genes in markers.items():
        rows = percentile(frame, group_genes)
        lines.append(
            f"| {group} | {len(rows)} | {rows['percentile'].median():.0f} | "
            f"{within[rows.index].median():.0f} |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return frame


def draw_figures(model, frame: pd.DataFrame, folder: Path, results: Path | None, figures: Path):
    """One PNG of each scgtl.pl plot kind."""
    matplotlib.rcParams["savefig.dpi"] = 150
    scgtl.pl.guide(model, save=figures / "guide.png")
    scgtl.pl.gene_plasticity(frame, n_genes=20, save=figures / "gene_plasticity.png")
    target = datasets.mudan_ref(data_dir=folder, download=False)
    clf = model.fine_tune(
        target, labels_key="cell_type", k_shot=5, seed=0, units="counts", transductive=False
    )
    clf.predict(target)
    scgtl.pl.confusion_matrix(target, truth_key="cell_type", save=figures / "confusion_matrix.png")
    query = ~target.obs["scgtl_is_support"]
    truth, predicted = target.obs["cell_type"][query], target.obs["scgtl_prediction"][query]
    balanced = balanced_accuracy_score(truth.astype(str), predicted.astype(str))
    print(f"confusion matrix: {query.sum()} query cells, balanced accuracy {balanced:.3f}")
    if results is not None:
        table = pd.read_csv(results)
        title = f"mudan_ref, {table['episode'].nunique()} episodes per k ({results.name})"
    else:
        table = benchmark.few_shot(
            model, target, labels_key="cell_type", units="counts", k_shots=(1, 3, 5),
            n_episodes=5, seed=0, methods=["gtl", "logreg", "pca_logreg"], progress=False,
        ).table  # fmt: skip
        title = "mudan_ref, 5 episodes"
    scgtl.pl.accuracy_vs_k(table, title=title, save=figures / "accuracy_vs_k.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=None, help="folder of cached models")
    parser.add_argument("--results", type=Path, default=None, help="a benchmark's results.csv")
    parser.add_argument("--out", type=Path, default=common.RESULTS / "gene_plasticity")
    parser.add_argument("--figures", type=Path, default=common.REPO / "docs" / "_static" / "pl")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    common.configure(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    folder = common.data_dir()

    def pretrain():
        return benchmark.pretrain(common.load_corpus(folder), units="counts", n_hvg=2000, seed=0)

    start = time.perf_counter()
    model = common.pretrained("pbmc_corpus", pretrain, args.models)
    frame = analyse(model, folder, args.out)
    draw_figures(model, frame, folder, args.results, args.figures)
    print(f"done in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
