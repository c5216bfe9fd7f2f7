"""Score rules for pooling GTL's network with the wide path, on wide_path_study.py's files.

For each target and k (seed 1 episodes, not the reported ones), mean balanced accuracy of:
the network alone (`network`), the wide path alone (`wide`, logistic regression on the study's
genes), fixed pools (`prob<w>`: arithmetic mean of probabilities, `geo<w>`: log-linear pool,
weight w on the wide path), and pools whose weight is chosen on the support by
cross-validation (`cv_<pool>_<criterion>_<one-shot weight>`; criterion `ll` out-of-fold
log-loss, `acc` balanced accuracy, `accll` accuracy then log-loss; `cal` first
temperature-scales each path on its out-of-fold predictions). The package default is
`cv_geo_ll_0.75`. Leaning toward the wide path: `cv_floor<f>` (the chosen weight, at least f),
`cv_tol<t>` (the largest weight whose out-of-fold log-loss is within t of the least), and
`cv_bma` (the pools averaged with weights exp(-n_support * log-loss), a Bayesian model average);
all with 0.75 at one shot.

    python benchmarks/wide_path_rules.py
"""

import argparse
import glob
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

warnings.filterwarnings("ignore")
OUT = Path(__file__).parent / "results" / "wide_path_study"
GRID = np.round(np.linspace(0, 1, 11), 2)
TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20), 41))


def log_softmax(logits):
    logits = logits - logits.max(1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(1, keepdims=True))


def log(p):
    return np.log(np.clip(p, 1e-12, 1))


def log_loss(log_proba, codes):
    return -np.mean(log_softmax(log_proba)[np.arange(len(codes)), codes])


def pool(network, wide, weight, how):
    if how == "prob":
        return log((1 - weight) * np.exp(network) + weight * np.exp(wide))
    return (1 - weight) * network + weight * wide


def temperature(log_proba, codes):
    losses = [log_loss(log_proba / t, codes) for t in TEMPERATURES]
    return TEMPERATURES[int(np.argmin(losses))]


def chosen_weight(e, codes, how, criterion, calibrate):
    net, wide = log(e["deep_oof"]), log(e["wide_oof"])
    if calibrate:
        net, wide = (
            log_softmax(net / temperature(net, codes)),
            log_softmax(wide / temperature(wide, codes)),
        )
    classes = np.asarray(e["classes"])
    scores = []
    for w in GRID:
        pooled = log_softmax(pool(net, wide, w, how))
        ll = log_loss(pooled, codes)
        acc = balanced_accuracy_score(codes, pooled.argmax(1))
        scores.append(
            {"ll": -ll, "acc": acc - 1e-3 * abs(w - 0.5), "accll": acc - 1e-3 * ll}[criterion]
        )
    del classes
    return GRID[int(np.argmax(scores))]


def log_losses(e, codes):
    """Out-of-fold log-loss of the log-linear pool at every weight of the grid."""
    net, wide = log(e["deep_oof"]), log(e["wide_oof"])
    return np.array([log_loss(log_softmax(pool(net, wide, w, "geo")), codes) for w in GRID])


def leaning_rules(e, codes, net, wide):
    """The pooled log-probabilities of the rules that lean toward the wide path."""
    if codes is None:
        one_shot = pool(net, wide, 0.75, "geo")
        return dict.fromkeys(("cv_floor0.5", "cv_tol0.02", "cv_tol0.05", "cv_bma"), one_shot)
    losses = log_losses(e, codes)
    chosen = GRID[int(np.argmin(losses))]
    rules = {"cv_floor0.5": pool(net, wide, max(chosen, 0.5), "geo")}
    for tolerance in (0.02, 0.05):
        weight = GRID[np.flatnonzero(losses <= losses.min() + tolerance).max()]
        rules[f"cv_tol{tolerance}"] = pool(net, wide, weight, "geo")
    posterior = np.exp(-len(codes) * (losses - losses.min()))
    posterior /= posterior.sum()
    rules["cv_bma"] = sum(
        p * log_softmax(pool(net, wide, w, "geo")) for p, w in zip(posterior, GRID, strict=True)
    )
    return rules


def episode_scores(e):
    classes = np.asarray(e["classes"])
    net, wide = log(e["deep"]), log(e["wide"])

    def score(log_proba):
        return balanced_accuracy_score(e["y_query"], classes[log_proba.argmax(1)])

    row = {"network": score(net), "wide": score(wide)}
    for w in (0.25, 0.5, 0.75):
        for how in ("prob", "geo"):
            row[f"{how}{w}"] = score(pool(net, wide, w, how))
    codes = None if e["deep_oof"] is None else np.searchsorted(classes, e["y_support"])
    for how in ("prob", "geo"):
        for criterion in ("ll", "acc", "accll"):
            for one_shot in (0.25, 0.5, 0.75):
                w = one_shot if codes is None else chosen_weight(e, codes, how, criterion, False)
                row[f"cv_{how}_{criterion}_{one_shot}"] = score(pool(net, wide, w, how))
    w = 0.75 if codes is None else chosen_weight(e, codes, "geo", "ll", True)
    row["cv_cal_geo_ll_0.75"] = score(pool(net, wide, w, "geo"))
    for name, pooled in leaning_rules(e, codes, net, wide).items():
        row[name] = score(pooled)
    return row


def main():
    # No options; the parser answers --help instead of reading the store.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    rows = []
    for path in sorted(glob.glob(str(OUT / "store_*.pkl"))):
        with open(path, "rb") as f:
            for (target, k, episode), e in pickle.load(f).items():
                rows.append({"target": target, "k": k, "episode": episode, **episode_scores(e)})
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    per_k = table.groupby(["target", "k"]).mean(numeric_only=True).drop(columns="episode")
    print(per_k.T.round(3).to_string())
    print(
        table.groupby("target")
        .mean(numeric_only=True)
        .drop(columns=["episode", "k"])
        .T.round(3)
        .to_string()
    )


if __name__ == "__main__":
    main()
