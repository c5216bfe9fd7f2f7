"""How to pool GTL's network with a wide path: the study behind fine_tune's defaults (issue 13).

Stores, for every episode (k = 1, 3, 5; 20 episodes; seed 1, NOT the seed 0 episodes the docs
report), the query probabilities of the guided network alone (GTL before the wide path) and of
logistic regression on all of the study's genes (the wide path), and both paths' out-of-fold
probabilities on the support (stratified k folds). `wide_path_rules.py` then scores pooling
rules on these files without re-fitting anything. Run it before the wide path was the default
(commit afcc31f) to reproduce; with the wide path in place the network is `wide=False`.

    python benchmarks/wide_path_study.py kang,mudan_ref,pbmc68k_reduced,yan,default 20
    python benchmarks/wide_path_rules.py

Writes benchmarks/results/wide_path_study/ (store_<target>.pkl, table_<target>.csv).
About 15 min on the 2-core machine.
"""

import logging
import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from do_no_harm import METHODS
from few_shot_real import data_dir, load_corpus, load_target
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

import scgtl
from scgtl import benchmark
from scgtl.benchmark import FineTuneMethod, few_shot

warnings.filterwarnings("ignore")
for n in ("lightning.pytorch", "lightning.fabric", "scvi"):
    logging.getLogger(n).setLevel(logging.ERROR)

STORE = {}
OUT = Path(__file__).parent / "results" / "wide_path_study"
OUT.mkdir(parents=True, exist_ok=True)


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


scgtl.settings.progress_bar = False
folder = data_dir()
kw = dict(
    k_shots=(1, 3, 5),
    n_episodes=int(sys.argv[2]) if len(sys.argv) > 2 else 20,
    seed=1,
    progress=False,
    baseline_genes="target",
)
methods_extra = [m for m in METHODS if m not in ("gtl", "gtl_network")]
which = sys.argv[1].split(",")
tables = []
models = Path(OUT / "models")
models.mkdir(exist_ok=True)


def get_model(name, build):
    p = models / name
    if p.exists():
        return scgtl.GTL.load(str(p))
    m = build()
    m.save(str(p), overwrite=True)
    return m


def run(model, target, lk, units, name):
    t = time.perf_counter()
    r = few_shot(
        model, target, labels_key=lk, units=units, methods=[Store(name), *methods_extra], **kw
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


if "kang" in which:
    m = get_model(
        "pbmcA",
        lambda: scgtl.benchmark.pretrain(
            scgtl.datasets.mudan_pbmcA(data_dir=folder, download=False),
            units="counts",
            n_hvg=2000,
            seed=0,
        ),
    )
    run(m, scgtl.datasets.kang_stim(data_dir=folder, download=False), "stim", "counts", "kang")
real = [w for w in which if w in ("mudan_ref", "pbmc68k_reduced", "yan")]
if real:
    m = get_model(
        "corpus",
        lambda: scgtl.benchmark.pretrain(load_corpus(folder), units="counts", n_hvg=2000, seed=0),
    )
    for name in real:
        t, lk, u = load_target(name, folder)
        run(m, t, lk, u, name)
if "default" in which:
    corpus, target = benchmark.default_task()
    m = get_model("default", lambda: benchmark.pretrain_default(corpus, seed=0))
    run(m, target, benchmark.DEFAULT_LABELS_KEY, "log1p", "default")
