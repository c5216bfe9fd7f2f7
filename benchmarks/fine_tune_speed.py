"""Time of ``fine_tune(k_shot=5)`` + ``predict`` on a 10,000-cell study, in pre-training epochs.

The issue-14 measure of ``speed.py``, on its own and repeated, so that one change to
fine-tuning can be compared before and after (run it with another checkout's ``src`` first on
``PYTHONPATH``). Pre-trains one epoch on the synthetic 20,000 x 2,000 corpus of ``speed.py``
(written to ``--data`` once), computes the guide, then fine-tunes and predicts ``--repeats``
times on a synthetic 10,000-cell study of the same genes; prints one JSON line.

    python benchmarks/fine_tune_speed.py --n-latent 64
    PYTHONPATH=/path/to/old/checkout/src python benchmarks/fine_tune_speed.py --n-latent 64
    python benchmarks/fine_tune_speed.py --folds --repeats 5   # the folds at once vs one by one
    python benchmarks/fine_tune_speed.py --predict --repeats 5  # predict, predict_proba alone
    python benchmarks/fine_tune_speed.py --profile              # where one call's time goes

Run it alone on the machine: it is a timing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-latent", type=int, default=None, help="default: the package's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=Path("/tmp/scgtl_speed"))
    parser.add_argument(
        "--folds", action="store_true", help="also time the folds' fits at once and one by one"
    )
    parser.add_argument(
        "--predict", action="store_true", help="also time predict on its own, --repeats times"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one more fine-tune + predict (cProfile, to stderr)",
    )
    args = parser.parse_args()

    import torch

    import scgtl

    sys.path.insert(0, str(HERE))
    from scout_speed import synthetic_counts
    from speed import BATCH_SIZE, corpus_files

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    scgtl.settings.n_threads = args.threads
    scgtl.settings.progress_bar = False
    args.data.mkdir(parents=True, exist_ok=True)
    path = corpus_files(20_000, 2_000, 1, args.data)["one file"][0]

    import anndata as ad

    corpus = ad.read_h5ad(path)
    scgtl.GTL.setup_anndata(corpus, units="counts", n_top_genes=None)
    torch.manual_seed(0)
    kwargs = {} if args.n_latent is None else {"n_latent": args.n_latent}
    model = scgtl.GTL(corpus, **kwargs)
    start = time.perf_counter()
    model.train(max_epochs=1, batch_size=BATCH_SIZE, compute_guide=False, train_size=1.0)
    epoch = time.perf_counter() - start
    model.compute_guide()
    study = synthetic_counts(10_000, corpus.n_vars, seed=1)
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        # The fine-tuning alone: the adaptation the default also runs is measured on its own.
        clf = model.fine_tune(study, labels_key="cell_type", k_shot=5, seed=0, transductive=False)
        clf.predict(study)
        seconds.append(round(time.perf_counter() - start, 2))
    result = {
        "scgtl": scgtl.__file__,
        "n_latent": model.architecture_["n_latent"],
        "epoch_s": round(epoch, 2),
        "fine_tune_predict_s": seconds,
        "fine_tune_predict_epochs": [round(s / epoch, 2) for s in seconds],
    }
    if args.profile:
        profile_once(model, study)
    if args.predict:
        result.update(time_predict(clf, study, args.repeats))
    if args.folds:
        result.update(time_folds(model, study, clf, args.repeats))
    print(json.dumps(result))


def profile_once(model, study) -> None:
    """cProfile of one ``fine_tune`` + ``predict``: the calls that take the most time, to stderr.

    The functions of scgtl, scikit-learn and torch's optimiser are listed by cumulative time,
    so that the fit's parts (the folds, the final network, the wide path's logistic
    regressions, the two encoders of ``predict``) can be read off.
    """
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    clf = model.fine_tune(study, labels_key="cell_type", k_shot=5, seed=0, transductive=False)
    clf.predict(study)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative")
    stats.print_stats(r"scgtl|sklearn/linear_model|torch/optim", 40)


def time_predict(clf, study, repeats: int) -> dict[str, list[float]]:
    """Seconds of ``clf.predict(study)`` and of ``clf.predict_proba(study)``, alternating.

    ``predict`` also computes the novelty (in recent versions, through a second encoder);
    ``predict_proba`` only reads the study and runs the network and the wide path.
    """
    seconds = {"predict_s": [], "predict_proba_s": []}
    for _ in range(repeats):
        for key, call in (("predict_s", clf.predict), ("predict_proba_s", clf.predict_proba)):
            start = time.perf_counter()
            call(study)
            seconds[key].append(round(time.perf_counter() - start, 3))
    return seconds


def time_folds(model, study, clf, repeats: int) -> dict:
    """Seconds of the cross-validation's network fits, at once and one after another.

    The folds of the classifier's own support, fitted as ``fine_tune`` fits them
    (``scgtl.train.fine_tune_networks`` with the model's guide), alternating the two ways so
    that both see the same machine.
    """
    import numpy as np
    import torch

    from scgtl.data import align_genes, read_log_expression
    from scgtl.train import fine_tune_networks, support_folds

    support = study.obs_names.get_indexer(clf.fit_record_["support_obs_names"])
    alignment = align_genes(study.var_names, model.gene_names)
    x = read_log_expression(study, layer=None, units="counts", alignment=alignment, indices=support)
    codes = study.obs["cell_type"].iloc[support].astype(str)
    y = torch.as_tensor(np.unique(codes, return_inverse=True)[1])
    folds = support_folds(y.numpy(), seed=0)
    xs, ys = [x[train] for train, _ in folds], [y[train] for train, _ in folds]
    settings = {"architecture": model.architecture_, "seed": 0, "guide": model.guide_}
    times = {"folds_at_once_s": [], "folds_one_by_one_s": []}
    for _ in range(repeats):
        for key, batched in (("folds_at_once_s", True), ("folds_one_by_one_s", False)):
            start = time.perf_counter()
            fine_tune_networks(
                model.module.encoder, xs, ys, len(clf.classes_), batched=batched, **settings
            )
            times[key].append(round(time.perf_counter() - start, 2))
    return times


if __name__ == "__main__":
    main()
