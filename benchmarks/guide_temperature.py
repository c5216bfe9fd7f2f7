"""Guide temperature ablation on the embedded default task (before the engineering study).

Pre-trains once on the embedded default corpus, then for each guide temperature recomputes the
guide (``model.compute_guide``, same scouts seed) and runs GTL on the same 20 episodes per k;
plain fine-tuning is the reference. Nothing here changes the package's defaults.

    python benchmarks/guide_temperature.py
"""

from __future__ import annotations

import argparse

import pandas as pd

import scgtl
from scgtl.benchmark import default_task, few_shot, pretrain

TEMPERATURES = {
    "room": {},
    "warm": {"temperature": "warm"},
    "icy": {"temperature": "icy"},
    "freeze_top10": {"temperature": "freeze", "top_p": 0.1},
    "scale_2": {"scale": 2.0},
}


def main() -> None:
    # No options; the parser answers --help instead of starting the study.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    corpus, target = default_task()
    model = pretrain(corpus, units="log1p", n_hvg=None, progress=False)
    rows = []
    plain = few_shot(model, target, labels_key="bulk_labels", methods=["finetune"], progress=False)
    rows.append(plain.table)
    for name, options in TEMPERATURES.items():
        model.compute_guide(**options, progress=False)
        res = few_shot(model, target, labels_key="bulk_labels", methods=["gtl"], progress=False)
        table = res.table.copy()
        table["method"] = f"gtl_{name}"
        rows.append(table)
    table = pd.concat(rows)
    summary = table.pivot_table(index="method", columns="k", values="balanced_accuracy")
    print(summary.round(3).to_string())
    wide = table.pivot_table(index=["k", "episode"], columns="method", values="balanced_accuracy")
    paired = wide.drop(columns="finetune").sub(wide["finetune"], axis=0).groupby("k").mean()
    print("\nmean paired difference to plain fine-tuning:")
    print(paired.T.round(3).to_string())
    print(scgtl.__version__)


if __name__ == "__main__":
    main()
