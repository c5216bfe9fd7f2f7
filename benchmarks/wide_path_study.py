"""How to pool GTL's network with a wide path: the study behind fine_tune's defaults (issue 13).

Stores, for every episode (k = 1, 3, 5; 20 episodes; seed 1, NOT the seed 0 episodes the docs
report), the query probabilities of the guided network alone (GTL before the wide path) and of
logistic regression on all of the study's genes (the wide path), and both paths' out-of-fold
probabilities on the support (stratified k folds). `wide_path_rules.py` then scores pooling
rules on these files without re-fitting anything. Run it before the wide path was the default
(commit afcc31f) to reproduce; with the wide path in place the network is `wide=False`.

    python benchmarks/wide_path_study.py kang,mudan_ref,pbmc68k_reduced,yan,default 20
    python benchmarks/wide_path_rules.py

Writes benchmarks/results/wide_path_study/ (store_<target>.pkl, table_<target>.csv). The models
are do_no_harm.py's (benchmarks/common.py's `tasks`), cached in that folder's models/.
About 15 min on the 2-core machine.
"""

import argparse
import logging
import pickle
import time
import warnings

import common
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

import scgtl
from scgtl.benchmark import FineTuneMethod, few_shot

warnings.filterwarnings("ignore")
for n in ("lightning.pytorch", "lightning.fabric", "scvi"):
    logging.getLogger(n).setLevel(logging.ERROR)

STORE = {}
OUT = common.RESULTS / "wide_path_study"
#: The methods of do_no_harm.py beside the stored network (which replaces gtl and gtl_network).
METHODS_EXTRA = [m for m in common.STUDY_METHODS if m not in ("gtl", "gtl_network")]


class Store(FineTuneMethod):
    def __init__(self, target):
        super().__init__("gtl")
        self.target = target

    def fit_predict_proba(self, task, *, seed):
        data = task.data
        classes = list(task.classes)
        model = task.model
        masked = task.masked_target()
        sup, qry = task.support_indices, task.query_indices

        def deep(train_rows, pred_rows):
            clf = model.fine_tune(
                masked,
                labels_key=data.labels_key,
                support_indices=train_rows,
                seed=seed,
                layer=data.layer,
                units=data.units,
                plan_kwargs={"wide": False},
            )
            return clf.predict_proba(data.adata[pred_rows], layer=data.layer)[classes].to_numpy()

        xw = data.X_log_target

        def wide(train_rows, pred_rows):
            lr = LogisticRegression(max_iter=1000).fit(xw[train_rows], data.labels[train_rows])
            p = pd.DataFrame(lr.predict_proba(xw[pred_rows]), columns=[str(c) for c in lr.classes_])
            return p[classes].to_numpy()

        t = time.perf_counter()
        dq = deep(sup, qry)
        td = time.perf_counter() - t
        t = time.perf_counter()
        wq = wide(sup, qry)
        tw = time.perf_counter() - t
        k = task.episode.k
        doof = woof = None
        t = time.perf_counter()
        if k >= 2:
            doof = np.zeros((len(sup), len(classes)))
            woof = np.zeros_like(doof)
            for tr, te in StratifiedKFold(
                n_splits=k, shuffle=True, random_state=seed % 2**32
            ).split(sup, data.labels[sup]):
                doof[te] = deep(sup[tr], sup[te])
                woof[te] = wide(sup[tr], sup[te])
        tc = time.perf_counter() - t
        STORE[(self.target, k, task.episode.episode)] = dict(
            classes=classes,
            y_query=data.labels[qry],
            y_support=data.labels[sup],
            deep=dq,
            wide=wq,
            deep_oof=doof,
            wide_oof=woof,
            t_deep=td,
            t_wide=tw,
            t_cv=tc,
        )
        return dq


#: do_no_harm.py's target names, by the short names this study's files use.
TARGETS = {
    "kang": "kang_stim",
    "mudan_ref": "mudan_ref",
    "pbmc68k_reduced": "pbmc68k_reduced",
    "yan": "yan",
    "default": "default",
}


def run(model, target, lk, units, name, n_episodes: int) -> None:
    """Store ``name``'s episodes (seed 1) beside the other methods of do_no_harm.py."""
    t = time.perf_counter()
    r = few_shot(
        model,
        target,
        labels_key=lk,
        units=units,
        methods=[Store(name), *METHODS_EXTRA],
        k_shots=(1, 3, 5),
        n_episodes=n_episodes,
        seed=1,
        progress=False,
        baseline_genes="target",
    )
    print(name, f"{time.perf_counter() - t:.0f} s", flush=True)
    print(
        r.table.pivot_table(index="method", columns="k", values="balanced_accuracy")
        .round(3)
        .to_string(),
        flush=True,
    )
    r.table.assign(target=name).to_csv(OUT / f"table_{name}.csv", index=False)
    with open(OUT / f"store_{name}.pkl", "wb") as f:
        pickle.dump({k: v for k, v in STORE.items() if k[0] == name}, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", help=f"comma-separated, of {','.join(TARGETS)}")
    parser.add_argument("n_episodes", type=int, nargs="?", default=20, help="per k")
    args = parser.parse_args()
    scgtl.settings.progress_bar = False
    which = args.targets.split(",")
    models = OUT / "models"
    models.mkdir(parents=True, exist_ok=True)
    names = {study: short for short, study in TARGETS.items()}
    asked = [TARGETS[w] for w in which if w in TARGETS]
    for study, model, target, lk, units in common.tasks(asked, common.data_dir(), models):
        run(model, target, lk, units, names[study], args.n_episodes)


if __name__ == "__main__":
    main()
