"""What the shipped file's half precision costs: the same build in float32 and float16 (issue 24).

Builds the shipped model in full precision (``scgtl.models.build_model``, or ``--full DIR`` of a
saved build), loads the shipped float16 file (``scgtl.models.load``), checks that both hold the
same weights up to float16 rounding, and runs GTL on the same seeded episodes with each.

    python benchmarks/shipped_precision.py --full benchmarks/results/models_shipped/multi_full
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common
import torch

import scgtl
from scgtl import benchmark, models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", type=Path, help="a saved float32 build of the shipped model")
    parser.add_argument("--targets", nargs="+", default=["pbmc68k_reduced", "mudan_ref"])
    parser.add_argument("--n-episodes", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, default=common.data_dir())
    args = parser.parse_args()
    scgtl.settings.progress_bar = False
    full = scgtl.GTL.load(args.full) if args.full else models.build_model(data_dir=args.data_dir)
    half = models.load(models.DEFAULT_MODEL)
    weights = full.module.state_dict()
    for name, value in half.module.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(weights[name].half().float(), value), name
    print("the shipped file holds the float32 build's weights rounded to float16")
    for target_name in args.targets:
        target, labels_key, units = common.load_study(target_name, args.data_dir)
        for label, model in (("float32", full), ("float16", half)):
            res = benchmark.few_shot(
                model, target, labels_key=labels_key, units=units, k_shots=(1, 3, 5),
                n_episodes=args.n_episodes, methods=["gtl"], progress=False,
            )  # fmt: skip
            by_k = res.table.groupby("k")["balanced_accuracy"].mean()
            print(
                f"{target_name} {label}: "
                + " / ".join(f"{v:.4f}" for v in by_k)
                + f", mean {by_k.mean():.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
