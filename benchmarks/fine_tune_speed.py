"""Time of ``fine_tune(k_shot=5)`` + ``predict`` on a 10,000-cell study, in pre-training epochs.

The issue-14 measure of ``speed.py``, on its own and repeated, so that one change to
fine-tuning can be compared before and after (run it with another checkout's ``src`` first on
``PYTHONPATH``). Pre-trains one epoch on the synthetic 20,000 x 2,000 corpus of ``speed.py``
(written to ``--data`` once), computes the guide, then fine-tunes and predicts ``--repeats``
times on a synthetic 10,000-cell study of the same genes; prints one JSON line.

    python benchmarks/fine_tune_speed.py --n-latent 64
    PYTHONPATH=/path/to/old/checkout/src python benchmarks/fine_tune_speed.py --n-latent 64

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
        clf = model.fine_tune(study, labels_key="cell_type", k_shot=5, seed=0)
        clf.predict(study)
        seconds.append(round(time.perf_counter() - start, 2))
    print(
        json.dumps(
            {
                "scgtl": scgtl.__file__,
                "n_latent": model.architecture_["n_latent"],
                "epoch_s": round(epoch, 2),
                "fine_tune_predict_s": seconds,
                "fine_tune_predict_epochs": [round(s / epoch, 2) for s in seconds],
            }
        )
    )


if __name__ == "__main__":
    main()
