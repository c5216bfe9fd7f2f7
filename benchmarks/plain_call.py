"""The plain ``fine_tune`` call on a half-labelled study beside every peer (issue 25).

A user's study is half-labelled: all of its cells are there, a few of them labelled. The plain
call, ``model.fine_tune(study, labels_key=...)`` with no switches, now reads the study's other
cells (``transductive`` by default); the benchmark's ``gtl_transductive`` is that call on each
episode (support labelled, every other row unlabelled). It stands beside the inductive call
(``gtl``: ``transductive=False``), CellTypist (the package, trained on the same supports),
logistic regression, and the scanpy workflow's transductive baselines (PCA of all cells +
logistic regression, kNN, label spreading, self-training), every baseline on the study's own
genes, on the same seeded episodes.

The model is the shipped model's recipe, leave-one-study-out: pre-trained without the study
being scored (pbmc68k_reduced is in no corpus and is scored on the full recipe), and loaded as a
user gets ``scgtl.models.load``'s model: without its corpus, so adaptation replays no corpus
rows. The models come from ``benchmarks/shipped_model.py``'s cache (``--models``), built there
on first use.

    python benchmarks/plain_call.py --seed 1 --n-episodes 10 --out benchmarks/results/plain_call_s1
    python benchmarks/plain_call.py --out benchmarks/results/plain_call

Writes ``<out>/episodes.csv`` and ``<out>/summary.md``: mean ± sd per target, method and k,
each GTL row's difference from the best peer, and the fit time per episode.

    python benchmarks/plain_call.py --seed 1 --n-episodes 10 --methods gtl --wide-forms auto \
        --out benchmarks/results/plain_call_s1_wide_auto

adds the plain and inductive calls with another form of the wide path (``FineTunePlan.wide_form``),
and ``--guides 60x30 20x100`` the plain call with guides from fewer scout steps or scouts,
recomputed on each model's corpus (``<out>/guides.csv``: each guide's time and its agreement with
the model's own).

    python benchmarks/plain_call.py --novelty --out benchmarks/results/plain_call_novelty

runs instead ``scgtl.benchmark.novelty`` (one class left out of each episode's support, k = 5,
``--rounds`` episodes per class) on the developer PBMC targets with the same models: the
inductive call, the plain (transductive) call and ``pca_logreg``. Writes ``<out>/novelty.csv``
and ``<out>/novelty.md``.

    python benchmarks/plain_call.py --missing-genes --seeds 0 1 2 \
        --out benchmarks/results/plain_call_missing_genes

fine-tunes the plain call at k = 5 on each developer target (one fit per seed), then predicts
the other cells of the study with only a random fraction of its genes (``MISSING_FRACTIONS``;
a query sharing under 5 % of the model's genes is refused and left out), and scores the
confidence as it is and discounted by the fraction ``g`` of the classifier's genes found
(logits times ``g ** a``, ``a`` in ``DISCOUNT_POWERS``, ``g`` pooled over the two paths by the
wide weight): accuracy, mean confidence and ECE. Writes ``<out>/missing_genes.csv`` and
``<out>/missing_genes.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common
import numpy as np
import pandas as pd
from scipy.special import softmax

import scgtl
from scgtl import benchmark

TARGETS = common.LEAVE_ONE_OUT_TARGETS
DEVELOPER_TARGETS = ("mudan_ref", "kang_stim", "yan", "pbmc68k_reduced")
#: Fractions of the study's genes a query keeps (``--missing-genes``).
MISSING_FRACTIONS = (0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
#: Powers ``a`` of the confidence discount ``g ** a`` tried (``0``: none).
DISCOUNT_POWERS = (0.0, 0.25, 0.5, 1.0)
#: The developer targets with several cell types (novelty needs a class to leave out).
NOVELTY_TARGETS = ("mudan_ref", "pbmc68k_reduced")
GTL_ROWS = ("gtl_transductive", "gtl")
PEERS = (
    "celltypist",
    "logreg",
    "pca_logreg",
    "pca_knn",
    "pca_label_spreading",
    "pca_self_training",
)


def adaptation_variants(corpus_models: bool = False) -> dict:
    """The plain call with a shorter adaptation (``--variants``), for choosing on seed 1.

    The shipped model has no corpus, so adaptation replays none (``replay=0``); these adapt
    for fewer steps than ``model.adapt``'s 1,000, once per target, then fine-tune as the plain
    call does (the adapted model is recognised and kept). With ``--corpus-models`` the models
    have their corpus, and the variants replay it as the plain call does (``replay=0.5``), for
    150 steps (about one epoch of the 20,000-row corpus of ``benchmarks/speed.py``) and 300.
    """
    replay, steps = (0.5, (150, 300)) if corpus_models else (0.0, (100, 300))
    return {
        f"gtl_transductive_adapt{n}": benchmark.FineTuneMethod(
            f"gtl_transductive_adapt{n}",
            adapt={"n_steps": n, "replay": replay},
            transductive=True,
        )
        for n in steps
    }


def wide_form_variants(forms) -> dict:
    """The plain call, and the inductive call, with other forms of the wide path
    (``--wide-forms``; ``FineTunePlan.wide_form``), for choosing on seed 1.

    ``gtl_transductive_<form>`` reads the study as the plain call does; ``gtl_<form>`` is the
    inductive call (forms that need the study's rows are skipped there).
    """
    methods = {}
    for form in forms:
        methods[f"gtl_transductive_{form}"] = benchmark.FineTuneMethod(
            f"gtl_transductive_{form}", transductive=True, plan_kwargs={"wide_form": form}
        )
        if form in ("genes", "scaled_genes", "auto"):
            methods[f"gtl_{form}"] = benchmark.FineTuneMethod(
                f"gtl_{form}", plan_kwargs={"wide_form": form}
            )
    return methods


def guide_variants(target: str, args) -> tuple[dict, list[dict]]:
    """``--guides``: the plain call with guides from other scout settings (issue 26, item 1).

    Each setting ``"<n_scouts>x<n_steps>"`` recomputes the guide of ``target``'s model on its own
    corpus (the recipe's scouts, drawn from the studies' labels, seed ``--guide-seed``), and
    fine-tunes with it as the plain call does. Returns the methods and, per guide, its time
    (one thread) and its agreement with the model's own guide (60 scouts x 100 steps, seed 0).
    """
    if not args.guides:
        return {}, []
    from scout_speed import agreement

    model = scgtl.GTL.load(args.models / recipe_model_name(target))  # its corpus attached
    shipped = {name: value.clone() for name, value in model.guide_.items()}
    methods, rows = {}, []
    for setting in args.guides:
        n_scouts, n_steps = (int(part) for part in setting.split("x"))
        start = time.perf_counter()
        guide = model.compute_guide(
            n_scouts=n_scouts,
            n_steps=n_steps,
            groups_key="scout_label",  # scgtl.data.concat_studies' column
            seed=args.guide_seed,
            progress=False,
        )
        took = time.perf_counter() - start
        name = f"gtl_transductive_guide{setting}_s{args.guide_seed}"
        methods[name] = benchmark.FineTuneMethod(
            name, transductive=True, plan_kwargs={"guide": guide}
        )
        rows.append(
            {"target": target, "method": name, "seconds": round(took, 1)}
            | agreement(shipped, guide)
        )
    return methods, rows


def recipe_model_name(target: str) -> str:
    """The cache name of the recipe's model without ``target``'s study."""
    left_out = TARGETS[target][0]
    return f"multi_without_{left_out}" if left_out else "multi_full"


class ChooseByLogLoss(benchmark.FineTuneMethod):
    """``--choice``: fit both calls, keep the one whose wide-path cross-validation has the lower
    out-of-fold log-loss (each at its own chosen weight); without cross-validation (a class with
    one cell), the call that reads the study. A variant measured on seed 1, not adopted."""

    def __init__(self):
        super().__init__("gtl_choice", transductive=True)

    def fit(self, task, *, seed: int):
        reading = super().fit(task, seed=seed)
        alone = benchmark.builtin_methods()["gtl"].fit(task, seed=seed)  # the inductive call
        losses = [c.fit_record_.get("wide_cv_log_loss") for c in (reading, alone)]
        if any(loss is None for loss in losses):
            return reading
        return alone if min(losses[1]) < min(losses[0]) else reading


def model_for(target: str, folder: Path, cache: Path, *, corpus_models: bool = False):
    """The recipe's model without ``target``'s study, loaded without its corpus.

    ``corpus_models``: the PBMC-only model instead, with its corpus attached (a user's own).
    """
    if corpus_models:
        return common.pbmc_model(TARGETS[target][1], folder, cache)
    # Built if missing.
    common.multi_models(TARGETS[target][0], folder, cache, variants=False, n_top_genes=None)
    name = recipe_model_name(target)
    # The cache keeps each model with its corpus (scvi-tools' load attaches a saved adata.h5ad);
    # a copy saved without it is loaded as scgtl.models.load gives a shipped model (until
    # 2026-12-07 the corpus was attached here, so the plain call adapted with corpus replay).
    bare = cache / f"{name}_without_corpus"
    if not (bare / "model.pt").exists():
        scgtl.GTL.load(cache / name).save(bare, overwrite=True, save_anndata=False)
    model = scgtl.GTL.load(bare)
    if model.adata is not None:
        raise RuntimeError(f"{bare} holds a corpus; delete it to rebuild the bare copy.")
    return model


def run(args) -> pd.DataFrame:
    folder = Path(args.data_dir)
    rows, guide_rows = [], []
    for target_name in args.targets:
        study, labels_key, units = common.load_study(target_name, folder)
        model = model_for(target_name, folder, args.models, corpus_models=args.corpus_models)
        guided, guide_table = guide_variants(target_name, args)
        guide_rows += guide_table
        start = time.perf_counter()
        res = benchmark.few_shot(
            model,
            study,
            labels_key=labels_key,
            units=units,
            k_shots=args.k_shots,
            n_episodes=args.n_episodes,
            seed=args.seed,
            methods=[
                *args.methods,
                *(adaptation_variants(args.corpus_models).values() if args.variants else ()),
                *([ChooseByLogLoss()] if args.choice else []),
                *wide_form_variants(args.wide_forms).values(),
                *guided.values(),
                *args.peers,
            ],
            n_threads=1,
            progress=False,
        )
        rows.append(res.table.assign(target=target_name))
        print(f"{target_name}: {time.perf_counter() - start:.0f} s", flush=True)
    if guide_rows:
        pd.DataFrame(guide_rows).to_csv(args.out / "guides.csv", index=False)
        print(pd.DataFrame(guide_rows).to_markdown(index=False))
    return pd.concat(rows, ignore_index=True)


def run_novelty(args) -> pd.DataFrame:
    folder = Path(args.data_dir)
    rows = []
    for target_name in NOVELTY_TARGETS:
        study, labels_key, units = common.load_study(target_name, folder)
        model = model_for(target_name, folder, args.models)
        n_classes = study.obs[labels_key].nunique()
        table = benchmark.novelty(
            model,
            study,
            labels_key=labels_key,
            units=units,
            k_shot=5,
            n_episodes=args.rounds * n_classes,
            seed=args.seed,
            n_threads=1,
            progress=False,
        )
        rows.append(table.assign(target=target_name))
    return pd.concat(rows, ignore_index=True)


def run_missing_genes(args) -> pd.DataFrame:
    folder = Path(args.data_dir)
    rows = []
    for target_name in args.targets:
        study, labels_key, units = common.load_study(target_name, folder)
        model = model_for(target_name, folder, args.models)
        labels = study.obs[labels_key].astype(str).to_numpy()
        for seed in args.seeds:
            clf = model.fine_tune(study, labels_key=labels_key, k_shot=5, seed=seed, units=units)
            rows += _missing_gene_rows(clf, study, labels, seed=seed, target=target_name)
    return pd.DataFrame(rows)


def _missing_gene_rows(clf, study, labels, *, seed: int, target: str) -> list[dict]:
    """The classifier's query (every row but the support) with a fraction of the genes."""
    query = ~study.obs_names.isin(clf.fit_record_["support_obs_names"])
    wide = pd.Index(clf.wide_gene_names_)
    network_genes = pd.Index(clf.gene_names).intersection(wide)  # what the study gave it
    weight = clf.fit_record_["wide_weight"]
    rng = np.random.default_rng(seed)
    rows = []
    for fraction in MISSING_FRACTIONS:
        n_keep = max(1, round(fraction * study.n_vars))
        kept = np.sort(rng.choice(study.n_vars, n_keep, replace=False))
        try:
            proba = clf.predict_proba(study[query][:, kept].copy()).to_numpy()
        except ValueError:
            continue  # shares under 5 % of the model's genes: refused by align_genes
        genes = pd.Index(study.var_names[kept])
        found_wide = len(genes.intersection(wide)) / len(wide)
        found_network = len(genes.intersection(network_genes)) / max(len(network_genes), 1)
        found = (1 - weight) * found_network + weight * found_wide
        log_proba = np.log(np.clip(proba, 1e-12, None))
        for power in DISCOUNT_POWERS:
            discounted = softmax(log_proba * found**power, axis=1)
            correct = np.asarray(clf.classes_)[discounted.argmax(1)] == labels[query]
            confidence = discounted.max(1)
            rows.append(
                {
                    "target": target,
                    "seed": seed,
                    "fraction": fraction,
                    "genes_found": found,
                    "power": power,
                    "accuracy": correct.mean(),
                    "confidence": confidence.mean(),
                    "ece": benchmark.expected_calibration_error(confidence, correct),
                }
            )
    return rows


def missing_genes_summary(table: pd.DataFrame) -> str:
    """Accuracy, mean confidence and ECE per fraction of genes kept and discount power."""
    figures = table.groupby(["fraction", "power"])[["accuracy", "confidence", "ece"]].mean()
    overall = table.groupby("power")["ece"].mean().rename("mean ECE over fractions")
    return (
        figures.unstack("power").round(3).to_markdown()
        + "\n\n"
        + overall.round(4).to_frame().to_markdown()
        + "\n"
    )


def novelty_summary(table: pd.DataFrame) -> str:
    """Per target and method: the means over left-out classes (summarize_novelty)."""
    parts = [
        benchmark.summarize_novelty(group).assign(target=target)
        for target, group in table.groupby("target", sort=False)
    ]
    summary = pd.concat(parts).set_index(["target", "method"]).drop(columns="n_left_out_classes")
    return summary.round(3).to_markdown() + "\n"


def summary(episodes: pd.DataFrame, gtl_rows) -> str:
    """Per target and k: every method's mean ± sd, GTL − best peer, seconds per episode."""
    grouped = episodes.groupby(["target", "k", "method"])
    means = grouped["balanced_accuracy"].mean()
    spread = grouped["balanced_accuracy"].std()
    seconds = grouped["fit_seconds"].mean()
    methods = [m for m in [*gtl_rows, *PEERS] if m in set(episodes["method"])]
    lines = [
        "| target | k | "
        + " | ".join(methods)
        + " | best peer | "
        + " | ".join(f"{m} − best peer" for m in gtl_rows)
        + " |",
        "|---|---|" + "---|" * (len(methods) + 1 + len(gtl_rows)),
    ]
    for (target, k), _ in means.groupby(level=["target", "k"]):
        row = means.loc[(target, k)]
        peers = row.reindex([p for p in PEERS if p in row.index])
        best = peers.idxmax()
        cells = [f"{row[m]:.3f} ± {spread.loc[(target, k, m)]:.3f}" for m in methods]
        diffs = [f"{100 * (row[m] - peers[best]):+.1f}" for m in gtl_rows]
        lines.append(
            f"| {target} | {k} | " + " | ".join(cells) + f" | {best} | " + " | ".join(diffs) + " |"
        )
    by_target = means.unstack("method").groupby(level="target").mean()
    lines += [
        "",
        "Mean over k:",
        "",
        "| target | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for target, row in by_target.iterrows():
        lines.append(f"| {target} | " + " | ".join(f"{row[m]:.3f}" for m in methods) + " |")
    mean_all = by_target.mean()
    lines.append("| mean | " + " | ".join(f"{mean_all[m]:.3f}" for m in methods) + " |")
    time_row = seconds.groupby(level="method").mean()
    lines += [
        "",
        "Fit seconds per episode (mean over targets and k; adaptation once per study "
        "not included):",
        "",
        "| " + " | ".join(methods) + " |",
        "|" + "---|" * len(methods),
        "| " + " | ".join(f"{time_row[m]:.2f}" for m in methods) + " |",
    ]
    return "\n".join(lines) + "\n"


def summary_gtl(episodes: pd.DataFrame) -> str:
    """Mean balanced accuracy per target, method and k, without peers (``--peers`` empty)."""
    means = episodes.groupby(["target", "method", "k"])["balanced_accuracy"].mean().unstack("k")
    means["mean over k"] = means.mean(axis=1)
    return means.round(3).to_markdown() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets", nargs="+", default=list(DEVELOPER_TARGETS), choices=list(TARGETS)
    )
    parser.add_argument("--methods", nargs="+", default=list(GTL_ROWS))
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--variants", action="store_true", help="shorter adaptations too")
    parser.add_argument("--choice", action="store_true", help="the per-fit choice too")
    parser.add_argument(
        "--wide-forms", nargs="*", default=[], help="other wide-path forms too, e.g. auto"
    )
    parser.add_argument(
        "--guides", nargs="*", default=[], help="guides from other scouts, e.g. 60x30 20x100"
    )
    parser.add_argument("--guide-seed", type=int, default=0, help="--guides: the scouts' seed")
    parser.add_argument(
        "--corpus-models", action="store_true", help="PBMC-only models with their corpus"
    )
    parser.add_argument("--novelty", action="store_true", help="the novelty protocol instead")
    parser.add_argument("--rounds", type=int, default=2, help="--novelty: episodes per class")
    parser.add_argument("--missing-genes", action="store_true", help="queries missing genes")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="--missing-genes")
    parser.add_argument("--k-shots", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--n-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--models",
        type=Path,
        default=common.RESULTS / "models_shipped",
        help="shipped_model.py's model cache",
    )
    parser.add_argument("--data-dir", default=str(common.data_dir()))
    parser.add_argument("--out", type=Path, default=common.RESULTS / "plain_call")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    scgtl.settings.n_threads = args.threads
    scgtl.settings.progress_bar = False
    args.out.mkdir(parents=True, exist_ok=True)
    studies = {
        "missing_genes": (args.missing_genes, run_missing_genes, missing_genes_summary),
        "novelty": (args.novelty, run_novelty, novelty_summary),
    }
    for name, (asked, run_study, summarize) in studies.items():
        if asked:
            table = run_study(args)
            table.to_csv(args.out / f"{name}.csv", index=False)
            text = summarize(table)
            (args.out / f"{name}.md").write_text(text)
            print(text)
            return
    problem = benchmark.celltypist_problem()
    if problem is not None:
        parser.error(problem)
    episodes = run(args)
    episodes.to_csv(args.out / "episodes.csv", index=False)
    gtl_rows = [
        *args.methods,
        *(adaptation_variants(args.corpus_models) if args.variants else ()),
        *(["gtl_choice"] if args.choice else []),
        *wide_form_variants(args.wide_forms),
        *(f"gtl_transductive_guide{setting}_s{args.guide_seed}" for setting in args.guides),
    ]
    text = summary(episodes, gtl_rows) if args.peers else summary_gtl(episodes)
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
