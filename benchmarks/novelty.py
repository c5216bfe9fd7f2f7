"""Novel-type detection and calibration on the developer targets (issue 15).

Report (seed 0, the figures of docs/research/novelty.md, "Results (seed 0)", and of
docs/novelty.md, "Where it stands"):

    python benchmarks/novelty.py --models benchmarks/results/models --out benchmarks/results/novelty

runs scgtl.benchmark.novelty (one class left out of each episode's support, k = 5) on mudan_ref
and pbmc68k_reduced, `--rounds` episodes per left-out class, and the ordinary few-shot
benchmark (gtl and logreg, k = 1, 3, 5) on all five developer targets for the expected
calibration error (ECE) of their confidence. Writes <out>/novelty.csv (every episode),
<out>/novelty_summary.csv, <out>/ece.csv (every episode) and <out>/novelty.md.

Choice (seed 1, what the score, the "auto" rule and the calibration were chosen on:
docs/research/novelty.md, "How the defaults were chosen"):

    python benchmarks/novelty.py --choose --seed 1 --rounds 1 --models benchmarks/results/models \\
        --out benchmarks/results/novelty_choice

scores every candidate novelty score on the same left-out fits (distance to the nearest
prototype in the fine-tuned latent space over the pooled or per-class spread, distance to the
nearest support cell, 1 - max probability, the network head's energy and max-logit, the
prototype distance in the pre-trained latent space, the sum of the two prototype distances
(the package's score), the prototype distance with Fisher-weighted dimensions, a shrunk
Mahalanobis distance, the pre-trained autoencoder's reconstruction error), the "auto"
threshold from the cross-validation folds or by leave-one-out at several levels, and the ECE
of the few-shot episodes with and without the temperature. Writes <out>/candidates.csv,
<out>/auto.csv and <out>/calibration.csv.

The pre-trained models are those of benchmarks/do_no_harm.py (`--models` reuses its cache).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common
import numpy as np
import pandas as pd
import torch
from scipy.special import log_softmax, logsumexp, softmax
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from scgtl import benchmark
from scgtl.benchmark import (
    FewShotTask,
    TargetData,
    builtin_methods,
    expected_calibration_error,
    left_out_episodes,
    make_episodes,
    quiet,
)
from scgtl.data import align_genes, iter_log_expression
from scgtl.train import (
    class_prototypes,
    conformal_threshold,
    fit_temperature,
    leave_one_out_novelty,
    prototype_novelty,
)

NOVELTY_TARGETS = ("mudan_ref", "pbmc68k_reduced")
ECE_TARGETS = ("kang_stim", "mudan_ref", "pbmc68k_reduced", "yan", "default")
LEVELS = (0.8, 0.9, 0.95, 0.99)
#: Priors on log T of the temperature tried (None: maximum likelihood).
PRIOR_SCALES = (None, 2.0, 1.0, 0.5, 0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choose", action="store_true", help="score the candidates instead")
    parser.add_argument("--novelty-targets", nargs="*", default=list(NOVELTY_TARGETS))
    parser.add_argument("--ece-targets", nargs="*", default=list(ECE_TARGETS))
    parser.add_argument("--k-shot", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="episodes per left-out class")
    parser.add_argument("--ece-k-shots", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--ece-episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=common.RESULTS / "novelty")
    args = parser.parse_args()
    common.configure(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.choose:
        choose(args)
    else:
        report(args)


# --------------------------------------------------------------------------------- the report
def report(args) -> None:
    """The novelty protocol and the ECE of the few-shot benchmark, package defaults."""
    tables, summaries = [], []
    for name, model, target, labels_key, units in common.tasks(
        args.novelty_targets, common.data_dir(), args.models
    ):
        n_classes = target.obs[labels_key].value_counts().ge(args.k_shot + 1).sum()
        start = time.perf_counter()
        table = benchmark.novelty(
            model,
            target,
            labels_key=labels_key,
            units=units,
            k_shot=args.k_shot,
            n_episodes=args.rounds * int(n_classes),
            seed=args.seed,
            progress=False,
        ).assign(target=name)
        tables.append(table)
        summary = benchmark.summarize_novelty(table).assign(target=name)
        summaries.append(summary)
        print(f"{name} novelty ({time.perf_counter() - start:.0f} s)", flush=True)
        print(summary.round(3).to_string(), flush=True)
    ece_rows = []
    studies = common.tasks(args.ece_targets, common.data_dir(), args.models)
    for name, model, target, labels_key, units in studies:
        start = time.perf_counter()
        result = common.study_few_shot(
            model,
            target,
            labels_key,
            units,
            k_shots=args.ece_k_shots,
            n_episodes=args.ece_episodes,
            seed=args.seed,
            methods=["gtl", "logreg"],
        )
        ece_rows.append(result.table.assign(target=name))
        means = result.table.groupby(["method", "k"])["ece"].mean().unstack("k")
        print(f"{name} ECE ({time.perf_counter() - start:.0f} s)\n{means.round(3)}", flush=True)
    if tables:
        pd.concat(tables).to_csv(args.out / "novelty.csv", index=False)
        pd.concat(summaries).to_csv(args.out / "novelty_summary.csv", index=False)
    ece = pd.concat(ece_rows) if ece_rows else pd.DataFrame()
    if not ece.empty:
        ece.to_csv(args.out / "ece.csv", index=False)
    (args.out / "novelty.md").write_text(markdown(summaries, ece, args) + "\n")


def markdown(summaries, ece: pd.DataFrame, args) -> str:
    """The report's tables as Markdown."""
    lines = [f"# Novelty and calibration (seed {args.seed})", ""]
    if summaries:
        frame = pd.concat(summaries)
        lines += [f"## One class left out, k = {args.k_shot} (mean over left-out classes)", ""]
        columns = ["target", "method", "n_episodes", *frame.columns[3:-1]]
        lines += [benchmark.markdown_table(frame[columns].round(3)), ""]
    if not ece.empty:
        lines += ["## ECE of the few-shot benchmark (mean over episodes)", ""]
        wide = ece.groupby(["target", "method", "k"])["ece"].mean().unstack("k").round(3)
        wide.columns = [f"k={k}" for k in wide.columns]
        wide["mean"] = wide.mean(axis=1).round(3)
        lines += [benchmark.markdown_table(wide.reset_index()), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------- the choice
def target_data(model, target, labels_key, units) -> TargetData:
    labels = target.obs[labels_key].astype(str).to_numpy()
    return TargetData(
        adata=target,
        labels=labels,
        labels_key=labels_key,
        layer=None,
        units=units,
        alignment=align_genes(target.var_names, model.gene_names, warn=False),
        model=model,
        baseline_genes="target",
    )


def candidate_scores(clf, latent, pretrained, support, y_support, query) -> dict:
    """Every candidate novelty score of the query rows (higher = more novel)."""
    n_classes = len(clf.classes_)
    codes = pd.Categorical(y_support, categories=clf.classes_).codes
    z_s, z_q = latent[support], latent[query]
    prototypes, spread = class_prototypes(z_s, codes, n_classes)
    distances = np.linalg.norm(z_q[:, None] - prototypes[None], axis=2)
    per_class = np.array(
        [np.linalg.norm(z_s[codes == c] - prototypes[c], axis=1).mean() for c in range(n_classes)]
    )
    nearest_cell = np.linalg.norm(z_q[:, None] - z_s[None], axis=2).min(1)
    with torch.no_grad():
        head = clf.module.head(torch.as_tensor(z_q, dtype=torch.float32)).numpy()
    pre_s, pre_q = pretrained[support], pretrained[query]
    pre_prototypes, pre_spread = class_prototypes(pre_s, codes, n_classes)
    fine_tuned = distances.min(1) / spread
    pretrained_score = prototype_novelty(pre_q, pre_prototypes, pre_spread)
    return {
        "prototype_pooled": fine_tuned,
        "prototype_per_class": (distances / np.maximum(per_class, 1e-6)).min(1),
        "nearest_support_cell": nearest_cell,
        "energy_network": -logsumexp(head, axis=1),
        "max_logit_network": -head.max(1),
        "prototype_pretrained": pretrained_score,
        "prototype_both_latents": fine_tuned + pretrained_score,
        "mahalanobis_shrunk": shrunk_mahalanobis(z_s, codes, prototypes, z_q),
        "prototype_fisher_weighted": fisher_weighted_novelty(z_s, codes, prototypes, z_q),
    }


def shrunk_mahalanobis(z_s, codes, prototypes, z_q) -> np.ndarray:
    """Smallest Mahalanobis distance to a prototype, one pooled within-class covariance.

    Lee et al. (2018)'s out-of-distribution score; with a few cells per class and a wide latent
    space the covariance is Ledoit-Wolf shrunk towards a multiple of the identity.
    """
    covariance = LedoitWolf().fit(z_s - prototypes[codes]).covariance_
    precision = np.linalg.inv(covariance)
    deviations = z_q[:, None] - prototypes[None]
    return np.einsum("qcd,de,qce->qc", deviations, precision, deviations).min(1)


def fisher_weighted_novelty(z_s, codes, prototypes, z_q) -> np.ndarray:
    """Prototype distance with each latent dimension weighted by how well it separates the support.

    Weight of a dimension: its variance between prototypes over its pooled variance within
    classes (shrunk by the mean within-class variance, so that few cells cannot make a weight
    explode); the distance is divided by the support's pooled spread in the same metric.
    """
    within = ((z_s - prototypes[codes]) ** 2).mean(0)
    weights = prototypes.var(0) / (within + within.mean())
    scaled_s, scaled_q, scaled_p = (a * np.sqrt(weights) for a in (z_s, z_q, prototypes))
    _, spread = class_prototypes(scaled_s, codes, len(prototypes))
    return prototype_novelty(scaled_q, scaled_p, spread)


def reconstruction_errors(model, target, units) -> np.ndarray:
    """Mean squared error of the pre-trained autoencoder's reconstruction, for every row.

    No gene is masked; genes of the model that the target lacks are zero-filled, the same for
    every row, so the errors compare across rows.
    """
    alignment = align_genes(target.var_names, model.gene_names, warn=False)
    module = model.module
    errors = []
    with torch.inference_mode():
        for x_log in iter_log_expression(target, layer=None, units=units, alignment=alignment):
            x_hat = module.decoder(module.encoder(x_log))
            errors.append(((x_hat - x_log) ** 2).mean(1).numpy())
    return np.concatenate(errors)


def choose(args) -> None:
    """Candidate scores, "auto" rules and calibration on ``args.seed``'s episodes."""
    candidates, autos, calibration = [], [], []
    gtl = builtin_methods()["gtl"]
    with quiet():
        for name, model, target, labels_key, units in common.tasks(
            args.novelty_targets, common.data_dir(), args.models
        ):
            data = target_data(model, target, labels_key, units)
            pretrained = model.get_latent_representation(target, units=units)
            reconstruction = reconstruction_errors(model, target, units)
            labels = data.labels
            n_classes = int(pd.Series(labels).value_counts().ge(args.k_shot + 1).sum())
            episodes = make_episodes(
                labels,
                k_shots=args.k_shot,
                n_episodes=args.rounds * n_classes,
                seed=args.seed,
            )
            for episode, left in left_out_episodes(episodes, labels):
                task = FewShotTask(episode, data)
                clf = gtl.fit(task, seed=episode.seed)
                study = data.unlabelled()
                latent = clf.get_latent_representation(study)
                reference = clf.get_latent_representation(study, reference=True)
                proba = clf.predict_proba(study).to_numpy()
                query, support = episode.query, episode.support
                novel = labels[query] == left
                scores = candidate_scores(clf, latent, pretrained, support, labels[support], query)
                scores["one_minus_max_proba"] = 1 - proba[query].max(1)
                scores["reconstruction_pretrained"] = reconstruction[query]
                for score, values in scores.items():
                    candidates.append(
                        {
                            "target": name,
                            "episode": episode.episode,
                            "left_out": left,
                            "score": score,
                            "auroc": roc_auc_score(novel, values),
                        }
                    )
                # The LR baseline's AUROC on the same episode, for reference.
                lr_task = FewShotTask(episode, data, genes="target")
                lr = LogisticRegression(max_iter=1000).fit(lr_task.X_pca_support, task.y_support)
                lr_proba = lr.predict_proba(lr_task.X_pca_query)
                candidates.append(
                    {
                        "target": name,
                        "episode": episode.episode,
                        "left_out": left,
                        "score": "pca_logreg_one_minus_max_proba",
                        "auroc": roc_auc_score(novel, 1 - lr_proba.max(1)),
                    }
                )
                autos += auto_rules(
                    clf, (latent, reference), labels, support, query, novel, proba, name, left
                )
                calibration += calibration_rows(clf, proba[query], labels[query], novel, name)
                print(name, episode.episode, left, flush=True)
            # Written after every target, so that a later failure keeps what was measured.
            pd.DataFrame(candidates).to_csv(args.out / "candidates.csv", index=False)
            pd.DataFrame(autos).to_csv(args.out / "auto.csv", index=False)
            pd.DataFrame(calibration).to_csv(args.out / "calibration_left_out.csv", index=False)
    if not candidates:
        few_shot_calibration(args)
        return
    cal = pd.DataFrame(calibration)
    cand = pd.DataFrame(candidates)
    per_class = cand.groupby(["target", "score", "left_out"])["auroc"].mean()
    print(per_class.groupby(["target", "score"]).mean().unstack("target").round(3))
    auto = pd.DataFrame(autos).groupby(["target", "rule", "level"]).mean(numeric_only=True)
    print(auto.round(3).to_string())
    print(cal.groupby(["target", "variant"])["ece"].mean().unstack("target").round(3))
    few_shot_calibration(args)


def auto_rules(clf, latents, labels, support, query, novel, proba, name, left) -> list[dict]:
    """Known cells kept and novel cells caught by each "auto" rule and level.

    ``latents``: the study's codes in the fine-tuned and in the reference latent space.
    """
    latent, reference = latents
    classes = np.asarray(clf.classes_, dtype=object)
    codes = pd.Categorical(labels[support], categories=clf.classes_).codes
    held_out = {
        "cross-validation": clf.fit_record_["support_novelty"],
        "leave-one-out": leave_one_out_novelty(latent[support], codes, len(classes))
        + leave_one_out_novelty(reference[support], codes, len(classes)),
    }
    score = clf.novelty(latent[query], reference[query])
    y = labels[query]
    predicted = classes[proba[query].argmax(1)]
    rows = []
    for rule, values in held_out.items():
        for level in LEVELS:
            flagged = score > conformal_threshold(values, level)
            called = np.where(flagged, "unknown", predicted)
            known = ~novel
            rows.append(
                {
                    "target": name,
                    "left_out": left,
                    "rule": rule,
                    "level": level,
                    "known_unknown_fraction": flagged[known].mean(),
                    "novel_unknown_fraction": flagged[novel].mean(),
                    "known_accuracy": np.mean(called[known] == y[known]),
                }
            )
    return rows


def calibration_rows(clf, proba, y, novel, name) -> list[dict]:
    """ECE on the known query cells with the fitted temperature and without it (T = 1)."""
    classes = np.asarray(clf.classes_, dtype=object)
    known = ~novel
    uncalibrated = softmax(np.log(np.clip(proba, 1e-30, None)) * clf.temperature, axis=1)
    rows = []
    for variant, p in (("temperature", proba), ("none", uncalibrated)):
        correct = classes[p[known].argmax(1)] == y[known]
        rows.append(
            {
                "target": name,
                "variant": variant,
                "temperature": clf.temperature,
                "ece": expected_calibration_error(p[known].max(1), correct),
            }
        )
    return rows


def few_shot_calibration(args) -> None:
    """ECE of gtl with and without its temperature and of logreg, on few-shot episodes."""
    rows = []
    gtl = builtin_methods()["gtl"]
    with quiet():
        for name, model, target, labels_key, units in common.tasks(
            args.ece_targets, common.data_dir(), args.models
        ):
            data = target_data(model, target, labels_key, units)
            labels = data.labels
            by_name = pd.Series(labels, index=target.obs_names)
            episodes = make_episodes(
                labels, k_shots=args.ece_k_shots, n_episodes=args.ece_episodes, seed=args.seed
            )
            for episode in episodes:
                task = FewShotTask(episode, data)
                y = labels[episode.query]
                clf = gtl.fit(task, seed=episode.seed)
                proba = clf.predict_proba(task.query_adata()).to_numpy()
                log_p = log_softmax(np.log(np.clip(proba, 1e-30, None)), axis=1)
                uncalibrated = log_softmax(log_p * clf.temperature, axis=1)
                variants = {"gtl": proba, "gtl_uncalibrated": np.exp(uncalibrated)}
                held_out = clf.fit_record_.get("support_log_proba")
                support_labels = by_name[clf.fit_record_["support_obs_names"]].to_numpy()
                codes = pd.Categorical(support_labels, categories=clf.classes_).codes
                for scale in PRIOR_SCALES:
                    t = 1.0
                    if held_out is not None:
                        t = fit_temperature(held_out, codes, prior_scale=scale)
                    variants[f"gtl_prior_{scale}"] = softmax(uncalibrated / t, axis=1)
                lr_task = FewShotTask(episode, data, genes="target")
                lr = LogisticRegression(max_iter=1000).fit(lr_task.X_support, task.y_support)
                variants["logreg"] = lr.predict_proba(lr_task.X_query)
                for method, p in variants.items():
                    classes = clf.classes_ if method != "logreg" else lr.classes_
                    correct = np.asarray(classes, dtype=object)[p.argmax(1)] == y
                    rows.append(
                        {
                            "target": name,
                            "k": episode.k,
                            "episode": episode.episode,
                            "method": method,
                            "temperature": clf.temperature,
                            "ece": expected_calibration_error(p.max(1), correct),
                            "accuracy": correct.mean(),
                        }
                    )
            print(name, "calibration done", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "calibration.csv", index=False)
    print(table.groupby(["target", "method", "k"])[["ece", "temperature"]].mean().round(3))


if __name__ == "__main__":
    main()
